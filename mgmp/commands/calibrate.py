"""``mgmp calibrate POOL``: thresholds and fused models on the pool's calibration pairs, then the query
calibration when the pool holds the query protocol's held-out families."""
from __future__ import annotations

from dataclasses import asdict

from rich.console import Console

from mgmp.calibration.fit import METHODS, calibrate
from mgmp.commands._common import id_list, tuned_columns
from mgmp.index.calibrate import calibrate_queries, has_protocol
from model_pool.errors import BadInput
from model_pool.pool import Pool

console = Console(stderr=True)


def methods_subset(names: str | None) -> dict[str, tuple[str, dict]]:
    """The calibrated score columns named in ``names`` (all of them when None)."""
    chosen = id_list(names)
    if not chosen:
        return dict(METHODS)
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise BadInput(f"unknown method {unknown[0]!r}; known: {', '.join(METHODS)}")
    return {m: METHODS[m] for m in chosen}


def run(args) -> dict:
    with Pool.open(args.dir) as pool:
        cal = calibrate(pool, tuned_columns(methods_subset(args.methods), args.param), seed=args.seed,
                        on_pairs=lambda n: console.print(f"scoring {n} calibration pairs"))
        out = Console()
        for name, t in sorted(cal.thresholds.items()):
            out.print(f"{name}: threshold {t['threshold']:.4f}")
        for label, fused in (("fused (all scores)", cal.fused), ("fused (fast scores)", cal.fused_fast),
                             ("fused (student scores)", cal.fused_students)):
            if fused is not None:
                out.print(f"{label}: {len(fused['columns'])} scores, query support threshold "
                          f"{fused['support_threshold']:.3f}")
        query = None
        if args.no_query:
            out.print("query calibration skipped (--no-query)")
        elif cal.fused_fast is None or not has_protocol(pool):
            out.print("query calibration skipped: the pool has no held-out calibration families (digits_lineage protocol)")
        else:
            query = calibrate_queries(pool)["chosen"]
            out.print(f"query: support threshold {query['support_threshold']}, ancestor tolerance "
                      f"{query['prefer_ancestors']} (top-1 parent {query['top1_parent']:.2f}, "
                      f"'none' {query['unrelated_none']:.2f} on calibration queries)")
    return asdict(cal) | {"query": query, "pool": str(args.dir)}
