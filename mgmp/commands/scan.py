"""``mgmp scan MODEL``: which public base a model is built on; ``mgmp catalog add|ls``: a catalog of one's own."""
from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mgmp.catalog.files import open_model
from mgmp.catalog.fingerprint import fingerprint
from mgmp.catalog.scan import DERIVED_COSINE, MIN_COVERAGE, scan
from mgmp.catalog.store import Catalog, check_name, open_catalogs, private_catalog
from mgmp.commands import Outcome
from mgmp.commands._tables import make_table
from model_pool.errors import BadInput

console = Console(stderr=True)


@contextmanager
def _tensor_bar(what: str):
    """A progress bar over the tensors read, as ``progress(done, total)``."""
    with Progress(TextColumn(f"[bold]{what}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def run(args) -> Outcome:
    catalogs = open_catalogs(args.catalog, shipped=not args.no_shipped)
    if not any(len(c) for c in catalogs):
        raise BadInput("no base in the catalogs given: add one with `mgmp catalog add`")
    with _tensor_bar("scan") as progress:
        result = scan(args.model, catalogs, progress)
    rows = [[c.base, c.text, f"{c.cosine:.3f}", f"{c.matched}/{c.base_tensors}",
             "-" if c.tokenizer is None else f"{c.tokenizer:.2f}"] for c in result.candidates[:args.top_k]]
    Console().print(make_table(["base", "verdict", "cosine", "matched", "tokenizer"], rows,
                               title=f"{args.model}: {result.verdict}",
                               caption=f"derived: ≥ {MIN_COVERAGE:.0%} of the base's matrices matched with median "
                                       f"cosine ≥ {DERIVED_COSINE} (unrelated: ≈ 0); {result.tensors} matrices read "
                                       f"in {result.seconds:.2f} s", names=["base"],
                               numbers=["cosine", "matched", "tokenizer"]))
    for claim in result.claims:
        Console().print(f"model card claims base_model {claim['text']}")
    return Outcome(result.to_dict(args.top_k))


def add(args) -> dict:
    check_name(args.name)
    catalog = Catalog(args.catalog or private_catalog())
    model = open_model(args.model)
    with _tensor_bar(f"fingerprint {args.name}") as progress:
        fp = fingerprint(model, progress=progress)
    entry = catalog.add(args.name, fp, args.what or args.model, args.alias or [], args.model)
    console.print(f"added {entry.name} to {catalog.root}: {entry.tensors} matrices, {entry.params:,} weights, "
                  f"sha256 {entry.sha256[:12]}")
    return {"name": entry.name, "catalog": str(catalog.root), "tensors": entry.tensors, "params": entry.params,
            "sha256": entry.sha256}


def ls(args) -> dict:
    catalogs = [Catalog(args.catalog)] if args.catalog else open_catalogs()
    rows, out = [], []
    for c in catalogs:
        for e in c.entries.values():
            rows.append([e.name, e.what, f"{e.params / 1e6:.1f} M", str(e.tensors), ", ".join(e.aliases)])
            out.append({"name": e.name, "catalog": str(c.root), "what": e.what, "params": e.params,
                        "tensors": e.tensors, "aliases": list(e.aliases), "sha256": e.sha256})
    where = ", ".join(str(c.root) for c in catalogs)
    Console().print(make_table(["base", "what", "weights", "matrices", "aliases"], rows, title=f"catalog: {where}",
                               names=["base"], numbers=["weights", "matrices"]))
    return {"bases": out}
