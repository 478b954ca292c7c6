"""``mgmp pool rm``: a model's rows (models, edges, scores, DNA), cached outputs, generated models, index ids and
directory go; descendants are never orphaned unless asked; an unknown id changes nothing; ``pool build --resume``
rebuilds what was removed."""
import json
import shutil

import numpy as np
import pytest
import torch

from mgmp.cli import main
from model_pool.chaos import registry_state
from model_pool.outputs import KINDS
from model_pool.pool import Pool
from model_pool.registry import PoolRegistry
from model_pool.remove import OUTPUT_KINDS
from model_pool.verify import verify_pool
from tests.conftest import CONFIGS

IDS = ["src", "ft", "tr-10way", "tr-5way", "ft-q8", "soup", "ind"]


@pytest.fixture(scope="module")
def cached_pool(tiny_pool, tmp_path_factory):
    """The tiny pool with something of every model in each cache: outputs, generated models, scores, DNA and two
    DNA indexes (flat drops ids, HNSW cannot), plus a content-keyed cached tensor."""
    from mgmp.index.store import create_index, write_atomic

    pool = tmp_path_factory.mktemp("rm") / "pool"
    shutil.copytree(tiny_pool, pool)
    rng = np.random.default_rng(0)
    with Pool.open(pool) as p:
        outputs = p.outputs(torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
        reg = p.registry
        for mid in IDS:
            outputs.get(mid, "logits")
            for key in (mid, f"{mid}@digits-tasks_2_5"):
                (p.root / "cache" / "generated" / key).mkdir(parents=True, exist_ok=True)  # other tests may have filled it
                (p.root / "cache" / "generated" / key / "model.json").write_text("{}")
            reg.put_score("src", mid, "sac", "h", 0.5, 0.1)
            reg.put_score(f"{mid}@digits-tasks_2_5", "ind", "zest", "h", 0.2, 0.1)
        reg.put_dna([(r.id, "gram", r.sha256, rng.standard_normal(8).astype(np.float32).tobytes())
                     for r in reg.models()])
        rows = reg.dna("gram")
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vectors = np.stack([np.frombuffer(r[3], dtype=np.float32) for r in rows])
        for kind in ("flat", "hnsw"):
            write_atomic(create_index(kind, vectors, ids, 8), {"kind": kind, "ntotal": len(ids)},
                         p.root / "index" / f"dna-gram-{kind}.faiss")
        p.tensor("probe-a", "probes", lambda: torch.arange(12.0))
    assert verify_pool(pool).ok
    return pool


def _copy(src, tmp_path):
    pool = tmp_path / "pool"
    shutil.copytree(src, pool)
    return pool


def _snapshot(pool):
    """Every registry row and every file of the pool."""
    with PoolRegistry(pool) as reg:
        tables = {t: reg.conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in ("scores", "dna", "meta")}
    files = sorted(str(f.relative_to(pool)) for f in pool.rglob("*") if "pool.sqlite" not in f.name)
    return registry_state(pool), {t: [tuple(r) for r in rows] for t, rows in tables.items()}, files


def _one_line(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(n in err for n in needles), err


def _left(pool, mid):
    """Where the pool still mentions model ``mid`` (empty: nowhere)."""
    with PoolRegistry(pool) as reg:
        c = reg.conn
        queries = {"models": "SELECT 1 FROM models WHERE id=?1",
                   "edges": "SELECT 1 FROM edges WHERE child=?1 OR parent=?1",
                   "scores": "SELECT 1 FROM scores WHERE a=?1 OR b=?1 OR a LIKE ?1 || '@%' OR b LIKE ?1 || '@%'",
                   "dna": "SELECT 1 FROM dna WHERE model_id=?1"}
        found = [table for table, sql in queries.items() if c.execute(sql, (mid,)).fetchone()]
    found += [str(f.relative_to(pool)) for f in (pool / "cache" / "outputs").glob(f"*/{mid}-*.npy")]
    found += [str(f.relative_to(pool)) for f in (pool / "cache" / "generated").glob(f"{mid}*")]
    return found + (["dir"] if (pool / "models" / mid).exists() else [])


def test_rm_a_leaf_removes_its_rows_caches_index_ids_and_directory(cached_pool, tmp_path):
    assert OUTPUT_KINDS == KINDS
    pool = _copy(cached_pool, tmp_path)
    with PoolRegistry(pool) as reg:
        dna_id = reg.conn.execute("SELECT id FROM dna WHERE model_id='ft-q8'").fetchone()[0]
        n_scores = reg.conn.execute("SELECT count(*) FROM scores WHERE a='ft-q8' OR b='ft-q8' OR a LIKE 'ft-q8@%' "
                                    "OR b LIKE 'ft-q8@%'").fetchone()[0]  # this file's 2 + what other tests cached
    cached = sorted(f for f in _left(pool, "ft-q8") if f.startswith("cache/"))  # other tests may add to tiny_pool's
    out = tmp_path / "rm.json"
    assert main(["pool", "rm", str(pool), "ft-q8", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["ids"] == ["ft-q8"] and rep["descendants"] == [] and rep["left"] == []
    assert rep["rows"] == {"models": 1, "edges": 1, "scores": n_scores, "dna": 1} and n_scores >= 2
    assert rep["dirs"] == ["models/ft-q8"] and sorted(rep["cache"]) == cached and len(cached) >= 3  # logits, 2 generated
    assert _left(pool, "ft-q8") == []
    for m in set(IDS) - {"ft-q8"}:  # the others keep everything
        left = _left(pool, m)
        assert {"models", "scores", "dna", "dir"} <= set(left) and len(left) >= 7, (m, left)
    import faiss

    flat = faiss.read_index(str(pool / "index" / "dna-gram-flat.faiss"))
    assert flat.ntotal == 6 and dna_id not in faiss.vector_to_array(flat.id_map)
    assert json.loads((pool / "index" / "dna-gram-flat.json").read_text())["ntotal"] == 6
    assert not (pool / "index" / "dna-gram-hnsw.faiss").exists()  # HNSW cannot drop ids: rebuilt by index build
    with Pool.open(pool) as p:
        assert p.has("probe-a")  # content-keyed tensors stay
    rep = verify_pool(pool)
    assert rep.ok and rep.models == 6, rep


def test_rm_refuses_to_orphan_descendants_and_changes_nothing(cached_pool, tmp_path, capsys):
    pool = _copy(cached_pool, tmp_path)
    before = _snapshot(pool)
    assert main(["pool", "rm", str(pool), "ft"]) == 2
    _one_line(capsys, "ft-q8", "soup", "--with-descendants", "nothing removed")
    assert main(["pool", "rm", str(pool), "ind", "nope"]) == 2  # an unknown id: the known one stays too
    _one_line(capsys, "'nope'", "nothing removed")
    assert _snapshot(pool) == before


def test_rm_with_descendants(cached_pool, tmp_path):
    pool = _copy(cached_pool, tmp_path)
    out = tmp_path / "rm.json"
    assert main(["pool", "rm", str(pool), "ft", "--with-descendants", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert sorted(rep["ids"]) == ["ft", "ft-q8", "soup"] and sorted(rep["descendants"]) == ["ft-q8", "soup"]
    assert rep["rows"]["edges"] == 4  # ft <- src, ft-q8 <- ft, soup <- src and ft
    assert all(_left(pool, m) == [] for m in ("ft", "ft-q8", "soup"))
    with PoolRegistry(pool) as reg:
        assert sorted(reg.ids()) == ["ind", "src", "tr-10way", "tr-5way"]
        assert reg.children("src") == ["tr-10way", "tr-5way"]
    assert verify_pool(pool).ok


def test_rm_then_resume_rebuilds_exactly_what_was_removed(tiny_pool, tmp_path):
    pool = _copy(tiny_pool, tmp_path)
    with PoolRegistry(pool) as reg:
        before = {r.id: r.job_hash for r in reg.models()}
    assert main(["pool", "rm", str(pool), "soup", "ft-q8"]) == 0
    out = tmp_path / "build.json"
    assert main(["pool", "build", str(CONFIGS / "tiny.yaml"), "--out", str(pool), "--resume", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert sorted(rep["built"]) == ["ft-q8", "soup"] and not rep["failed"] and len(rep["skipped"]) == 5
    with PoolRegistry(pool) as reg:
        assert {r.id: r.job_hash for r in reg.models()} == before and reg.parents("soup") == ["src", "ft"]
    assert verify_pool(pool).ok
