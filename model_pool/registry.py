"""The pool registry: ``pool.sqlite`` (WAL) beside the model directories of a pool.

Rows are written one transaction per model, only after the model directory is complete, so a
registered row always points at a whole model. Lineage queries use recursive CTEs over ``edges``.
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
from model_pool.errors import BadInput

DB_NAME, MODELS_DIR = "pool.sqlite", "models"
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")

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

    def __init__(self, pool_dir: str | Path, create: bool = False):
        self.root = Path(pool_dir)
        db = self.root / DB_NAME
        if not db.is_file():
            if not create:
                raise BadInput(f"{pool_dir}: no {DB_NAME} (not a model pool directory)")
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / MODELS_DIR).mkdir(exist_ok=True)
        self.conn = sqlite3.connect(str(db), timeout=60, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=60000")
        if create:
            self.conn.executescript(SCHEMA)
        self.conn.executescript(DNA_SCHEMA)  # also in pools made before the DNA index existed

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
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- models ---------------------------------------------------------------------------
    def model_dir(self, model_id: str) -> Path:
        return self.root / MODELS_DIR / check_id(model_id)

    def add(self, model_id: str, card: ModelCard, *, dataset: str | None = None, split: str | None = None,
            tags: dict | None = None, job_hash: str | None = None) -> ModelRow:
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
                 json.dumps(tags or {}), job_hash, _now()),
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
