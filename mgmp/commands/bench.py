"""``mgmp bench mgmp|lineage|lm|speed|index|siblings|forest|transfer|scan``: run a benchmark, print its markdown table, return its result."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.console import Console

from mgmp.bench import floor as bench_floor
from mgmp.bench import forest as bench_forest
from mgmp.bench import index as bench_index
from mgmp.bench import lineage as bench_lineage
from mgmp.bench import mgmp_table
from mgmp.bench import scan as bench_scan
from mgmp.bench import siblings as bench_siblings
from mgmp.bench import speed as bench_speed
from mgmp.bench import transfer as bench_transfer
from mgmp.calibration.fit import METHODS
from mgmp.calibration.store import Calibration
from mgmp.calibration.verdict import COMBINERS, FusedTest
from mgmp.commands._common import id_list, parse_params, tuned_columns, with_params
from mgmp.commands.calibrate import methods_subset, score_pools
from mgmp.forest.edges import EDGES_KEY
from mgmp.index.calibrate import calibrate_queries, protocol_for
from mgmp.index.query import QueryOptions
from mgmp.index.store import build_index
from mgmp.plots import budget_curves, forest_figure
from model_pool.builder import build_pool
from model_pool.errors import BadInput
from model_pool.plan import load_plan
from model_pool.pool import Pool

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
console = Console(stderr=True)


def _ensure_pool(pool: Path, plan: str, workers: int, resume: bool) -> None:
    """Build the embedded pool ``plan`` into ``pool`` when it is absent (or resume it when asked)."""
    if not Pool.exists(pool) or resume:
        console.print(f"building or resuming the {plan} pool in {pool}")
        report = build_pool(load_plan(CONFIGS / "pool" / plan), pool, workers=workers, resume=True)
        if not report.ok:
            raise BadInput(f"pool build failed: {report.failed}")


def _show(result: dict, markdown: str) -> dict:
    result["markdown"] = markdown
    Console().print(markdown, soft_wrap=True)  # a table's row stays one line (wrapped by the terminal, not cut)
    return result


def mgmp(args) -> dict:
    plan = mgmp_table.DOMAINS[args.domain][0]
    if args.holdout == "family":
        if args.domain != "image" and not args.pool:
            raise BadInput("the family protocol needs a pool with several sources: give --pool (only the image "
                           "lineage plan is built by default)")
        plan = "digits_lineage.yaml"
    pool = Path(args.pool or f"runs/pools/{Path(plan).stem}")
    _ensure_pool(pool, plan, args.workers, args.build)
    variants = [v.strip() for v in args.variants.split(",")] if args.variants else None
    result = mgmp_table.run(str(pool), seeds=args.seeds, epochs=args.epochs, episodes=args.episodes,
                            eval_points=args.eval_points, variants=variants, domain=args.domain,
                            holdout=args.holdout, source=args.source, generator=args.generator,
                            generator_kwargs=parse_params(args.generator_kwargs) if args.generator_kwargs else None,
                            on_row=lambda name, row: console.print(f"{name}: fragment acc {row['frag_acc']:.3f}, "
                                                                   f"model AUROC {row['model_auroc']:.3f}"))
    return _show(result, mgmp_table.markdown(result))


def lineage(args) -> dict:
    _ensure_pool(Path(args.pool), "digits_lineage.yaml", args.workers, args.build)
    methods = tuned_columns(methods_subset(args.methods), args.param)
    with Pool.open(args.pool) as pool:
        result = bench_lineage.run(pool, mgmp_epochs=args.mgmp_epochs, seed=args.seed, methods=methods,
                                   with_mgmp=not args.no_mgmp, sources=id_list(args.sources))
        if bench_siblings.has_pairs(pool):  # the backbone question's rows: derived from A, or a sibling of A?
            result["siblings"] = bench_siblings.run(pool)
    text = bench_lineage.markdown(result)
    if "siblings" in result:
        text += "\n\nderived from A, or a sibling of A via the source (as `mgmp bench siblings`):\n\n" + \
            bench_siblings.markdown(result["siblings"])
    if args.calibration_from:
        with Pool.open(args.calibration_from) as other:
            table = bench_lineage.transferred(result, Calibration.load(other), methods or METHODS)
        result["transferred"] = {"calibration": args.calibration_from, "table": table}
        shown, _ = bench_lineage.table_markdown(table, [c for c in next(iter(table.values()), {}) if c != "n"])
        text += f"\n\nthe same evaluation pairs under the calibration of {args.calibration_from}, unchanged:\n\n{shown}"
    if "closeness" in result["values"]:
        result["heatmap"] = str(bench_lineage.heatmap(result, Path(args.figures) / "closeness_heatmap.png"))
        console.print(f"closeness heatmap: {result['heatmap']}")
    if curve := bench_lineage.budget_curve(result["table"]):
        methods = [c for c in next(iter(next(iter(curve.values())).values()))]
        result["budget_curve"] = curve
        result["budget_figure"] = str(budget_curves(curve, methods, Path(args.figures) / "budget_curve.png"))
        console.print(f"detection against query budget: {result['budget_figure']}")
    return _show(result, text)


def _chosen(names: str | None, known: dict) -> dict:
    """The entries of ``known`` named in the comma-separated ``names`` (all when None), BadInput for others."""
    chosen = id_list(names) or list(known)
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise BadInput(f"unknown method {unknown[0]!r}; known: {', '.join(known)}")
    return {m: known[m] for m in chosen}


def speed(args) -> dict:
    if args.floor:
        return reuse(args)
    with Pool.open(args.pool) as pool:
        result = bench_speed.run(pool, args.source, tuple(args.suspects.split(",")), repeat=args.repeat,
                                 lime_points=args.lime_points, lime_masks=args.lime_masks)
    return _show(result, bench_speed.markdown(result))


def reuse(args) -> dict:
    """Per-source and per-suspect seconds of each method against the forward-pass floor (any model references;
    bare ids name models of ``--pool`` when given)."""
    pool = getattr(args, "pool", None)
    ref = lambda r: f"{pool}::{r}" if pool and "::" not in r and not Path(r).exists() else r  # noqa: E731
    suspects = [ref(s) for s in id_list(args.suspects) or []]
    if len(suspects) < 2:
        raise BadInput("--suspects needs two or more models (the first pays the per-source work)")
    methods = with_params({name: dict(params) for name, params in _chosen(args.methods, bench_floor.FLOOR_METHODS).items()},
                           args.param)
    result = bench_floor.run(ref(args.source), suspects, methods, args.data, seconds=args.floor_seconds)
    return _show(result, bench_floor.markdown(result))


def siblings(args) -> dict:
    methods = _chosen(args.methods, bench_siblings.SIBLING_METHODS)
    with Pool.open(args.pool) as pool:
        result = bench_siblings.run(pool, methods)
    return _show(result, bench_siblings.markdown(result))


def lm(args) -> dict:
    from mgmp.bench import lm as bench_lm
    from mgmp.commands.score import reference_progress

    with Pool.open(args.pool) as pool, reference_progress() as progress:
        result = bench_lm.run(pool, args.source, args.references, args.alpha, progress)
    return _show(result, bench_lm.markdown(result))


def transfer(args) -> dict:
    combiners = tuple(id_list(args.combiners))
    if unknown := [c for c in combiners if c not in COMBINERS]:
        raise BadInput(f"--combiners: unknown {unknown[0]!r}; known: {', '.join(COMBINERS)}")
    result = bench_transfer.run(score_pools(id_list(args.pools), args.references, args.seed), args.alpha,
                                FusedTest.load(args.shipped), combiners)
    result["references"] = args.references
    return _show(result, bench_transfer.markdown(result))


def scan(args) -> dict:
    from mgmp.catalog.store import open_catalogs

    pools = id_list(args.pools)
    plans = id_list(args.plans) if args.plans else [CONFIGS / "pool" / f"{Path(p).name}.yaml" for p in pools]
    if len(plans) != len(pools):
        raise BadInput(f"--plans names {len(plans)} plans for {len(pools)} pools")
    if args.plans and (absent := [p for p in plans if not Path(p).is_file()]):
        raise BadInput(f"--plans: no plan file {absent[0]}")
    missing = [p for p in pools if not Pool.exists(p)]
    if missing:
        raise BadInput(f"no pool at {missing[0]} (build it: mgmp pool build configs/pool/real_image.yaml ...)")
    result = bench_scan.run(pools, [p if Path(p).is_file() else None for p in plans], open_catalogs(shipped=True),
                            args.large_params)
    return _show(result, bench_scan.markdown(result))


def forest(args) -> dict:
    with Pool.open(args.pool) as pool:
        result = bench_forest.run(pool, top_k=args.top_k)
    if args.figure:
        best = result["forests"][bench_forest.ROWS[0]]  # the recovered forest next to the registry's
        result["figure"] = str(forest_figure(best["models"], [(e["parent"], e["child"]) for e in best["edges"]],
                                             args.figure, truth=[tuple(e) for e in result["truth"]]))
        console.print(f"forest figure: {result['figure']}")
    return _show(result, bench_forest.markdown(result))


def index(args) -> dict:
    result: dict = {"pool": args.pool}
    with Pool.open(args.pool) as pool:
        if not args.no_retrieval:
            verdict = args.support == "verdict"
            if not verdict:
                result["calibration"] = calibrate_queries(pool, protocol_for(pool, "calibration"))
            # the default, without the weight index (not with the verdict: each row tests every candidate), DNA alone
            rows = ((True, ("gram", "weights")),) + (() if verdict else ((True, ("gram",)),)) + ((False, ("gram",)),)
            evaluation = replace(protocol_for(pool, "eval"), one_at_a_time=args.one_at_a_time)
            result["retrieval"] = [bench_index.retrieval(pool, evaluation, QueryOptions(
                top_k=args.top_k, rerank=rerank, dna=dna, support=args.support, alpha=args.alpha))
                for rerank, dna in rows]
            if not verdict and pool.calibration.get(EDGES_KEY) is not None:  # the forest's edge model choosing among supported hits
                from mgmp.forest.parent import edge_model

                result["edge_parent"] = bench_index.edge_parents(pool, result["retrieval"][0], edge_model(pool))
        if args.sizes:
            build_index(pool, "flat", threads=args.threads)
            spread = bench_index.real_spread(pool)
            sizes = [int(float(v)) for v in args.sizes.split(",")]
            result["spread"] = spread
            result["scale"] = bench_index.scale(sizes, spread["dim"], spread["within"], spread["between"],
                                                threads=args.threads)
    return _show(result, bench_index.markdown(result))
