"""``mgmp pool repair`` and ``mgmp pool backup``: rebuild a damaged registry from the model directories,
and copy a live one with SQLite's online backup API.

``model.json`` is the source of truth for models and edges (id = directory name; dataset, split, tags
and job hash as the builder recorded them in the card's recipe). Cached tensors are re-registered from
``cache/<domain>/<name>.safetensors`` with their sha256 recomputed. The scores cache and DNA vectors are
derived data and dropped (scores are recomputed on demand; the DNA index files are removed, to rebuild
with ``mgmp index build``); the ``meta`` table (plan name, calibration) is copied from the damaged file
where its rows can still be read. The new registry is written to a temp file and renamed into place;
the damaged one is kept as ``pool.sqlite.corrupt-<time>``. A failure before the rename changes nothing.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from model_pool.atomic import fsync_file
from model_pool.card import ModelCard
from model_pool.errors import BadInput, MgmpError, RegistryCorrupt, StorageError, first_line
from model_pool.hashing import sha256_file
from model_pool.model_files import read_card, verify_files
from model_pool.registry import DB_NAME, ID_RE, MODELS_DIR, PoolRegistry, registry_health

DERIVED_DIRS = {"generated", "outputs", "index"}  # cache/ subdirectories that are not registered tensors


@dataclass
class RepairReport:
    models: int = 0
    edges: int = 0
    tensors: int = 0
    problem: str | None = None  # what was wrong with the registry (None: rebuilt with --force, or absent)
    kept_as: str | None = None
    meta_kept: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # model directories not restored, with the reason
    dropped: list[str] = field(default_factory=list)  # derived data dropped, and how to get it back

    def to_dict(self) -> dict:
        return asdict(self)


def repair_pool(pool_dir: str | Path, force: bool = False) -> RepairReport:
    """Rebuild ``pool_dir/pool.sqlite`` from the model directories; see the module docstring."""
    root = Path(pool_dir)
    db = root / DB_NAME
    if not (root / MODELS_DIR).is_dir():
        raise BadInput(f"{root}: no {MODELS_DIR}/ directory (not a model pool directory)")
    rep = RepairReport(problem=registry_health(db) if db.is_file() else f"{DB_NAME} missing")
    if rep.problem is None and not force:
        raise BadInput(f"{db}: registry is healthy; nothing to repair (--force rebuilds it anyway)")
    tmp = root / f".{DB_NAME}.repair-{os.getpid()}"
    _remove_db(tmp)
    try:
        with PoolRegistry(root, create=True, db_file=tmp) as reg:
            _restore_models(reg, rep)
            _restore_tensors(reg, rep)
            if db.is_file():
                _restore_meta(db, reg, rep)
                rep.dropped += _count_dropped(db)
        fsync_file(tmp)
    except BaseException:
        _remove_db(tmp)
        raise
    if db.is_file():
        stamp = time.strftime("%Y%m%dT%H%M%S")
        kept = next(k for i in range(1000) if not (k := root / f"{DB_NAME}.corrupt-{stamp}{f'-{i}' if i else ''}").exists())
        for suffix in ("", "-wal", "-shm"):  # a stale WAL beside the new file would be replayed into it
            if Path(f"{db}{suffix}").exists():
                os.replace(f"{db}{suffix}", f"{kept}{suffix}")
        rep.kept_as = kept.name
    os.replace(tmp, db)
    rep.dropped += _remove_indexes(root)
    return rep


def _restore_models(reg: PoolRegistry, rep: RepairReport) -> None:
    """Register every intact model directory, parents first; the rest are reported in ``rep.skipped``."""
    cards: dict[str, tuple[ModelCard, float]] = {}
    for d in sorted((reg.root / MODELS_DIR).iterdir()):
        if d.name.startswith(".tmp-"):
            continue
        if not ID_RE.match(d.name) or d.is_symlink() or not d.is_dir():
            rep.skipped.append(f"{d.name}: not a model directory")
            continue
        try:
            card = read_card(d)
            verify_files(d, card)
        except MgmpError as e:
            rep.skipped.append(f"{d.name}: {first_line(e)}")
            continue
        cards[d.name] = (card, (d / "model.json").stat().st_mtime)
    try:
        order = list(TopologicalSorter({m: [p for p in c.parents if p in cards] for m, (c, _) in cards.items()}).static_order())
    except CycleError as e:
        raise BadInput(f"{reg.root}: model.json parents form a cycle ({' -> '.join(e.args[1])})") from None
    for model_id in order:
        card, mtime = cards[model_id]
        missing = [p for p in card.parents if not reg.has(p)]
        if missing:
            rep.skipped.append(f"{model_id}: parent {missing[0]} not restored")
            continue
        recipe = card.recipe
        try:
            reg.add(model_id, card, dataset=recipe.get("dataset"), split=recipe.get("split"), tags=recipe.get("tags"),
                    job_hash=recipe.get("job_hash"), created=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(mtime)))
        except BadInput as e:
            rep.skipped.append(f"{model_id}: {first_line(e)}")
            continue
        rep.models += 1
        rep.edges += len(card.parents)


def _restore_tensors(reg: PoolRegistry, rep: RepairReport) -> None:
    """Re-register ``cache/<domain>/<name>.safetensors`` under its recomputed sha256."""
    cache = reg.root / "cache"
    for f in sorted(cache.glob("*/*.safetensors")) if cache.is_dir() else []:
        if f.parent.name in DERIVED_DIRS or f.is_symlink() or f.name.startswith("."):
            continue
        reg.put_probe(f.stem, f.parent.name, str(f.relative_to(reg.root)), sha256_file(f))
        rep.tensors += 1


def _read_damaged(db: Path, sql: str) -> list[tuple] | None:
    """Rows of ``sql`` on the damaged file, opened read-only; None when they cannot all be read."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None


def _restore_meta(db: Path, reg: PoolRegistry, rep: RepairReport) -> None:
    """Copy the readable ``meta`` rows (JSON documents such as calibrations must still parse)."""
    rows = _read_damaged(db, "SELECT key, value FROM meta")
    if rows is None:
        rep.dropped.append("meta: unreadable in the damaged file (plan name and calibration lost: rerun mgmp calibrate)")
        return
    for key, value in rows:
        if not isinstance(key, str) or not isinstance(value, str):
            continue
        if key != "plan_name":
            try:
                json.loads(value)
            except ValueError:
                rep.dropped.append(f"meta {key}: damaged value")
                continue
        reg.set_meta(key, value)
        rep.meta_kept.append(key)


def _count_dropped(db: Path) -> list[str]:
    out = []
    for table, why in (("scores", "recomputed on demand"), ("dna", "rebuild with: mgmp index build")):
        rows = _read_damaged(db, f"SELECT COUNT(*) FROM {table}")
        n = f"{rows[0][0]} rows" if rows else "rows unreadable"
        out.append(f"{table}: {n} dropped ({why})")
    return out


def _remove_indexes(root: Path) -> list[str]:
    """DNA index files hold ids of the dropped DNA rows: remove them (and their metadata)."""
    index_dir = root / "index"
    removed = []
    for f in sorted(index_dir.glob("*.faiss")) if index_dir.is_dir() else []:
        f.unlink()
        f.with_suffix(".json").unlink(missing_ok=True)
        removed.append(f"index/{f.name}: removed (rebuild with: mgmp index build)")
    return removed


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def backup_registry(pool_dir: str | Path, out: str | Path) -> dict:
    """Copy the live registry of ``pool_dir`` to ``out`` with SQLite's online backup API (consistent while
    other processes read or write), checked and renamed into place; returns what was copied."""
    out = Path(out)
    if out.exists():
        raise BadInput(f"{out} already exists; choose a new backup path")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with PoolRegistry(pool_dir) as reg:
            dest = sqlite3.connect(str(tmp))
            try:
                reg.conn.backup(dest)
                dest.execute("PRAGMA journal_mode=DELETE")
                models = dest.execute("SELECT COUNT(*) FROM models").fetchone()[0]
            except sqlite3.DatabaseError as e:
                if (problem := registry_health(reg.db)) is not None:
                    raise RegistryCorrupt(f"{reg.db}: registry damaged ({problem}); nothing to back up "
                                          f"(mgmp pool repair {reg.root})") from None
                raise StorageError(f"{out}: backup not written ({first_line(e)})") from None
            finally:
                dest.close()
        if (problem := registry_health(tmp)) is not None:
            raise RegistryCorrupt(f"{out}: backup failed its integrity check ({problem})")
        fsync_file(tmp)
        os.replace(tmp, out)
    except BaseException:
        _remove_db(tmp)
        raise
    return {"pool": str(pool_dir), "backup": str(out), "models": models, "bytes": out.stat().st_size}
