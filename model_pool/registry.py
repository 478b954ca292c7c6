"""The pool registry: ``pool.sqlite`` (WAL) beside the model directories of a pool.

Rows are written one transaction per model, only after the model directory is complete, so a
registered row always points at a whole model. Lineage queries use recursive CTEs over ``edges``.
Every SQLite failure surfaces as one of the project's errors naming the file: a damaged file as
``RegistryCorrupt`` (``mgmp pool repair`` rebuilds it), a failed write as ``StorageError``.
"""
from __future__ import annotations

import json
import re
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from model_pool.card import ModelCard
from model_pool.errors import BadInput, RegistryCorrupt, StorageError, first_line

DB_NAME, MODELS_DIR = "pool.sqlite", "models"
REF_SEP = "::"  # CLI model references: POOL_DIR::MODEL_ID
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")

# a new table that keys on a model id needs its rows deleted in model_pool.remove (mgmp pool rm) too
SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY, arch TEXT NOT NULL, task TEXT, dataset TEXT, relation TEXT NOT NULL,
    parents TEXT NOT NULL DEFAULT '[]', recipe TEXT NOT NULL DEFAULT '{}', seed INTEGER,
    metrics TEXT NOT NULL DEFAULT '{}', path TEXT NOT NULL, sha256 TEXT NOT NULL,
    split TEXT, tags TEXT NOT NULL DEFAULT '{}', job_hash TEXT, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS edges (
    child TEXT NOT NULL REFERENCES models(id), parent TEXT NOT NULL, ord INTEGER NOT NULL,
    PRIMARY KEY (child, parent)
);
CREATE INDEX IF NOT EXISTS edges_parent ON edges(parent);
CREATE TABLE IF NOT EXISTS scores (
    a TEXT NOT NULL, b TEXT NOT NULL, method TEXT NOT NULL, params_hash TEXT NOT NULL,
    value REAL, extra TEXT NOT NULL DEFAULT '{}', seconds REAL, created TEXT NOT NULL,
    PRIMARY KEY (a, b, method, params_hash)
);
CREATE TABLE IF NOT EXISTS probes (
    name TEXT PRIMARY KEY, domain TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# model-level DNA vectors; the INTEGER id is the int64 id of the model in the FAISS index
DNA_SCHEMA = """
CREATE TABLE IF NOT EXISTS dna (
    id INTEGER PRIMARY KEY, model_id TEXT NOT NULL, kind TEXT NOT NULL, sha256 TEXT NOT NULL,
    vector BLOB NOT NULL, created TEXT NOT NULL, UNIQUE (model_id, kind)
);
"""


CORRUPT_CODES = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
STORAGE_CODES = {"SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_BUSY", "SQLITE_LOCKED",
                 "SQLITE_PERM"}


def registry_error(db: Path, e: sqlite3.DatabaseError) -> Exception:
    """The project's error for SQLite's ``e`` on ``db``; ``e`` itself when it is a bug (bad SQL)."""
    code = "_".join((getattr(e, "sqlite_errorname", "") or "").split("_")[:2])  # SQLITE_IOERR_WRITE -> SQLITE_IOERR
    msg = first_line(e)
    if code in CORRUPT_CODES or "no such table" in msg:
        return RegistryCorrupt(f"{db}: registry damaged ({msg}); rebuild it with: mgmp pool repair {db.parent}")
    if code in STORAGE_CODES:
        return StorageError(f"{db}: registry not written or read ({msg}: disk full, read-only or a file size limit?); "
                            "its last committed state is intact")
    return e


@contextmanager
def _guard(db: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as e:
        err = registry_error(db, e)
        if err is e:
            raise
        raise err from None


class _Cursor(sqlite3.Cursor):
    db: Path

    def execute(self, *args):
        with _guard(self.db):
            return super().execute(*args)

    def executemany(self, *args):
        with _guard(self.db):
            return super().executemany(*args)

    def fetchone(self):
        with _guard(self.db):
            return super().fetchone()

    def fetchall(self):
        with _guard(self.db):
            return super().fetchall()

    def __next__(self):
        with _guard(self.db):
            return super().__next__()


class _Connection(sqlite3.Connection):
    """A connection whose failures name the registry file (see :func:`registry_error`)."""

    db: Path

    def cursor(self, factory=_Cursor):
        cur = super().cursor(factory)
        cur.db = self.db
        return cur

    def execute(self, *args):
        return self.cursor().execute(*args)

    def executemany(self, *args):
        return self.cursor().executemany(*args)

    def executescript(self, script):
        with _guard(self.db):
            return super().executescript(script)


def connect(db: Path) -> sqlite3.Connection:
    """A guarded connection to registry file ``db`` (rows as ``sqlite3.Row``)."""
    with _guard(db):
        conn = sqlite3.connect(str(db), timeout=60, isolation_level=None, check_same_thread=False, factory=_Connection)
    conn.db = db
    conn.row_factory = sqlite3.Row
    return conn


def _short_file(db: Path) -> str | None:
    """A file cut short: its size is not a whole number of pages, or less than its header's page count (SQLite
    itself reads missing bytes of a last page as zeros)."""
    size = db.stat().st_size
    with open(db, "rb") as f:
        head = f.read(100)
    if len(head) < 100:
        return None  # SQLite reports these itself
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big") if head[92:96] == head[24:28] else 0  # valid-for == change counter
    if page and size % page:
        return f"file truncated ({size} bytes is not a whole number of {page}-byte pages)"
    if size < pages * page:
        return f"file truncated ({size} bytes, its header records {pages} pages of {page} bytes)"
    return None


def registry_health(db: Path) -> str | None:
    """None when ``db`` passes SQLite's integrity check and holds the registry's tables, else what is wrong."""
    if short := _short_file(db):
        return short
    try:
        conn = sqlite3.connect(str(db), timeout=60)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]
            conn.execute("SELECT 1 FROM models, edges LIMIT 1").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        return first_line(e)
    return None if rows == ["ok"] else "; ".join(rows[:3])


def check_id(model_id: str) -> str:
    if not isinstance(model_id, str) or not ID_RE.match(model_id):
        raise BadInput(f"invalid model id {model_id!r}: use letters, digits, '_', '-', '.' (max 128)")
    return model_id


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class ModelRow:
    """One registered model."""

    id: str
    arch: str
    task: str | None
    dataset: str | None
    relation: str
    parents: list[str]
    recipe: dict[str, Any]
    seed: int | None
    metrics: dict[str, float]
    path: str
    sha256: str
    split: str | None
    tags: dict[str, Any]
    job_hash: str | None
    created: str

    @classmethod
    def from_sql(cls, row: sqlite3.Row) -> "ModelRow":
        d = dict(row)
        for k in ("parents", "recipe", "metrics", "tags"):
            d[k] = json.loads(d[k])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class PoolRegistry:
    """Read and write a pool directory's registry."""

    def __init__(self, pool_dir: str | Path, create: bool = False, db_file: str | Path | None = None):
        """The registry of ``pool_dir`` (``db_file``: another file than ``pool.sqlite``, e.g. a repair's temp)."""
        self.root = Path(pool_dir)
        self.db = Path(db_file) if db_file is not None else self.root / DB_NAME
        new = not self.db.is_file()
        if new:
            if not create:
                raise BadInput(f"{pool_dir}: no {DB_NAME} (not a model pool directory)")
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / MODELS_DIR).mkdir(exist_ok=True)
        self.conn = connect(self.db)
        try:
            if not new:  # a damaged or foreign file is reported, never written to
                self.conn.execute("SELECT 1 FROM models LIMIT 0").fetchall()
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA busy_timeout=60000")
            self.conn.executescript(f"BEGIN; {SCHEMA} {DNA_SCHEMA} COMMIT;")  # DNA: also in pools made before it
        except BaseException:
            self.conn.close()
            if new:  # a registry that could not be created whole is not left behind
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{self.db}{suffix}").unlink(missing_ok=True)
            raise

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "PoolRegistry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:  # SQLite has already rolled back after some I/O errors
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- models ---------------------------------------------------------------------------
    def model_dir(self, model_id: str) -> Path:
        return self.root / MODELS_DIR / check_id(model_id)

    def add(self, model_id: str, card: ModelCard, *, dataset: str | None = None, split: str | None = None,
            tags: dict | None = None, job_hash: str | None = None, created: str | None = None) -> ModelRow:
        """Register the complete model directory ``models/<id>`` in one transaction."""
        check_id(model_id)
        if not card.sha256:
            raise BadInput(f"{model_id}: card has no sha256")
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM models WHERE id=?", (model_id,)).fetchone():
                raise BadInput(f"model {model_id!r} is already registered")
            missing = [p for p in card.parents if not c.execute("SELECT 1 FROM models WHERE id=?", (p,)).fetchone()]
            if missing:
                raise BadInput(f"{model_id}: unknown parent(s) {', '.join(missing)}")
            c.execute(
                "INSERT INTO models VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (model_id, card.arch, card.task, dataset, card.relation, json.dumps(card.parents), json.dumps(card.recipe),
                 card.seed, json.dumps(card.metrics), f"{MODELS_DIR}/{model_id}", card.sha256, split,
                 json.dumps(tags or {}), job_hash, created or _now()),
            )
            c.executemany("INSERT INTO edges VALUES (?,?,?)", [(model_id, p, i) for i, p in enumerate(card.parents)])
        return self.get(model_id)

    def get(self, model_id: str) -> ModelRow:
        row = self.conn.execute("SELECT * FROM models WHERE id=?", (model_id,)).fetchone()
        if row is None:
            raise BadInput(f"{self.root}: no model {model_id!r}")
        return ModelRow.from_sql(row)

    def has(self, model_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM models WHERE id=?", (model_id,)).fetchone() is not None

    def models(self, where: str = "", args: tuple = ()) -> list[ModelRow]:
        sql = "SELECT * FROM models" + (f" WHERE {where}" if where else "") + " ORDER BY created, id"
        return [ModelRow.from_sql(r) for r in self.conn.execute(sql, args)]

    def ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT id FROM models ORDER BY created, id")]

    # -- lineage --------------------------------------------------------------------------
    def parents(self, model_id: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT parent FROM edges WHERE child=? ORDER BY ord", (model_id,))]

    def children(self, model_id: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT child FROM edges WHERE parent=? ORDER BY child", (model_id,))]

    def _walk(self, model_id: str, up: bool) -> dict[str, int]:
        """Models reachable along lineage edges (up: towards roots), each with its generation distance."""
        to, frm = ("parent", "child") if up else ("child", "parent")
        rows = self.conn.execute(
            f"""WITH RECURSIVE walk(id, depth) AS (
                    SELECT {to}, 1 FROM edges WHERE {frm}=?
                    UNION SELECT e.{to}, walk.depth + 1 FROM edges e JOIN walk ON e.{frm} = walk.id)
                SELECT id, MIN(depth) FROM walk GROUP BY id ORDER BY 2, 1""", (model_id,))
        return {r[0]: r[1] for r in rows}

    def ancestors(self, model_id: str) -> dict[str, int]:
        """Every ancestor with its generation distance (1 = parent)."""
        return self._walk(model_id, up=True)

    def descendants(self, model_id: str) -> dict[str, int]:
        return self._walk(model_id, up=False)

    def roots(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM models WHERE id NOT IN (SELECT child FROM edges) ORDER BY created, id")]

    def chain(self, model_id: str) -> list[str]:
        """First-parent chain: the model, its parent, grandparent, ... up to a root."""
        out, cur = [model_id], model_id
        while (ps := self.parents(cur)) and ps[0] not in out:
            cur = ps[0]
            out.append(cur)
        return out

    def family(self, model_id: str) -> set[str]:
        """The roots this model descends from (itself when it is a root)."""
        anc = self.ancestors(model_id)
        roots = {a for a in anc if not self.parents(a)}
        return roots or {model_id}

    def families(self) -> dict[str, list[str]]:
        """Each root with all its descendants."""
        return {r: sorted(self.descendants(r)) for r in self.roots()}

    def related(self, a: str, b: str) -> bool:
        """True when one model is an ancestor of the other (lineage in the benchmark's sense)."""
        return a in self.ancestors(b) or b in self.ancestors(a)

    # -- scores cache ---------------------------------------------------------------------
    def get_score(self, a: str, b: str, method: str, params_hash: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM scores WHERE a=? AND b=? AND method=? AND params_hash=?",
                                (a, b, method, params_hash)).fetchone()
        if row is None:
            return None
        d = dict(row)
        d["extra"] = json.loads(d["extra"])
        return d

    def put_score(self, a: str, b: str, method: str, params_hash: str, value: float, seconds: float,
                  extra: dict | None = None) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?,?,?,?)",
                      (a, b, method, params_hash, value, json.dumps(extra or {}), seconds, _now()))

    # -- probes (cached probe inputs and generated test sets) -----------------------------
    def get_probe(self, name: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM probes WHERE name=?", (name,)).fetchone()
        return dict(row) if row else None

    def put_probe(self, name: str, domain: str, path: str, sha256: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO probes VALUES (?,?,?,?,?)", (name, domain, path, sha256, _now()))

    # -- DNA vectors -------------------------------------------------------------------------
    def dna(self, kind: str, after_id: int = 0) -> list[tuple[int, str, str, bytes]]:
        """(index id, model id, sha256, float32 bytes) of every DNA vector of ``kind`` with id > ``after_id``."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT id, model_id, sha256, vector FROM dna WHERE kind=? AND id>? ORDER BY id", (kind, after_id))]

    def put_dna(self, rows: list[tuple[str, str, str, bytes]]) -> None:
        """Store (model id, kind, sha256, vector bytes) rows in one transaction; a changed model gets a new id."""
        with self.transaction() as c:
            for model_id, kind, sha, vec in rows:
                c.execute("DELETE FROM dna WHERE model_id=? AND kind=?", (model_id, kind))
                c.execute("INSERT INTO dna (model_id, kind, sha256, vector, created) VALUES (?,?,?,?,?)",
                          (model_id, kind, sha, vec, _now()))

    def dna_vector(self, model_id: str, kind: str) -> bytes | None:
        row = self.conn.execute("SELECT vector FROM dna WHERE model_id=? AND kind=?", (model_id, kind)).fetchone()
        return row[0] if row else None

    def dna_model(self, index_id: int) -> str | None:
        row = self.conn.execute("SELECT model_id FROM dna WHERE id=?", (index_id,)).fetchone()
        return row[0] if row else None

    # -- meta -----------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, value))

    def delete_meta(self, key: str) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM meta WHERE key = ?", (key,))
