"""``mgmp forest`` and ``mgmp bench forest`` (issue 18): candidates, relatedness, direction, arborescence."""
import json
import shutil

import numpy as np

from mgmp.cli import main
from mgmp.forest.direction import MOTHER_RULE, DirectionModel, edge_features
from mgmp.forest.recover import arborescence
from mgmp.forest.signatures import WeightSignature
from model_pool.pool import Pool


def test_direction_model_is_antisymmetric_and_learns_the_evidence():
    rng = np.random.default_rng(0)
    edges = np.c_[rng.normal(0.5, 0.2, 40), rng.normal(0, 0.01, 40), rng.normal(0, 0.1, 40), rng.normal(0, 0.1, 40)]
    model = DirectionModel.fit(edges)
    f = np.array([0.4, 0.0, 0.0, 0.0])
    assert model.probability(f) > 0.9 and abs(model.probability(f) + model.probability(-f) - 1) < 1e-12
    assert DirectionModel.from_dict(model.to_dict()) == model and DirectionModel.from_dict(None) == MOTHER_RULE
    a, b = WeightSignature(1.0, 0.0, 1.0, 10), WeightSignature(1.5, 0.3, 0.01, 10)
    assert np.allclose(edge_features(a, b, True, 0.9, 0.6), -edge_features(b, a, True, 0.6, 0.9))
    assert edge_features(a, b, False, 0.9, 0.6)[:3].tolist() == [0, 0, 0]  # signatures compare within an arch


def test_arborescence_takes_a_parent_only_above_the_root_weight():
    scored = {("p", "c"): (0.9, 0.9, {}), ("c", "p"): (0.9, 0.1, {}), ("p", "d"): (0.6, 0.7, {}),
              ("d", "p"): (0.6, 0.3, {})}
    edges, roots = arborescence(["p", "c", "d", "x"], scored, min_related=0.5)
    assert [(e.parent, e.child) for e in edges] == [("p", "c")] and roots == ["d", "p", "x"]  # 0.6·0.7 < 0.5


def test_forest_on_a_pool_and_on_a_plain_directory(lineage_pool, tmp_path, capsys):
    pool = tmp_path / "pool"
    shutil.copytree(lineage_pool, pool)
    assert main(["calibrate", str(pool), "--methods", "weights,sac", "--no-query"]) == 0
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
    with Pool.open(pool) as p:
        assert p.calibration.get("forest_direction")["fitted_on"] == 6  # fit on the calibration families' edges
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
