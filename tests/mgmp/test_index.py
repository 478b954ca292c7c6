"""DNA vectors, the FAISS index (build, extend, atomic writes under concurrent readers), query, bench."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from mgmp.bench import index as bench
from mgmp.cli import main
from mgmp.index.dna import gram_dna
from mgmp.index.query import query
from mgmp.index.store import build_index, create_index, index_path, load_index, write_atomic
from model_pool.io import load_model_dir
from model_pool.registry import PoolRegistry


@pytest.fixture()
def pool(tiny_pool, tmp_path):
    out = tmp_path / "pool"
    shutil.copytree(tiny_pool, out)
    return out


def test_gram_dna_is_unit_label_order_free_and_separates(tiny_pool):
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    src, _ = load_model_dir(tiny_pool / "models" / "src")
    ind, _ = load_model_dir(tiny_pool / "models" / "ind")
    a = gram_dna(src, x)
    assert a.shape == (128,) and np.isclose(np.linalg.norm(a), 1, atol=1e-5)
    with torch.no_grad():
        src.head.weight.copy_(src.head.weight[torch.randperm(10)])  # another label order: same DNA
    assert np.allclose(gram_dna(src, x), a, atol=1e-6)
    assert float(a @ gram_dna(ind, x)) < 0.999


def test_build_extend_and_query(pool):
    first = build_index(pool, "flat", exclude={"ft-q8"})
    assert first["ntotal"] == 6 and first["dna_computed"] == 6 and index_path(pool, "flat").is_file()
    assert json.loads(index_path(pool, "flat").with_suffix(".json").read_text())["factory"] == "IDMap2,Flat"
    res = query(pool, f"{pool}::ft-q8", top_k=3, rerank=False, min_similarity=0.9)
    assert res.hits[0].model_id in {"ft", "soup", "src"} and res.parent is not None
    assert res.hits[0].chain[-1] == "src"
    second = build_index(pool, "flat")  # extend: only the new model is added
    assert second["added"] == 1 and second["ntotal"] == 7 and second["dna_computed"] == 1
    res = query(pool, f"{pool}::ft-q8", top_k=3, rerank=False)
    assert res.identical_to == ["ft-q8"] and "ft-q8" not in [h.model_id for h in res.hits]


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_approximate_kinds_build_and_answer(pool, kind):
    assert build_index(pool, kind)["ntotal"] == 7
    sims, ids = load_index(pool, kind).search(np.eye(128, dtype=np.float32)[:1], 3)
    assert (ids[0] >= 0).all()


def test_query_reranks_with_scores_and_cli(pool, tmp_path):
    assert main(["index", "build", str(pool), "--json", str(tmp_path / "b.json")]) == 0
    out = tmp_path / "q.json"
    assert main(["query", str(pool), f"{pool}::tr-5way", "--top-k", "3", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["identical_to"] == ["tr-5way"] and all(h["closeness"] is not None for h in res["hits"])
    assert main(["query", str(tmp_path), f"{pool}::src"]) == 2  # not a pool


def test_concurrent_readers_never_see_a_torn_index(tmp_path):
    path = tmp_path / "index" / "dna.faiss"
    x = np.random.default_rng(0).standard_normal((2000, 64)).astype(np.float32)
    write_atomic(create_index("flat", x[:10], np.arange(10), 64), {}, path)
    reader = (f"import faiss, sys\nerr = 0\nfor _ in range(300):\n    try:\n        faiss.read_index({str(path)!r})\n"
              f"    except Exception:\n        err += 1\nprint(err)")
    procs = [subprocess.Popen([sys.executable, "-c", reader], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    for n in range(20, 2000, 100):  # the writer keeps replacing the index with bigger ones
        write_atomic(create_index("flat", x[:n], np.arange(n), 64), {"n": n}, path)
    assert [int(p.communicate(timeout=120)[0]) for p in procs] == [0, 0]
    assert not list(path.parent.glob(".*"))  # no temp files left


def test_simulated_dna_matches_spread_and_scale_rows():
    base, queries = bench.simulate(3000, 64, within=0.95, between=0.8, family_size=30, n_queries=50)
    assert base.shape == (3000, 64) and np.allclose(np.linalg.norm(base, axis=1), 1, atol=1e-5)
    rows = bench.scale([2000], 64, 0.95, 0.8, n_queries=50)
    by = {r["kind"]: r for r in rows}
    assert by["flat"]["recall@10"] == 1.0 and 0 <= by["hnsw"]["recall@10"] <= 1 and by["ivfpq"]["memory_mb"] > 0
    assert "recall@10 vs exact" in bench.markdown({"scale": rows, "spread": {"dim": 64, "within": 0.95, "between": 0.8,
                                                                            "families": 3}})


def test_real_spread_needs_dna(pool):
    build_index(pool, "flat")
    with PoolRegistry(pool) as reg:
        assert len(reg.dna("gram")) == 7
    with pytest.raises(Exception, match="two families"):
        bench.real_spread(str(pool))  # one family with descendants only


@pytest.mark.slow
def test_kill9_during_index_builds_leaves_a_readable_index(pool):
    import time

    from model_pool.verify import verify_pool

    build_index(pool, "flat")
    script = f"from mgmp.index.store import build_index\nwhile True:\n    build_index({str(pool)!r}, 'flat', rebuild=True)"
    for delay in (3.0, 3.5, 4.0, 4.5, 5.0):  # after start-up (~2-3 s), in the middle of back-to-back rebuilds
        proc = subprocess.Popen([sys.executable, "-c", script])
        time.sleep(delay)
        proc.kill()
        proc.wait()
        assert load_index(pool, "flat").ntotal == 7  # the old or the new index, never a torn one
    assert build_index(pool, "flat")["ntotal"] == 7
    rep = verify_pool(pool)
    assert not rep.index_problems and not rep.orphaned_rows and not rep.missing and not rep.altered
