"""``mgmp index build DIR`` and ``mgmp query DIR SUSPECT``."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _module(ckpt: str | None):
    if not ckpt:
        return None
    from mgmp.provenance import load_mgmp

    return load_mgmp(ckpt)


def build(args) -> dict:
    from mgmp.index.store import build_indexes

    results = build_indexes(args.dir, args.kind, args.dna, module=_module(args.ckpt), threads=args.threads,
                            rebuild=args.rebuild)
    for r in results:
        Console().print(f"{r['kind']} index ({r['factory']}) of {r['ntotal']} {r['dna']} DNA vectors "
                        f"(+{r['added']}) in {r['seconds']:.1f} s: {r['path']}")
    return {"indexes": results}


def query(args) -> dict:
    from mgmp.index.query import query as run_query

    res = run_query(args.dir, args.suspect, args.top_k, args.kind, args.dna, _module(args.ckpt), rerank=not args.no_rerank,
                    min_similarity=args.min_similarity, suspect_data=args.suspect_data, suspect_task=args.suspect_task,
                    prefer_ancestors=args.prefer_ancestors, support_threshold=args.support_threshold)
    table = Table(title=f"ancestors of {args.suspect}")
    for col in ("rank", "model", "gram DNA sim", "weight sim", "P(lineage)", "closeness", "supported", "lineage chain"):
        table.add_column(col)
    fmt = lambda v, digits=3: "-" if v is None else f"{v:.{digits}f}"  # noqa: E731
    for i, h in enumerate(res.hits, 1):
        table.add_row(str(i), h.model_id, fmt(h.similarities.get("gram"), 4), fmt(h.similarities.get("weights")),
                      fmt(h.probability), fmt(h.closeness), "yes" if h.supported else "no", " -> ".join(h.chain))
    console = Console()
    console.print(table)
    if res.identical_to:
        console.print(f"identical weights registered as: {', '.join(res.identical_to)}")
    console.print(f"[bold]{res.verdict}[/] (support: {res.support})")
    return res.to_dict()
