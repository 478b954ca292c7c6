"""``mgmp score METHOD A B``: one pair score (cached in the source's pool), or the pool's fused verdict."""
from __future__ import annotations

from contextlib import ExitStack

from rich.console import Console

from mgmp.calibration.backbone import SiblingRule, backbone_verdict
from mgmp.calibration.fusion import fused_probability
from mgmp.calibration.store import Calibration
from mgmp.calibration.thresholds import decide
from mgmp.commands._common import parse_params, pool_of
from mgmp.scores import Pair, compute, create_score, load_pair
from model_pool.errors import BadInput
from model_pool.pool import Pool

ZEST_RELATIVE_THRESHOLD = 1.0  # relative distance below the independent references' mean


def fused(pair: Pair, calibrated: Pool | None, cache: bool = True, max_queries: int | None = None) -> dict:
    """P(lineage) from a calibrated pool's logistic regression over the pair scores (the source's pool, or
    ``calibrated``: a pool whose calibration is applied to models of another domain)."""
    if calibrated is None:
        raise BadInput("fused needs a calibrated pool: the source as POOL_DIR::MODEL_ID, or --calibration POOL")
    stored = Calibration.load(calibrated).fused
    if stored is None:
        raise BadInput(f"{calibrated.root}: no fused model; run `mgmp calibrate {calibrated.root}` first")
    p, values = fused_probability(stored, pair, cache=cache, max_queries=max_queries)
    foreign = pair.pool is None or pair.pool.root.resolve() != calibrated.root.resolve()
    return {"method": "fused", "value": p, "related": p >= 0.5, "scores": values, "scores_used": stored["columns"],
            "calibration": str(calibrated.root), "calibration_from_another_domain": foreign}


def run(args) -> dict:
    with pool_of(args.source) as pool, ExitStack() as stack:
        calibrated = stack.enter_context(Pool.open(args.calibration)) if args.calibration else pool
        pair = load_pair(args.source, args.suspect, pool, args.data, args.task, args.suspect_data, args.suspect_task,
                         timeout=args.timeout, base=args.base)
        if args.method == "fused":
            if args.param:
                raise BadInput("fused uses the parameters its calibration was fitted with; --param is not accepted")
            out = {"source": args.source, "suspect": args.suspect,
                   **fused(pair, calibrated, cache=not args.no_cache, max_queries=args.max_queries)}
            rule = SiblingRule.from_dict(Calibration.load(calibrated).siblings)
            out["backbone"] = backbone_verdict(pair, rule, cache=not args.no_cache) if out["related"] else None
            verdict = out["backbone"]["text"] if out["backbone"] else "lineage" if out["related"] else "no lineage"
            out["verdict"] = verdict
            where = f" [dim](calibration of {out['calibration']}, another domain)[/]" if out[
                "calibration_from_another_domain"] else ""
            Console().print(f"fused({args.source}, {args.suspect}): P(lineage) = {out['value']:.3f} -> [bold]{verdict}[/]"
                            f"{where}\n  scores used: {', '.join(out['scores_used'])}")
            return out
        method = create_score(args.method, **parse_params(args.param))
        result = compute(method, pair, cache=not args.no_cache, max_queries=args.max_queries)
        calibration = Calibration.load(calibrated)
        threshold = args.threshold if args.threshold is not None else calibration.threshold(method)
    out = {"source": args.source, "suspect": args.suspect, "params": method.params(), **result.to_dict()}
    if threshold is None and args.method == "zest" and method.relative:
        threshold = ZEST_RELATIVE_THRESHOLD
    line = f"{args.method}({args.source}, {args.suspect}) = {result.value:.4f}"
    if threshold is not None:
        out["threshold"] = threshold
        out["related"] = decide(result.value, threshold, result.higher_is_related)
        line += f" (threshold {threshold:.4f}) -> [bold]{'lineage' if out['related'] else 'no lineage'}[/]"
    if args.method == "inheritance" and "drift" in result.extra:
        rule = SiblingRule.from_dict(calibration.siblings)
        out["relation"] = rule.decide(result.value, result.extra["drift"])
        line += f" -> [bold]{out['relation']}[/] (threshold {rule.threshold:.2f}, drift cap {rule.max_drift:.1f})"
    extras = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.extra.items()
                       if not isinstance(v, (list, dict)))
    Console().print(line + (f"\n  {extras}" if extras else "") + (" [dim](cached)[/]" if result.cached else ""))
    return out
