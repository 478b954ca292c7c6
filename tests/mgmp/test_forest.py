"""``mgmp forest`` and ``mgmp bench forest`` (issue 18): candidates, relatedness, direction, arborescence."""
import json
import shutil

import numpy as np
import pytest

from mgmp.cli import main
from mgmp.forest.arborescence import arborescence
from mgmp.forest.evidence import Evidence
from mgmp.forest.signatures import WeightSignature
from model_pool.pool import Pool


def _evidence() -> Evidence:
    """p with children c (fine-tuned: kurtosis up) and q (int8: value grid down); x unrelated."""
    sig = {"p": WeightSignature(1.0, 0.0, 1.0, 10), "c": WeightSignature(1.4, 0.0, 1.0, 10),
           "q": WeightSignature(1.0, 0.0, 0.05, 10), "x": WeightSignature(0.2, 0.0, 1.0, 10)}
    pairs = [("c", "p"), ("c", "q"), ("p", "q"), ("p", "x")]
    w = {("c", "p"): 0.95, ("c", "q"): 0.94, ("p", "q"): 0.99, ("p", "x"): 0.01}
    scores = {(u, v): {"weights": w[tuple(sorted((u, v)))]} for a, b in pairs for u, v in ((a, b), (b, a))}
    p = {k: 0.9 if v["weights"] > 0.5 else 0.1 for k, v in scores.items()}
    return Evidence(["c", "p", "q", "x"], sig, dict.fromkeys(sig, "small_cnn"), pairs, scores, p, ["weights"])


def test_evidence_reads_signatures_both_ways_and_nearness_among_candidates():
    ev = _evidence()
    f, names = ev.features(), ev.feature_names()
    assert len(names) == len(f[("p", "c")]) == 14 and set(f) == {k for a, b in ev.pairs for k in ((a, b), (b, a))}
    row = dict(zip(names, f[("p", "c")]))
    assert row["kurtosis rise"] == pytest.approx(0.4) and row["grid shrink"] == 0 and row["P fused (v→u)"] == 0.9
    assert row["weights gap to v's next candidate"] == pytest.approx(0.95 - 0.94)  # c's other candidate: q
    assert row["weights log distance gap to v's next candidate"] == pytest.approx(np.log(0.06 / 0.05))
    assert row["weights rank among v's candidates"] == 0 and row["weights rank of v among u's"] == 1  # p's nearest: q
    assert dict(zip(names, f[("p", "q")]))["grid shrink"] == pytest.approx(-np.log(0.05))
    assert ev.relatedness() == {"c": 0.9, "p": 0.9, "q": 0.9, "x": 0.1}


def test_arborescence_takes_a_parent_only_above_the_root_probability():
    p = {("p", "c"): 0.81, ("c", "p"): 0.09, ("p", "d"): 0.21, ("d", "p"): 0.09}
    edges, roots = arborescence(["p", "c", "d", "x"], p, root_probability=0.25)
    assert [(e.parent, e.child) for e in edges] == [("p", "c")] and roots == ["d", "p", "x"]
    # per model: d has a close relative, so a weak parent beats its (lower) root weight
    edges, roots = arborescence(["p", "c", "d", "x"], p, {"p": 0.25, "c": 0.25, "d": 0.1, "x": 0.25})
    assert [(e.parent, e.child) for e in edges] == [("p", "c"), ("p", "d")] and roots == ["p", "x"]


@pytest.fixture(scope="module")
def calibrated(lineage_pool, tmp_path_factory):
    """``lineage_pool`` calibrated on weights and sac (no query calibration), once for the module: each test
    copies it, since the forest keeps its edge model in the pool."""
    pool = tmp_path_factory.mktemp("calibrated") / "pool"
    shutil.copytree(lineage_pool, pool)
    assert main(["calibrate", str(pool), "--methods", "weights,sac", "--no-query"]) == 0
    return pool


def test_forest_on_a_pool_and_on_a_plain_directory(calibrated, tmp_path, capsys):
    pool = tmp_path / "pool"
    shutil.copytree(calibrated, pool)
    out, png, inferred = tmp_path / "forest.json", tmp_path / "forest.png", tmp_path / "inferred"
    assert main(["forest", str(pool), "--split", "eval", "--json", str(out), "--figure", str(png),
                 "--write-pool", str(inferred)]) == 0
    result = json.loads(out.read_text())
    parents = {e["child"]: e["parent"] for e in result["edges"]}
    assert parents.get("sa-ft") == "sa" and parents.get("sa-q8") == "sa", parents
    assert {"ind-e1", "ind-e2"} <= set(result["roots"]) and png.is_file()
    assert result["metrics"]["true edges"] == 3 and result["metrics"]["root accuracy"] == 1.0
    with Pool.open(inferred) as p:
        assert {(p.registry.parents(m)[0], m) for m in p.registry.ids() if p.registry.parents(m)} == {
            (e["parent"], e["child"]) for e in result["edges"]}
        assert {p.registry.get(m).relation for m in parents} == {"inferred"}
    models = tmp_path / "models"  # a plain directory of model directories, MoTHer's weights-only rule
    models.mkdir()
    with Pool.open(pool) as p:
        for m in ("sa", "sa-ft", "sa-q8", "ind-e1"):
            shutil.copytree(p.root / p.registry.get(m).path, models / m)
    capsys.readouterr()
    assert main(["forest", str(models), "--method", "mother", "--json", str(out)]) == 0
    mother = json.loads(out.read_text())
    assert "ind-e1" in mother["roots"] and {e["child"] for e in mother["edges"]} <= {"sa", "sa-ft", "sa-q8"}
    assert "metrics" not in mother and "ind-e1" in capsys.readouterr().out
    # no calibration anywhere: the shipped fused and edge models (fit on the digits lineage pool) recover it
    assert main(["forest", str(models), "--json", str(out)]) == 0
    shipped = json.loads(out.read_text())
    assert {(e["parent"], e["child"]) for e in shipped["edges"]} == {("sa", "sa-ft"), ("sa", "sa-q8")}
    assert "edge model: shipped" in capsys.readouterr().err


def test_metrics_count_directed_edges_roots_and_sibling_links():
    from mgmp.bench.forest import metrics
    from mgmp.forest import Edge, Forest

    truth = {("p", "c"), ("p", "d")}
    forest = Forest(["p", "c", "d", "x"], [Edge("p", "c", 0.9), Edge("c", "d", 0.8)], ["p", "x"], 3, "test", 4.0)
    m = metrics(forest, truth)
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)
    assert m["sibling edges"] == 0.5 and m["root accuracy"] == 1.0 and m["root precision"] == 1.0
    assert m["undirected accuracy"] == 0.5 and m["seconds per model"] == 1.0


def test_query_parent_from_the_edge_model_kept_by_forest(calibrated, tmp_path, capsys):
    pool = tmp_path / "pool"
    shutil.copytree(calibrated, pool)
    capsys.readouterr()
    assert main(["query", str(pool), f"{pool}::sa-ft", "--parent", "edges", "--support", "fused"]) == 2  # no edge model yet
    assert "run `mgmp forest" in capsys.readouterr().err
    assert main(["forest", str(pool), "--split", "calibration"]) == 0  # fits the edge model and keeps it
    assert main(["index", "build", str(pool)]) == 0
    out = tmp_path / "q.json"
    assert main(["query", str(pool), f"{pool}::sa-ft", "--parent", "edges", "--support", "fused", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["parent"] == "sa" and "P(parent)" in result["verdict"]
    assert all("P(parent)" in h["scores"] for h in result["hits"] if h["supported"])


def test_a_pool_that_cannot_fit_an_edge_model_gets_the_shipped_one(tiny_pool):
    """No calibration families: ``--parent edges`` reads the shipped edge model with the fused model it was fit with."""
    from mgmp.forest.parent import edge_model

    with Pool.open(tiny_pool) as pool:
        model = edge_model(pool)
    assert model.fused["columns"] == ["dna", "weights"] and model.y.sum() > 100  # the digits pool's calibration edges
