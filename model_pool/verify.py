"""``mgmp pool verify``: check a pool directory against its registry without changing anything.

Reports a damaged registry (its model directories are then checked on their own),
registry rows whose model directory is missing, model files that are altered (sha256 differs
from model.json or from the registry), unreadable cards, model directories and temp leftovers
that no row points at, lineage edges and cached rows (scores, DNA) about unknown or changed models,
cached tensors whose file is missing or altered, and index files holding ids the registry lacks.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss

from model_pool.errors import MgmpError, RegistryCorrupt, first_line
from model_pool.hashing import sha256_file
from model_pool.model_files import read_card, verify_files
from model_pool.registry import DB_NAME, MODELS_DIR, PoolRegistry, registry_health


@dataclass
class VerifyReport:
    models: int = 0
    registry: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    orphaned_dirs: list[str] = field(default_factory=list)
    temp_leftovers: list[str] = field(default_factory=list)
    orphaned_rows: list[str] = field(default_factory=list)
    cache_problems: list[str] = field(default_factory=list)
    index_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(v for k, v in asdict(self).items() if k != "models")

    @property
    def consistent(self) -> bool:
        """Every row matches its files and caches; only what a killed writer leaves (temp and unregistered
        directories, removed by ``--resume``) may remain."""
        return not (self.registry or self.missing or self.altered or self.orphaned_rows or self.cache_problems or self.index_problems)

    def to_dict(self) -> dict:
        return asdict(self) | {"ok": self.ok, "consistent": self.consistent}


def verify_pool(pool: str | Path) -> VerifyReport:
    pool = Path(pool)
    db = pool / DB_NAME
    problem = registry_health(db) if db.is_file() else None  # no file at all: PoolRegistry says "not a pool"
    if problem is None:
        try:
            return _verify_registered(pool)
        except RegistryCorrupt as e:
            problem = first_line(e)
    rep = VerifyReport(registry=[f"{problem} (rebuild it with: mgmp pool repair {pool})"])
    for d in sorted((pool / MODELS_DIR).iterdir()) if (pool / MODELS_DIR).is_dir() else []:
        if d.name.startswith(".tmp-"):
            rep.temp_leftovers.append(d.name)
            continue
        try:
            verify_files(d, read_card(d))
            rep.models += 1
        except MgmpError as e:
            rep.altered.append(f"{d.name}: {first_line(e)}")
    return rep


def _verify_registered(pool: Path) -> VerifyReport:
    rep = VerifyReport()
    with PoolRegistry(pool) as reg:
        rows = {r.id: r for r in reg.models()}
        rep.models = len(rows)
        for mid, row in rows.items():
            path = reg.root / row.path
            if path.is_symlink() or not path.resolve().is_relative_to(pool.resolve()):
                rep.altered.append(f"{mid}: model directory leaves the pool directory")
            elif not path.is_dir():
                rep.missing.append(mid)
            else:
                try:
                    card = read_card(path)
                    verify_files(path, card)
                    if card.sha256 != row.sha256:
                        rep.altered.append(f"{mid}: weights differ from the registry's sha256")
                except MgmpError as e:
                    rep.altered.append(f"{mid}: {e}")
        models_dir = pool / MODELS_DIR
        known = {Path(r.path).name for r in rows.values()}
        for d in sorted(models_dir.iterdir()) if models_dir.is_dir() else []:
            if d.name.startswith(".tmp-"):
                rep.temp_leftovers.append(d.name)
            elif d.name not in known:
                rep.orphaned_dirs.append(d.name)
        c = reg.conn
        for child, parent in c.execute("SELECT child, parent FROM edges"):
            if child not in rows or parent not in rows:
                rep.orphaned_rows.append(f"edge {parent} -> {child}: unknown model")
        for (a, b, method) in c.execute("SELECT DISTINCT a, b, method FROM scores"):
            unknown = [m for m in (a, b) if m not in rows and "@" not in m]
            if unknown:
                rep.orphaned_rows.append(f"score {method}({a}, {b}): unknown model {unknown[0]}")
        dna_ids = set()
        for i, mid, sha, _kind in c.execute("SELECT id, model_id, sha256, kind FROM dna"):
            dna_ids.add(i)
            if mid not in rows:
                rep.orphaned_rows.append(f"dna {i}: unknown model {mid}")
            elif rows[mid].sha256 != sha:
                rep.orphaned_rows.append(f"dna {i}: stale vector of {mid} (weights changed; run mgmp index build)")
        for name, path, sha in c.execute("SELECT name, path, sha256 FROM probes"):
            f = reg.root / path
            if not f.is_file():
                rep.cache_problems.append(f"{name}: file missing")
            elif sha256_file(f) != sha:
                rep.cache_problems.append(f"{name}: file altered (sha256 mismatch)")
    index_dir = pool / "index"
    for f in sorted(index_dir.glob("*.faiss")) if index_dir.is_dir() else []:
        rep.index_problems += _check_index(f, dna_ids)
    rep.temp_leftovers += sorted(f"index/{f.name}" for f in index_dir.glob(".*")) if index_dir.is_dir() else []
    return rep


def _check_index(path: Path, dna_ids: set[int]) -> list[str]:
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as e:
        return [f"{path.name}: unreadable ({first_line(e, 120)})"]
    if not hasattr(index, "id_map"):
        return []
    stale = set(faiss.vector_to_array(index.id_map).tolist()) - dna_ids
    return [f"{path.name}: {len(stale)} ids not in the registry (rebuild: mgmp index build --rebuild)"] if stale else []
