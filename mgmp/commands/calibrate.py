"""``mgmp calibrate POOL``: thresholds, fused models and the pool's own fused test on its calibration pairs, then the
query calibration when the pool holds the query protocol's held-out families. ``mgmp calibrate --domains P1,P2,...``:
the fused test fit on every pair of the in-house domains pooled, written where the package ships it."""
from __future__ import annotations

from dataclasses import asdict

from rich.console import Console

from mgmp.calibration.domains import DomainRows, fit_test, score_domain
from mgmp.calibration.fit import METHODS, calibrate, pair_specs
from mgmp.calibration.verdict import DEFAULT_PATH, MIN_OWN_INDEPENDENTS
from mgmp.commands._common import id_list, tuned_columns
from mgmp.index.calibrate import Protocol, calibrate_queries, protocol_for
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


def score_pools(dirs: list[str], references: int, seed: int = 0) -> list[DomainRows]:
    """Every pair of each pool (both splits) as rows of the fused test, the sources' nulls built first."""
    rows = []
    for d in dirs:
        with Pool.open(d) as pool:
            specs = pair_specs(pool.registry, seed=seed)
            console.print(f"{d}: {len(specs)} pairs of {len({s.source for s in specs})} sources")
            rows.append(score_domain(pool, specs, references, on_source=lambda s: console.print(f"  null of {s}")))
    return rows


def fit_domains(args) -> dict:
    dirs = id_list(args.domains)
    if args.dir or args.methods or args.param:
        raise BadInput("--domains fits the shipped test on whole pools: give no POOL, --methods or --param")
    if len(dirs) < 1:
        raise BadInput("--domains needs at least one pool")
    test = fit_test(score_pools(dirs, args.references, args.seed), args.references, combiner=args.combiner)
    path = args.out or DEFAULT_PATH
    test.save(path)
    Console().print(f"fused test fit on {test.fitted_on['pairs']} pairs ({test.fitted_on['independent_pairs']} "
                    f"independent) of {len(dirs)} domains -> {path}")
    return test.to_dict() | {"path": str(path)}


def query_protocol(pool: Pool) -> Protocol | None:
    """The calibration queries' protocol: the digits lineage pool's, else one from the pool's tags; None without."""
    try:
        protocol = protocol_for(pool, "calibration")
    except BadInput:
        return None
    return protocol if protocol.held_out(pool.registry) else None


def run(args) -> dict:
    if args.domains:
        return fit_domains(args)
    if not args.dir:
        raise BadInput("calibrate needs a POOL (or --domains P1,P2,... for the shipped test)")
    with Pool.open(args.dir) as pool:
        cal = calibrate(pool, tuned_columns(methods_subset(args.methods), args.param), seed=args.seed,
                        on_pairs=lambda n: console.print(f"scoring {n} calibration pairs"),
                        references=args.references, test=not args.no_test)
        out = Console()
        for name, t in sorted(cal.thresholds.items()):
            out.print(f"{name}: threshold {t['threshold']:.4f}")
        for label, fused in (("fused (all scores)", cal.fused), ("fused (fast scores)", cal.fused_fast),
                             ("fused (student scores)", cal.fused_students)):
            if fused is not None:
                out.print(f"{label}: {len(fused['columns'])} scores, query support threshold "
                          f"{fused['support_threshold']:.3f}")
        if cal.fused_test is not None:
            fitted = cal.fused_test["fitted_on"]
            out.print(f"fused test: {', '.join(cal.fused_test['model']['columns'])} against {args.references} references "
                      f"per source ({fitted['pairs']} pairs, {fitted['independent_pairs']} independent)")
            if fitted["independent_pairs"] < MIN_OWN_INDEPENDENTS:
                out.print(f"  fewer than {MIN_OWN_INDEPENDENTS} independent pairs: verdicts keep the shipped test")
        query = None
        if args.no_query:
            out.print("query calibration skipped (--no-query)")
        elif cal.fused_fast is None or (protocol := query_protocol(pool)) is None:
            out.print("query calibration skipped: the pool has no calibration families to hold out (models tagged "
                      "role: source in the calibration split)")
        else:
            query = calibrate_queries(pool, protocol)["chosen"]
            out.print(f"query: support threshold {query['support_threshold']}, ancestor tolerance "
                      f"{query['prefer_ancestors']} (top-1 parent {query['top1_parent']:.2f}, "
                      f"'none' {query['unrelated_none']:.2f} on calibration queries)")
    return asdict(cal) | {"query": query, "pool": str(args.dir)}
