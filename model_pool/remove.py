"""``mgmp pool rm``: remove models from a pool, with every row and cached file that belongs to them.

The rows go in one registry transaction: ``models``, lineage ``edges`` (as child or parent), cached
``scores`` with the model on either side (also ``ID@DATA``, a source transferred to another task) and
``dna`` vectors. A model whose parents include a removed one is refused (nothing is removed) unless
``with_descendants``, which removes the descendants too. Files go only after the commit, so a crash
never leaves a row without its files: each model directory is first renamed to ``models/.tmp-rm-*``
(what ``pool build --resume`` clears), then deleted; then the cached outputs of the removed weights
(``cache/outputs/<probe>/<id>-<kind>-<sha12>.npy``), the models generated for them as sources
(``cache/generated/<id>``, ``<id>@*``), and their ids in the DNA index files (an index that cannot
remove ids, HNSW, is deleted: ``mgmp index build`` rebuilds it from the kept vectors).

Cached tensors in the ``probes`` table stay: their names are content hashes, not model ids, and they
are valid for any model with the same weights. The calibration documents stay too (fitted on pairs,
they name no removed model's files).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from model_pool.atomic import write_file
from model_pool.errors import BadInput, MgmpError, first_line
from model_pool.registry import MODELS_DIR, PoolRegistry

OUTPUT_KINDS = ("logits", "features")  # model_pool.outputs.KINDS (not imported here: it imports torch)


@dataclass
class Removal:
    """What ``remove_models`` removed (paths relative to the pool)."""

    pool: str
    ids: list[str] = field(default_factory=list)  # every removed model, oldest first
    descendants: list[str] = field(default_factory=list)  # those removed only because an ancestor was
    rows: dict[str, int] = field(default_factory=dict)  # registry table -> rows deleted
    dirs: list[str] = field(default_factory=list)  # model directories
    cache: list[str] = field(default_factory=list)  # cached outputs and generated models
    indexes: list[str] = field(default_factory=list)  # DNA index files changed or removed
    left: list[str] = field(default_factory=list)  # files that could not be removed (rows are gone)

    def to_dict(self) -> dict:
        return asdict(self)


def remove_models(pool_dir: str | Path, ids: list[str], with_descendants: bool = False) -> Removal:
    """Remove ``ids`` (and, with ``with_descendants``, every model descending from them) from the pool at
    ``pool_dir``; see the module docstring. ``BadInput`` (nothing removed) for an unknown id or a descendant
    that would be orphaned."""
    root = Path(pool_dir)
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        raise BadInput("pool rm: name at least one model id")
    rep = Removal(str(pool_dir))
    with PoolRegistry(root) as reg, reg.transaction() as c:  # BEGIN IMMEDIATE: no child is added in between
        unknown = [i for i in wanted if not reg.has(i)]
        if unknown:
            raise BadInput(f"{root}: no model {', '.join(map(repr, unknown))} (nothing removed)")
        below = {d for i in wanted for d in reg.descendants(i) if reg.has(d)} - set(wanted)
        if below and not with_descendants:
            shown = ", ".join(sorted(below)[:10]) + (f" and {len(below) - 10} more" if len(below) > 10 else "")
            raise BadInput(f"{root}: {', '.join(wanted)} would orphan descendant(s) {shown}; pass "
                           "--with-descendants to remove them too (nothing removed)")
        gone = set(wanted) | below
        rows = [r for r in reg.models() if r.id in gone]
        rep.ids = [r.id for r in rows]
        rep.descendants = [r.id for r in rows if r.id in below]
        keys = [(i,) for i in rep.ids]
        dna_ids = [r[0] for i in rep.ids for r in c.execute("SELECT id FROM dna WHERE model_id=?", (i,))]
        rep.rows = {
            "models": c.executemany("DELETE FROM models WHERE id=?", keys).rowcount,
            "edges": c.executemany("DELETE FROM edges WHERE child=?1 OR parent=?1", keys).rowcount,
            "scores": c.executemany("DELETE FROM scores WHERE a=?1 OR b=?1 OR substr(a, 1, length(?1) + 1)=?1 "
                                    "|| '@' OR substr(b, 1, length(?1) + 1)=?1 || '@'", keys).rowcount,
            "dna": c.executemany("DELETE FROM dna WHERE model_id=?", keys).rowcount,
        }
    # committed: now the files (a crash from here on leaves files without rows, which --resume clears)
    for r in rows:
        _remove_model_dir(root, root / r.path, r.id, rep)
    _remove_cache(root, rows, rep)
    if dna_ids:
        _remove_from_indexes(root, set(dna_ids), rep)
    return rep


def _rmtree(root: Path, path: Path, rep: Removal, into: list[str]) -> None:
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path)
    except OSError as e:
        rep.left.append(f"{path.relative_to(root)}: {e.strerror or first_line(e)}")
        return
    into.append(str(path.relative_to(root)))


def _remove_model_dir(root: Path, path: Path, model_id: str, rep: Removal) -> None:
    """A model directory, renamed out of the way first (a half-deleted directory is never taken for a model)."""
    models = root / MODELS_DIR
    if path.is_symlink():  # the link goes, never what it points at
        _rmtree(root, path, rep, rep.dirs)
        return
    if not path.exists():
        return
    if not path.resolve().is_relative_to(models.resolve()):
        rep.left.append(f"{path}: outside {models}, not removed")
        return
    trash = models / f".tmp-rm-{model_id}-{os.getpid()}"
    try:
        os.replace(path, trash)
    except OSError as e:
        rep.left.append(f"{path.relative_to(root)}: {e.strerror or first_line(e)}")
        return
    done: list[str] = []
    _rmtree(root, trash, rep, done)
    if done:
        rep.dirs.append(str(path.relative_to(root)))


def _remove_cache(root: Path, rows, rep: Removal) -> None:
    """Cached outputs of the removed weights and the models generated for them as sources."""
    cache = root / "cache"
    outputs, generated = cache / "outputs", cache / "generated"
    probes = sorted(p for p in outputs.iterdir() if p.is_dir()) if outputs.is_dir() else []
    for r in rows:
        for probe in probes:
            for kind in OUTPUT_KINDS:
                f = probe / f"{r.id}-{kind}-{r.sha256[:12]}.npy"
                if f.is_file() or f.is_symlink():
                    _rmtree(root, f, rep, rep.cache)
        if generated.is_dir():  # ids hold no glob characters (registry.ID_RE)
            for d in sorted([generated / r.id, *generated.glob(f"{r.id}@*")]):
                if d.exists() or d.is_symlink():
                    _rmtree(root, d, rep, rep.cache)


def _remove_from_indexes(root: Path, dna_ids: set[int], rep: Removal) -> None:
    """Drop the removed DNA ids from every index file holding them (an index that cannot: the file goes)."""
    index_dir = root / "index"
    files = sorted(f for f in index_dir.glob("*.faiss") if not f.name.startswith(".")) if index_dir.is_dir() else []
    if not files:
        return
    import faiss  # only when there are indexes to edit
    import numpy as np

    for f in files:
        try:
            index = faiss.read_index(str(f))
        except RuntimeError:
            continue  # unreadable: pool verify reports it, index build --rebuild replaces it
        if not hasattr(index, "id_map"):
            continue
        have = set(faiss.vector_to_array(index.id_map).tolist())
        drop = np.array(sorted(have & dna_ids), dtype=np.int64)
        if not len(drop):
            continue
        meta_file = f.with_suffix(".json")
        try:
            index.remove_ids(drop)
        except RuntimeError:  # e.g. HNSW
            for g in (f, meta_file):
                g.unlink(missing_ok=True)
            rep.indexes.append(f"index/{f.name}: removed (cannot drop ids; rebuild with: mgmp index build)")
            continue
        try:
            write_file(f, lambda tmp, index=index: faiss.write_index(index, tmp))
            meta = _read_meta(meta_file)
            if meta is not None:
                meta["ntotal"] = int(index.ntotal)
                text = json.dumps(meta, indent=2)
                write_file(meta_file, lambda tmp, text=text: Path(tmp).write_text(text))
        except MgmpError as e:  # a write fault: the old file stays (pool verify names its stale ids)
            rep.left.append(f"index/{f.name}: {first_line(e)}")
            continue
        rep.indexes.append(f"index/{f.name}: {len(drop)} ids dropped, {index.ntotal} left")


def _read_meta(path: Path) -> dict | None:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None
