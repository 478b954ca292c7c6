"""``mgmp index build DIR`` and ``mgmp query DIR SUSPECT``."""
from __future__ import annotations

from rich.console import Console

from mgmp.commands._tables import make_table
from mgmp.index.query import QueryOptions
from mgmp.index.query import query as ancestor_query
from mgmp.index.store import build_indexes
from model_pool.pool import Pool


def _module(ckpt: str | None):
    """The MGMP checkpoint's module, or None (Lightning is imported only then: it costs seconds)."""
    if not ckpt:
        return None
    from mgmp.learned.provenance import load_mgmp

    return load_mgmp(ckpt)


def build(args) -> dict:
    with Pool.open(args.dir) as pool:
        results = build_indexes(pool, args.kind, args.dna, module=_module(args.ckpt), threads=args.threads,
                                rebuild=args.rebuild)
    for r in results:
        Console().print(f"{r['kind']} index ({r['factory']}) of {r['ntotal']} {r['dna']} DNA vectors "
                        f"(+{r['added']}) in {r['seconds']:.1f} s: {r['path']}")
    return {"indexes": results}


def query(args) -> dict:
    options = QueryOptions(top_k=args.top_k, kind=args.kind, dna=args.dna, rerank=not args.no_rerank,
                           min_similarity=args.min_similarity, support_threshold=args.support_threshold,
                           prefer_ancestors=args.prefer_ancestors, suspect_data=args.suspect_data,
                           suspect_task=args.suspect_task, student_roots=args.student_roots, support=args.support,
                           alpha=args.alpha, references=args.references)
    with Pool.open(args.dir) as pool:
        if args.parent == "edges":
            from mgmp.forest import parent  # the edge model's imports cost seconds: only when asked

            edges = parent.edge_model(pool)  # before the query's work: refused in one line without it
        res = ancestor_query(pool, args.suspect, options, _module(args.ckpt))
        if args.parent == "edges":
            res = parent.edge_parent(pool, args.suspect, res, edges)
    fmt = lambda v, digits=3: "-" if v is None else f"{v:.{digits}f}"  # noqa: E731
    table = make_table(("#", "model", "gram", "weights", "P", "p", "close", "sup", "lineage chain"),
                       ((i, h.model_id, fmt(h.similarities.get("gram"), 4), fmt(h.similarities.get("weights")),
                         fmt(h.probability), "-" if h.p_value is None else f"{h.p_value:.2g}", fmt(h.closeness),
                         "yes" if h.supported else "no", " -> ".join(h.chain))
                        for i, h in enumerate(res.hits, 1)),
                       title=f"ancestors of {args.suspect}", names=("model",),
                       numbers=("#", "gram", "weights", "P", "p", "close"),
                       caption="gram, weights: DNA similarity; P: P(lineage); p: the verdict's p-value; "
                               "close: closeness; sup: supported")
    console = Console()
    console.print(table)
    if res.identical_to:
        console.print(f"identical weights registered as: {', '.join(res.identical_to)}")
    console.print(f"[bold]{res.verdict}[/] (support: {res.support})")
    return res.to_dict()
