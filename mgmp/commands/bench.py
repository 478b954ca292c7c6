"""``mgmp bench mgmp|lineage|speed|index``: run a benchmark, print its markdown table, return its result."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from model_pool.errors import MgmpError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
console = Console(stderr=True)


def _ensure_pool(pool: Path, plan: str, workers: int, resume: bool) -> None:
    """Build the embedded pool ``plan`` into ``pool`` when it is absent (or resume it when asked)."""
    from model_pool.builder import build_pool
    from model_pool.plan import load_plan

    if not (pool / "pool.sqlite").is_file() or resume:
        console.print(f"building or resuming the {plan} pool in {pool}")
        report = build_pool(load_plan(CONFIGS / "pool" / plan), pool, workers=workers, resume=True)
        if not report.ok:
            raise MgmpError(f"pool build failed: {report.failed}")


def _require_pool(pool: str) -> None:
    if not (Path(pool) / "pool.sqlite").is_file():
        raise MgmpError(f"{pool}: no pool; build it first (mgmp bench lineage builds it)")


def _show(result: dict, markdown: str) -> dict:
    result["markdown"] = markdown
    Console().print(markdown)
    return result


def mgmp(args) -> dict:
    from mgmp.bench import mgmp_table

    plan = mgmp_table.DOMAINS[args.domain][0]
    if args.holdout == "family":
        if args.domain != "image":
            raise MgmpError("the family protocol needs a pool with several sources: only the image lineage pool has them")
        plan = "digits_lineage.yaml"
    pool = Path(args.pool or f"runs/pools/{Path(plan).stem}")
    _ensure_pool(pool, plan, args.workers, args.build)
    variants = [v.strip() for v in args.variants.split(",")] if args.variants else None
    result = mgmp_table.run(str(pool), seeds=args.seeds, epochs=args.epochs, episodes=args.episodes,
                            eval_points=args.eval_points, variants=variants, domain=args.domain,
                            holdout=args.holdout, source=args.source,
                            on_row=lambda name, row: console.print(f"{name}: fragment acc {row['frag_acc']:.3f}, "
                                                                   f"model AUROC {row['model_auroc']:.3f}"))
    return _show(result, mgmp_table.markdown(result))


def lineage(args) -> dict:
    from mgmp.bench import lineage as bench

    pool = Path(args.pool)
    _ensure_pool(pool, "digits_lineage.yaml", args.workers, args.build)
    methods = bench.METHODS
    if args.methods:
        unknown = [m for m in args.methods.split(",") if m not in methods]
        if unknown:
            raise MgmpError(f"unknown method {unknown[0]!r}; known: {', '.join(methods)}")
        methods = {m: methods[m] for m in args.methods.split(",")}
    result = bench.run(str(pool), mgmp_epochs=args.mgmp_epochs, seed=args.seed, methods=methods,
                       with_mgmp=not args.no_mgmp)
    bench.save_thresholds(str(pool), result)
    if "closeness" in result["values"]:
        result["heatmap"] = str(bench.heatmap(result, Path(args.figures) / "closeness_heatmap.png"))
        console.print(f"closeness heatmap: {result['heatmap']}")
    return _show(result, bench.markdown(result))


def speed(args) -> dict:
    from mgmp.bench import speed as bench

    _require_pool(args.pool)
    result = bench.run(args.pool, args.source, tuple(args.suspects.split(",")), repeat=args.repeat,
                       lime_points=args.lime_points, lime_masks=args.lime_masks)
    return _show(result, bench.markdown(result))


def index(args) -> dict:
    from mgmp.bench import index as bench
    from mgmp.index.store import build_index

    _require_pool(args.pool)
    result: dict = {"pool": args.pool}
    if not args.no_retrieval:
        result["calibration"] = bench.calibrate(args.pool)
        # the default, without the weight index, and DNA similarity alone
        result["retrieval"] = [bench.retrieval(args.pool, rerank=rerank, dna=dna, top_k=args.top_k)
                               for rerank, dna in ((True, ("gram", "weights")), (True, ("gram",)), (False, ("gram",)))]
    if args.sizes:
        build_index(args.pool, "flat", threads=args.threads)
        spread = bench.real_spread(args.pool)
        sizes = [int(float(v)) for v in args.sizes.split(",")]
        result["spread"] = spread
        result["scale"] = bench.scale(sizes, spread["dim"], spread["within"], spread["between"],
                                      threads=args.threads)
    return _show(result, bench.markdown(result))
