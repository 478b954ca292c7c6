"""``mgmp score METHOD A B``: one pair score (cached in the source's pool), or the pool's fused verdict."""
from __future__ import annotations

from rich.console import Console

from mgmp.calibration.fusion import fused_probability
from mgmp.calibration.store import Calibration
from mgmp.calibration.thresholds import decide
from mgmp.commands._common import parse_params, pool_of
from mgmp.scores import Pair, compute, create_score, load_pair
from model_pool.errors import BadInput

ZEST_RELATIVE_THRESHOLD = 1.0  # relative distance below the independent references' mean


def fused(pair: Pair, cache: bool = True) -> dict:
    """P(lineage) from the pool's calibrated logistic regression over all pair scores."""
    if pair.pool is None:
        raise BadInput("fused needs the source as POOL_DIR::MODEL_ID of a calibrated pool")
    stored = Calibration.load(pair.pool).fused
    if stored is None:
        raise BadInput(f"{pair.pool.root}: no fused model; run `mgmp calibrate {pair.pool.root}` first")
    p, values = fused_probability(stored, pair, cache=cache)
    return {"method": "fused", "value": p, "related": p >= 0.5, "scores": values}


def run(args) -> dict:
    with pool_of(args.source) as pool:
        pair = load_pair(args.source, args.suspect, pool, args.data, args.task, args.suspect_data, args.suspect_task)
        if args.method == "fused":
            out = {"source": args.source, "suspect": args.suspect, **fused(pair, cache=not args.no_cache)}
            verdict = "lineage" if out["related"] else "no lineage"
            Console().print(f"fused({args.source}, {args.suspect}): P(lineage) = {out['value']:.3f} -> [bold]{verdict}[/]")
            return out
        method = create_score(args.method, **parse_params(args.param))
        result = compute(method, pair, cache=not args.no_cache)
        threshold = args.threshold if args.threshold is not None else Calibration.load(pair.pool).threshold(method)
    out = {"source": args.source, "suspect": args.suspect, "params": method.params(), **result.to_dict()}
    if threshold is None and args.method == "zest" and method.relative:
        threshold = ZEST_RELATIVE_THRESHOLD
    line = f"{args.method}({args.source}, {args.suspect}) = {result.value:.4f}"
    if threshold is not None:
        out["threshold"] = threshold
        out["related"] = decide(result.value, threshold, result.higher_is_related)
        line += f" (threshold {threshold:.4f}) -> [bold]{'lineage' if out['related'] else 'no lineage'}[/]"
    extras = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.extra.items()
                       if not isinstance(v, (list, dict)))
    Console().print(line + (f"\n  {extras}" if extras else "") + (" [dim](cached)[/]" if result.cached else ""))
    return out
