"""DNA vectors, the FAISS index (build, extend, atomic writes under concurrent readers), query, bench."""
import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from mgmp.bench import index as bench
from mgmp.calibration.fit import calibrate
from mgmp.calibration.fusion import FusedScore
from mgmp.calibration.store import Calibration
from mgmp.cli import main
from mgmp.index import calibrate as query_calibration
from mgmp.index.calibrate import Protocol
from mgmp.index.query import (
    Hit,
    QueryOptions,
    _closeness,
    _evidence,
    _near_copy_ancestor,
    _orderable,
    _parsimonious,
    _rank,
    _verdict_strength,
    query,
)
from mgmp.index.store import build_index, build_indexes, create_index, index_path, load_index, search, write_atomic
from mgmp.representations.gram import gram_dna
from model_pool.errors import BadInput
from model_pool.io import load_model_dir
from model_pool.pool import Pool

# a stand-in fused student model (weights cosine: cheap, and a fine-tune's root is its only clear match)
STAND_IN_STUDENTS = FusedScore(["weights"], [True]).fit(np.array([[0.0], [0.1], [0.8], [1.0]]), np.array([0, 0, 1, 1])
                                                        ).describe() | {"support_threshold": 0.5,
                                                                        "methods": {"weights": ("weights", {})}}


def _copy(src, tmp_path, name="pool") -> Pool:
    out = tmp_path / name
    shutil.copytree(src, out)
    return Pool.open(out)


@pytest.fixture()
def pool(tiny_pool, tmp_path):
    with _copy(tiny_pool, tmp_path) as opened:
        yield opened


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
    res = query(pool, pool.ref("ft-q8"), QueryOptions(top_k=3, rerank=False, min_similarity=0.9))
    assert res.hits[0].model_id in {"ft", "soup", "src"} and res.parent is not None
    assert res.hits[0].chain[-1] == "src"
    second = build_index(pool, "flat")  # extend: only the new model is added
    assert second["added"] == 1 and second["ntotal"] == 7 and second["dna_computed"] == 1
    res = query(pool, pool.ref("ft-q8"), QueryOptions(top_k=3, rerank=False))
    assert res.identical_to == ["ft-q8"] and "ft-q8" not in [h.model_id for h in res.hits]
    hidden = query(pool, pool.ref("ft"), QueryOptions(top_k=6, rerank=False, exclude=frozenset({"ft"})))
    chains = {h.model_id: h.chain for h in hidden.hits}  # an excluded model is not in the registry: chains end below it
    assert chains["ft-q8"] == ["ft-q8"] and chains["src"] == ["src"]


def test_weight_index_candidates_and_parsimony(pool):
    assert [b["ntotal"] for b in build_indexes(pool, "flat", exclude={"tr-5way", "ft-q8"})] == [5, 5]
    res = query(pool, pool.ref("tr-5way"), QueryOptions(top_k=5, rerank=False))
    assert res.dna == ["gram", "weights"] and all(set(h.similarities) == {"gram", "weights"} for h in res.hits)
    weights = {h.model_id: h.similarities["weights"] for h in res.hits}
    assert min(weights[m] for m in ("src", "ft", "soup")) > 0.5 > abs(weights["ind"])  # inherited weights
    # the nearest model and its registered ancestors are candidates; parsimony walks up to the root
    options = QueryOptions(top_k=5, min_similarity=0.5, candidates_per_index=1, support="similarity")
    tolerant = query(pool, pool.ref("ft-q8"), replace(options, prefer_ancestors=1.0))
    assert tolerant.parent == "src" and tolerant.hits[0].explains and tolerant.chain == ["src"]
    strict = query(pool, pool.ref("ft-q8"), replace(options, prefer_ancestors=0.0))
    assert strict.parent == strict.hits[0].model_id != "src" and "src" in [h.model_id for h in strict.hits]
    assert strict.hits[0].closeness >= max(h.closeness for h in strict.hits if h.supported)


def test_closeness_is_scored_only_where_a_ranking_reads_it():
    """Hits no support threshold >= the floor can support are not ordered by closeness (seconds per pair on real
    backbones), except as ancestors of one that can: the parsimony walk reads theirs."""
    hits = [Hit("a", 0.9, ["a", "b"], probability=0.9), Hit("b", 0.8, ["b"], probability=0.1),
            Hit("c", 0.7, ["c"], probability=0.3), Hit("d", 0.6, ["d"])]
    assert [h.model_id for h in _orderable(hits, "fused", 0.5)] == ["a", "b"]
    assert [h.model_id for h in _orderable(hits, "fused", 0.2)] == ["a", "b", "c"]
    assert [h.model_id for h in _orderable(hits, "similarity", 0.65)] == ["a", "b", "c"]
    for h, c in zip(hits, (0.4, 0.45)):
        h.closeness, h.supported = c, h.probability >= 0.5
    ranked = _rank(hits, _closeness, lambda h, by_id: _parsimonious(h, by_id, 0.1))  # b explains a, the rest by DNA
    assert [h.model_id for h in ranked] == ["b", "a", "c", "d"] and ranked[0].explains == ["a"]


def test_a_near_copy_yields_to_the_ancestor_it_copies():
    """Verdict support: saturated P orders a source's int8 twin by noise; a hit whose change from its supported
    ancestor explains under 2 % of the suspect's squared weight distance yields to it, a real child does not, and
    neither does one whose distance reads other tensors."""
    def hits(twin: float, child: float, aligned: int = 4):
        return [Hit("int8", 0.9, ["int8", "src"], probability=0.999, derived=True, distance=twin, aligned=aligned),
                Hit("child", 0.9, ["child", "src"], probability=0.998, derived=True, distance=child, aligned=4),
                Hit("src", 0.9, ["src"], probability=0.997, derived=True, distance=0.0100, aligned=4)]

    def ranked(hs):
        for h in hs:
            h.supported = h.derived
        return [h.model_id for h in _rank(hs, _verdict_strength, _near_copy_ancestor)]

    assert ranked(hits(0.0099, 0.0030)) == ["src", "int8", "child"]  # 1 % of the distance: the twin copies src
    assert ranked(hits(0.0090, 0.0030)) == ["int8", "child", "src"]  # 10 %: it explains the suspect better
    assert ranked(hits(0.0099, 0.0030, aligned=3)) == ["int8", "child", "src"]  # another head: not comparable


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_approximate_kinds_agree_with_exact_search(pool, kind):
    """On a registry this small, HNSW and IVF-PQ (its PQ candidates re-scored exactly) return exact search's
    neighbours and similarities for every model's own DNA."""
    build_index(pool, "flat")
    assert build_index(pool, kind)["ntotal"] == 7
    queries = np.stack([np.frombuffer(v, dtype=np.float32) for *_, v in pool.registry.dna("gram")])
    exact_sims, exact_ids = search(load_index(pool, "flat"), queries, 3)
    sims, ids = search(load_index(pool, kind), queries, 3)
    assert (ids == exact_ids).all() and np.allclose(sims, exact_sims, atol=1e-4)
    assert (exact_sims[:, 0] > 0.999).all()  # each model's nearest neighbour is itself


def test_query_reranks_with_scores_and_cli(pool, tmp_path):
    assert main(["index", "build", str(pool.root), "--json", str(tmp_path / "b.json")]) == 0
    out = tmp_path / "q.json"
    assert main(["query", str(pool.root), pool.ref("tr-5way"), "--top-k", "3", "--support", "similarity",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["identical_to"] == ["tr-5way"] and all(h["closeness"] is not None for h in res["hits"] if h["supported"])
    assert main(["query", str(tmp_path), pool.ref("src")]) == 2  # not a pool


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
    # 300 vectors: an IVF-PQ with 2-bit codes; its polysemous training (on by default in FAISS's factory) costs
    # time in proportion to the 2**bits codes of each sub-quantizer, not to the vectors (11 s at 2000: 5 bits)
    rows = bench.scale([300], 64, 0.95, 0.8, n_queries=50)
    by = {r["kind"]: r for r in rows}
    assert by["flat"]["recall@10"] == 1.0 and 0 <= by["hnsw"]["recall@10"] <= 1 and by["ivfpq"]["memory_mb"] > 0
    assert "recall@10 vs exact" in bench.markdown({"scale": rows, "spread": {"dim": 64, "within": 0.95, "between": 0.8,
                                                                            "families": 3}})


def test_real_spread_needs_dna(pool):
    build_index(pool, "flat")
    assert len(pool.registry.dna("gram")) == 7
    with pytest.raises(BadInput, match="two families"):
        bench.real_spread(pool)  # one family with descendants only


@pytest.mark.slow
def test_kill9_during_index_builds_leaves_a_readable_index(pool):
    import time

    from model_pool.verify import verify_pool

    build_index(pool, "flat")
    script = (f"from mgmp.index.store import build_index\nfrom model_pool.pool import Pool\npool = Pool.open({str(pool.root)!r})\n"
              f"build_index(pool, 'flat', rebuild=True)\nprint('rebuilding', flush=True)\n"
              f"while True:\n    build_index(pool, 'flat', rebuild=True)")
    for delay in (0.0, 0.13, 0.37):  # in the middle of back-to-back rebuilds (~20 ms each), once the first is done
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        while (line := proc.stdout.readline()) not in ("rebuilding\n", ""):  # past its start-up (seconds, more
            pass  # on a busy machine) and its first rebuild
        assert line == "rebuilding\n"
        time.sleep(delay)
        proc.kill()
        proc.wait()
        assert load_index(pool, "flat").ntotal == 7  # the old or the new index, never a torn one
    assert build_index(pool, "flat")["ntotal"] == 7
    rep = verify_pool(pool.root)
    assert not rep.index_problems and not rep.orphaned_rows and not rep.missing and not rep.altered


TINY_PROTOCOL = Protocol(("sa", "sc"), ("ft", "q8", "tr"), "sd", ("sd", "sd-ft", "ind-e1"))


def test_retrieval_protocol_metrics_match_the_ranked_hits(lineage_pool, tmp_path):
    with _copy(lineage_pool, tmp_path, "lineage") as pool:
        r = bench.retrieval(pool, TINY_PROTOCOL, QueryOptions(top_k=3, rerank=False, min_similarity=0.9))
        one = bench.retrieval(pool, replace(TINY_PROTOCOL, one_at_a_time=True), QueryOptions(top_k=3, rerank=False))
        held = set(TINY_PROTOCOL.held_out(pool.registry))
    assert one["protocol"] == "one at a time" and one["held_out"] == 6 and r["protocol"] == "held-out set"
    assert not any(q["suspect"] in q["hits"] for q in one["queries"])  # each suspect alone is held out, the rest stays
    assert any(set(q["hits"]) & held for q in one["queries"]) and not any(set(q["hits"]) & held for q in r["queries"])
    derived = [q for q in r["queries"] if q["expected"]]
    assert r["held_out"] == len(derived) == 6 and r["unrelated"] == 3 and r["dna"] == ["gram", "weights"]
    assert all(q["expected"] in ("sa", "sc") for q in derived) and not any("sd" in q["hits"] for q in r["queries"])
    ranks = [q["hits"].index(q["expected"]) + 1 if q["expected"] in q["hits"] else None for q in derived]
    assert r["hit_rate@5"] == pytest.approx(np.mean([k is not None for k in ranks]))
    assert r["mrr"] == pytest.approx(np.mean([1 / k if k else 0 for k in ranks]))
    assert r["top1_parent"] == pytest.approx(np.mean([q["parent"] == q["expected"] for q in derived]))
    assert r["multi_generation_chain_correct"] is None and "chain correct -" in bench.markdown({"retrieval": [r]})


def test_query_calibration_is_chosen_on_queries_and_used_by_query(lineage_pool, pool, tmp_path):
    with pytest.raises(BadInput, match="no calibrated fused model"):
        query_calibration.calibrate_queries(pool, TINY_PROTOCOL)  # the tiny pool was never calibrated
    cheap = {"closeness (no test-set gen.)": ("closeness", {"k": 20, "generate": False}), "weights": ("weights", {})}
    with _copy(lineage_pool, tmp_path, "lineage") as lineage:
        calibrate(lineage, cheap)
        Calibration(fused_students=STAND_IN_STUDENTS).save(lineage)
        cal = query_calibration.calibrate_queries(lineage, TINY_PROTOCOL)
        chosen = cal["chosen"]
        assert len(cal["grid"]) == (len(query_calibration.THRESHOLDS) * len(query_calibration.EPSILONS)
                                    * len(query_calibration.STUDENT_THRESHOLDS))
        assert chosen["student_threshold"] in query_calibration.STUDENT_THRESHOLDS
        best = max(g["balanced"] for g in cal["grid"])
        assert chosen["balanced"] == best and chosen["support_threshold"] in query_calibration.THRESHOLDS
        build_indexes(lineage, "flat", exclude={"sa-ft"})
        res = query(lineage, lineage.ref("sa-ft"), QueryOptions(top_k=3, support="fused"))
        assert res.support == f"fast fused P >= {chosen['support_threshold']:.3f} (calibrated)"
        explicit = QueryOptions(top_k=3, support_threshold=1.01, support="fused")
        assert query(lineage, lineage.ref("sa-ft"), explicit).parent is None  # an explicit threshold wins
    assert "| threshold |" in bench.markdown({"calibration": cal})


def test_protocol_from_tags_of_any_tagged_lineage_pool(lineage_pool, tmp_path):
    with Pool.open(lineage_pool) as pool:
        cal = query_calibration.protocol_for(pool, "calibration")
        ev = query_calibration.protocol_for(pool, "eval")
    assert cal.sources == ("sc",) and cal.unrelated_family == "sd" and cal.held == ("sc-ft", "sc-q8", "sc-tr")
    assert cal.unrelated == ("sd", "sd-ft", "sd-q8", "sd-tr", "ind-c1", "ind-c2")
    assert ev.sources == ("sa",) and ev.unrelated_family is None and ev.unrelated == ("ind-e1", "ind-e2")
    assert "sc" in ev.outside and "sa" in cal.outside and not set(ev.outside) & set(cal.outside)
    hits = lambda r: {h for q in r["queries"] for h in q["hits"]}  # noqa: E731
    with _copy(lineage_pool, tmp_path, "lineage") as pool:
        r = bench.retrieval(pool, ev, QueryOptions(top_k=3, rerank=False, min_similarity=0.9))
        everything = bench.retrieval(pool, replace(ev, outside=()), QueryOptions(top_k=3, rerank=False))
    assert r["held_out"] == 3 and r["unrelated"] == 2
    assert hits(everything) & set(ev.outside) and not hits(r) & set(ev.outside)  # each split a registry of its own
    assert {q["expected"] for q in r["queries"] if q["expected"]} == {"sa"}


def test_an_uncalibrated_registry_answers_with_the_fused_verdict(lineage_pool, tmp_path):
    """Without a calibration of its own, a hit is supported iff the shipped fused test calls the suspect derived from
    it (each hit against its own references): a fine-tune finds its source, an independent finds nothing."""
    assert _evidence(QueryOptions(), Calibration(fused_fast={"columns": []})) == "verdict"  # calibrated or not
    assert _evidence(QueryOptions(support="fused"), Calibration(fused_fast={"columns": []})) == "fused"
    with pytest.raises(BadInput, match="--support fused needs"):
        _evidence(QueryOptions(support="fused"), Calibration())
    with _copy(lineage_pool, tmp_path, "lineage") as pool:
        build_indexes(pool, "flat", exclude={"sa-ft", "ind-e1"})
        out = tmp_path / "q.json"
        assert main(["query", str(pool.root), pool.ref("sa-ft"), "--top-k", "1", "--references", "2",
                     "--support", "verdict", "--json", str(out)]) == 0
        res = json.loads(out.read_text())
        tested = re.match(r"the fused verdict at alpha 0.01 over (\d+) candidates \(each at ([^;]+); shipped", res["support"])
        assert res["parent"] == "sa" and tested and float(tested[2]) == pytest.approx(0.01 / int(tested[1]), rel=0.05)
        assert all(h["supported"] == h["derived"] and (h["p_value"] is None or 0 < h["p_value"] <= 1)
                   for h in res["hits"])
        independent = query(pool, pool.ref("ind-e1"), QueryOptions(top_k=1, references=2, support="verdict"))
        assert independent.parent is None and independent.hits and not any(h.derived for h in independent.hits)


def test_a_suspect_without_supported_ancestor_gets_the_student_check_of_the_roots(lineage_pool, tmp_path):
    stored = STAND_IN_STUDENTS
    no_support = QueryOptions(top_k=3, support_threshold=1.01, support="similarity")  # nothing supports any hit
    with _copy(lineage_pool, tmp_path, "lineage") as pool:
        build_indexes(pool, "flat", exclude={"sa-ft", "ind-e1"})
        assert query(pool, pool.ref("sa-ft"), no_support).parent is None  # no student model stored yet
        Calibration(fused_students=stored).save(pool)
        res = query(pool, pool.ref("sa-ft"), no_support)
        assert res.parent == "sa" and "student or thief of it" in res.verdict and res.hits[0].model_id == "sa"
        assert res.hits[0].probability >= 0.5 and "weights" in res.hits[0].scores
        assert query(pool, pool.ref("sa-ft"), replace(no_support, student_roots=0)).parent is None
        assert query(pool, pool.ref("sa-ft"), replace(no_support, exclude=frozenset({"sa"}))).parent != "sa"
        assert query(pool, pool.ref("ind-e1"), no_support).parent is None  # an independent root's weights match none
