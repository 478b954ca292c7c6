"""``mgmp forest POOL|DIR``: recover the directed lineage forest of a set of models (SPEC §12).

A pool's registered edges are ignored (and drawn as the truth); a plain directory of model directories is
imported into a temporary pool first. ``--write-pool OUT`` registers the models in a new pool with the recovered
edges as parents (relation ``inferred``), parents before children.
"""
from __future__ import annotations

import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.tree import Tree

from mgmp.bench.forest import metrics
from mgmp.commands._common import id_list
from mgmp.forest import EDGES_KEY, EdgeModel, Forest, mother_forest, recover, registered_edges
from mgmp.forest.recover import edge_model_for, learnable
from mgmp.plots import forest_figure
from model_pool.errors import BadInput
from model_pool.importer import import_model
from model_pool.pool import Pool
from model_pool.registry import PoolRegistry

console = Console(stderr=True)


def _models_pool(src: Path, stack: ExitStack) -> Pool:
    """``src`` when it is a pool, else a temporary pool holding each model directory found in it."""
    if Pool.exists(src):
        return stack.enter_context(Pool.open(src))
    if not src.is_dir():
        raise BadInput(f"{src}: neither a model pool nor a directory of model directories")
    dirs = sorted(d for d in src.iterdir() if d.is_dir() and ((d / "model.json").is_file() or (d / "config.json").is_file()))
    if len(dirs) < 2:
        raise BadInput(f"{src}: a forest needs at least two model directories (model.json or config.json) in it")
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mgmp-forest-")))
    PoolRegistry(tmp / "pool", create=True).close()
    for d in dirs:
        import_model(tmp / "pool", d, model_id=d.name)
    return stack.enter_context(Pool.open(tmp / "pool"))


def _edge_model(calibrated: Pool, top_k: int) -> tuple[dict, EdgeModel]:
    """The fused and edge models (:func:`~mgmp.forest.recover.edge_model_for`); one fit on the pool's calibration
    families is kept in its calibration store, where ``mgmp query --parent edges`` reads it."""
    fused, model, origin = edge_model_for(calibrated, top_k)
    if learnable(calibrated):
        calibrated.calibration.put(EDGES_KEY, model.training())
    console.print(f"edge model: {origin}")
    return fused, model


def write_pool(pool: Pool, forest: Forest, out: Path) -> None:
    """Register ``forest``'s models in a new pool ``out``, each recovered edge as a parent (relation inferred)."""
    if out.exists():
        raise BadInput(f"{out} already exists")
    PoolRegistry(out, create=True).close()
    parents = forest.parents()
    done: set[str] = set()

    def add(m: str) -> None:
        if m in done:
            return
        for p in parents[m]:
            add(p)
        import_model(out, pool.root / pool.registry.get(m).path, model_id=m, parents=parents[m] or None,
                     relation="inferred" if parents[m] else None)
        done.add(m)

    for m in forest.models:
        add(m)


def run(args) -> dict[str, Any]:
    with ExitStack() as stack:
        pool = _models_pool(Path(args.dir), stack)
        reg = pool.registry
        ids = id_list(args.models) if args.models else sorted(
            r.id for r in reg.models() if args.split is None or r.split == args.split)
        if args.method == "mother":
            forest = mother_forest(pool, ids)
        else:
            calibrated = stack.enter_context(Pool.open(args.calibration)) if args.calibration else pool
            forest = recover(pool, ids, *_edge_model(calibrated, args.top_k), args.top_k)
        known = registered_edges(reg, ids)
        out = forest.to_dict() | {"truth": sorted(known)}
        if known:
            out["metrics"] = metrics(forest, known)
        if args.figure:
            out["figure"] = str(forest_figure(ids + forest.virtual, [(e.parent, e.child) for e in forest.edges], args.figure,
                                              truth=sorted(known) if known else None))
        if args.write_pool:
            write_pool(pool, forest, Path(args.write_pool))
    _print(forest, out)
    return out


def _print(forest: Forest, out: dict) -> None:
    kids: dict[str, list] = {}
    for e in forest.edges:
        kids.setdefault(e.parent, []).append(e)
    shown = Console()

    merged = {d["child"]: d for d in forest.merges}

    def grow(node: Tree, m: str) -> None:
        for e in sorted(kids.get(m, []), key=lambda e: e.child):
            merge = merged.get(e.child)
            if merge is None or m == merge["parents"][0]:  # a merge's subtree grows under its first parent only
                label = f"{e.child} [dim](P(parent) {e.probability:.2f})[/]"
                if merge is not None:
                    label += (f" [dim]merge of {merge['parents'][0]} and {merge['parents'][1]} (weight "
                              f"{merge['weight']:.2f}, explains {merge['explained']:.2f})[/]")
                grow(node.add(label), e.child)
            else:
                node.add(f"{e.child} [dim](merge: also under {merge['parents'][0]})[/]")

    for r in forest.roots:
        tree = Tree(f"[bold]{r}[/]" + (" [dim](virtual: a public backbone not among the models)[/]"
                                       if r in forest.virtual else ""))
        grow(tree, r)
        shown.print(tree)
    line = f"{len(forest.models)} models, {len(forest.edges)} edges, {len(forest.roots)} roots ({forest.method}, " \
           f"{forest.candidates} candidate pairs, {forest.seconds:.1f} s)"
    if "metrics" in out:
        m = out["metrics"]
        line += f"; against the registry: directed F1 {m['f1']:.3f}, root accuracy {m['root accuracy']:.3f}"
    shown.print(line)
