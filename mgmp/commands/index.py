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
    from mgmp.index.store import build_index

    result = build_index(args.dir, args.kind, args.dna, _module(args.ckpt), args.threads, rebuild=args.rebuild)
    Console().print(f"{result['kind']} index ({result['factory']}) of {result['ntotal']} {result['dna']} DNA vectors "
                    f"(+{result['added']}) in {result['seconds']:.1f} s: {result['path']}")
    return result


def query(args) -> dict:
    from mgmp.index.query import query as run_query

    res = run_query(args.dir, args.suspect, args.top_k, args.kind, args.dna, _module(args.ckpt), rerank=not args.no_rerank,
                    min_similarity=args.min_similarity, suspect_data=args.suspect_data, suspect_task=args.suspect_task,
                    prefer_ancestors=args.prefer_ancestors)
    table = Table(title=f"ancestors of {args.suspect}")
    for col in ("rank", "model", "DNA sim", "P(lineage)", "closeness", "supported", "lineage chain"):
        table.add_column(col)
    for i, h in enumerate(res.hits, 1):
        table.add_row(str(i), h.model_id, f"{h.similarity:.4f}", "-" if h.probability is None else f"{h.probability:.3f}",
                      "-" if h.closeness is None else f"{h.closeness:.3f}", "yes" if h.supported else "no",
                      " -> ".join(h.chain))
    console = Console()
    console.print(table)
    if res.identical_to:
        console.print(f"identical weights registered as: {', '.join(res.identical_to)}")
    console.print(f"[bold]{res.verdict}[/] (support: {res.support})")
    return res.to_dict()
