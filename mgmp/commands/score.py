"""``mgmp score METHOD A B``: one pair score, cached in the source's pool registry."""
from __future__ import annotations

import json

from rich.console import Console

from model_pool.errors import MgmpError

THRESHOLDS_KEY = "thresholds"  # registry meta: {method: {"params_hash", "threshold"}} written by bench lineage
FUSED_KEY = "fused_scores"  # registry meta: the scores-only fused model (FusedScore.describe() + its methods)
FUSED_FAST_KEY = "fused_fast"  # registry meta: the same over the cheap scores only (re-ranks index queries)


def parse_params(items: list[str] | None) -> dict:
    """``["k=50", "generate=false"]`` -> {"k": 50, "generate": False} (values parsed as JSON when they parse)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MgmpError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def stored_fused(pool, key: str = None) -> dict | None:
    """The pool's calibrated fused model (``FUSED_KEY`` or ``FUSED_FAST_KEY``), or None."""
    from model_pool.registry import PoolRegistry

    with PoolRegistry(pool) as reg:
        stored = reg.get_meta(key or FUSED_KEY)
    return json.loads(stored) if stored else None


def fused(args) -> dict:
    """P(lineage) from the pool's calibrated logistic regression over all pair scores."""
    from mgmp.scores import load_pair
    from mgmp.scores.fusion import fused_probability

    pair = load_pair(args.source, args.suspect, args.data, args.task, args.suspect_data, args.suspect_task)
    if pair.pool is None:
        raise MgmpError("fused needs the source as POOL_DIR::MODEL_ID of a pool calibrated by `mgmp bench lineage`")
    stored = stored_fused(pair.pool)
    if stored is None:
        raise MgmpError(f"{pair.pool}: no fused model; run `mgmp bench lineage --pool {pair.pool}` to calibrate one")
    p, values = fused_probability(stored, pair, cache=not args.no_cache)
    verdict = "lineage" if p >= 0.5 else "no lineage"
    Console().print(f"fused({args.source}, {args.suspect}): P(lineage) = {p:.3f} -> [bold]{verdict}[/]")
    return {"source": args.source, "suspect": args.suspect, "method": "fused", "value": p, "related": p >= 0.5,
            "scores": values}


def run(args) -> dict:
    from mgmp.scores import compute, create_score, load_pair
    from mgmp.scores.base import decide
    from model_pool.registry import PoolRegistry

    if args.method == "fused":
        return fused(args)
    try:
        method = create_score(args.method, **parse_params(args.param))
    except TypeError as e:
        raise MgmpError(f"{args.method}: bad --param ({e})") from None
    pair = load_pair(args.source, args.suspect, args.data, args.task, args.suspect_data, args.suspect_task)
    result = compute(method, pair, cache=not args.no_cache)
    out = {"source": args.source, "suspect": args.suspect, "params": method.params(), **result.to_dict()}
    threshold = args.threshold
    if threshold is None and pair.pool is not None:
        with PoolRegistry(pair.pool) as reg:
            known = json.loads(reg.get_meta(THRESHOLDS_KEY, "{}")).get(args.method)
        if known and known["params_hash"] == method.params_hash():
            threshold = known["threshold"]
    if threshold is None and args.method == "zest" and method.relative:
        threshold = 1.0  # relative distance: below the independent references' mean
    line = f"{args.method}({args.source}, {args.suspect}) = {result.value:.4f}"
    if threshold is not None:
        out["threshold"] = threshold
        out["related"] = decide(result.value, threshold, result.higher_is_related)
        line += f" (threshold {threshold:.4f}) -> [bold]{'lineage' if out['related'] else 'no lineage'}[/]"
    extras = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.extra.items()
                       if not isinstance(v, (list, dict)))
    Console().print(line + (f"\n  {extras}" if extras else "") + (" [dim](cached)[/]" if result.cached else ""))
    return out
