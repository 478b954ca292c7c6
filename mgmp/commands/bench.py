"""``mgmp bench mgmp``."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from model_pool.errors import MgmpError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
console = Console(stderr=True)


def mgmp(args) -> dict:
    from mgmp.bench import mgmp_table
    from model_pool.builder import build_pool
    from model_pool.plan import load_plan

    plan = mgmp_table.DOMAINS[args.domain][0]
    if args.holdout == "family":
        if args.domain != "image":
            raise MgmpError("the family protocol needs a pool with several sources: only the image lineage pool has them")
        plan = "digits_lineage.yaml"
    pool = Path(args.pool or f"runs/pools/{Path(plan).stem}")
    if not (pool / "pool.sqlite").is_file() or args.build:
        console.print(f"building or resuming the {plan} pool in {pool}")
        report = build_pool(load_plan(CONFIGS / "pool" / plan), pool, workers=args.workers, resume=True)
        if not report.ok:
            raise MgmpError(f"pool build failed: {report.failed}")
    variants = [v.strip() for v in args.variants.split(",")] if args.variants else None
    result = mgmp_table.run(str(pool), seeds=args.seeds, epochs=args.epochs, episodes=args.episodes,
                            eval_points=args.eval_points, variants=variants, domain=args.domain,
                            holdout=args.holdout, source=args.source,
                            on_row=lambda name, row: console.print(f"{name}: fragment acc {row['frag_acc']:.3f}, "
                                                                   f"model AUROC {row['model_auroc']:.3f}"))
    table = mgmp_table.markdown(result)
    Console().print(table)
    result["markdown"] = table
    return result
