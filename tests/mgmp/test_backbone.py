"""Backbone-aware verdicts (issue 21): derived from A, a sibling of A via its public backbone P, or cannot tell;
in ``mgmp score``, ``mgmp calibrate`` and the ancestor query."""
import json
import shutil

import numpy as np
import pytest

from mgmp.calibration.backbone import DERIVED, SIBLING, UNRESOLVED, SiblingRule, backbone_verdict
from mgmp.calibration.store import Calibration
from mgmp.cli import main
from mgmp.index.query import QueryOptions, QueryResult, shared_backbone, walk_up
from mgmp.scores import load_pair
from mgmp.scores.inheritance import starting_point
from model_pool.pool import Pool


def test_the_rule_caps_drift_where_children_and_siblings_mix():
    """Pairs with drift ≤ 1.5 separate at ρ ≈ 0.7; above drift 3 children fall low and siblings high (any threshold
    errs on each): the fit caps drift below them."""
    rng = np.random.default_rng(0)
    rho = np.r_[rng.uniform(0.9, 1.1, 5), rng.uniform(0.2, 0.5, 5), np.tile([-0.5, 1.5], 3)]
    drift = np.r_[rng.uniform(0.5, 1.5, 10), rng.uniform(3, 6, 6)]
    derived = np.r_[np.ones(5), np.zeros(5), np.tile([1, 0], 3)].astype(bool)
    rule = SiblingRule.fit(rho, drift, derived)
    assert drift[:10].max() <= rule.max_drift < 3 and 0.5 < rule.threshold < 0.9 and rule.fitted_on == 16
    assert [rule.decide(1.0, 1.0), rule.decide(0.4, 1.0), rule.decide(1.0, 4.0)] == [DERIVED, SIBLING, UNRESOLVED]
    assert SiblingRule.from_dict(rule.to_dict()) == rule


def test_a_root_tagged_public_is_recognised_and_siblings_get_it_as_parent(sibling_pool):
    with Pool.open(sibling_pool) as pool:
        ref = pool.ref
        start = starting_point(load_pair(ref("e-a"), ref("e-sib"), pool=pool))
        assert (start.label, start.found, start.public, start.relation) == ("e", "registered", True, "finetune")
        assert backbone_verdict(load_pair(ref("e-a"), ref("e-a-q8"), pool=pool))["relation"] == DERIVED
        found = backbone_verdict(load_pair(ref("e-a"), ref("e-sib"), pool=pool))
        assert found["relation"] == SIBLING and found["base"] == "e" and "sibling of the source via e" in found["text"]
        # the query's parent: A's sibling gets the public backbone; A's child keeps its parent
        chain = pool.registry.chain("e-a")
        asked = QueryResult("x", [], "most likely parent: e-a", "e-a", chain, "test", chain=chain)
        sib = shared_backbone(pool, ref("e-sib"), asked, QueryOptions())
        assert sib.parent == "e" and sib.backbone["relation"] == SIBLING and "a sibling of e-a via e" in sib.verdict
        child = shared_backbone(pool, ref("e-a-ft"), asked, QueryOptions())
        assert child.parent == "e-a" and child.backbone["relation"] == DERIVED
        # a registered, not public, starting point: e-a-pr against its light-fine-tuned sibling e-a-ft moved far
        # beyond e-a-ft's own change (cannot tell): e-a is an ancestor either way, unless the query excludes it
        chain = pool.registry.chain("e-a-ft")
        asked = QueryResult("x", [], "most likely parent: e-a-ft", "e-a-ft", chain, "test", chain=chain)
        pruned = shared_backbone(pool, ref("e-a-pr"), asked, QueryOptions())
        assert pruned.parent == "e-a" and pruned.backbone["base"] == "e-a", pruned.verdict
        assert pruned.backbone["relation"] == SIBLING or "an ancestor either way" in pruned.verdict
        kept = shared_backbone(pool, ref("e-a-pr"), asked, QueryOptions(exclude=frozenset({"e-a"})))
        assert kept.parent == "e-a-ft" and kept.backbone is None
        # ranked under A's child, A's sibling is walked up: not derived from e-a-ft, nor from e-a: e
        walked = shared_backbone(pool, ref("e-sib"), asked, QueryOptions())
        assert walked.parent == "e" and walked.chain == ["e"], walked.verdict
        assert "a sibling of e-a via e" in walked.verdict and "from the ranked parent e-a-ft" in walked.verdict


def test_walk_up_stops_at_the_first_model_the_suspect_derives_from():
    verdicts = {"a2": {"relation": SIBLING, "base": "a1"}, "a1": {"relation": UNRESOLVED, "base": "a"},
                "a": {"relation": DERIVED, "base": "p"}}
    assert walk_up(verdicts.get, "a2") == ("a", verdicts["a1"], "a1")
    assert walk_up(verdicts.get, "a") == ("a", verdicts["a"], "a")
    assert walk_up({"x": {"relation": SIBLING, "base": "y"}}.get, "x") == ("y", {"relation": SIBLING, "base": "y"}, "x")
    loop = {"x": {"relation": SIBLING, "base": "y"}, "y": {"relation": SIBLING, "base": "x"}}
    assert walk_up(loop.get, "x")[0] in {"x", "y"}


@pytest.fixture(scope="module")
def calibrated(sibling_pool, tmp_path_factory):
    """A copy of the sibling pool calibrated on weight cosine (the sibling rule included)."""
    pool = tmp_path_factory.mktemp("calibrated") / "pool"
    shutil.copytree(sibling_pool, pool)
    assert main(["calibrate", str(pool), "--methods", "weights", "--no-query"]) == 0
    return pool


def test_calibrate_fits_the_rule_and_score_prints_the_relation(calibrated, tmp_path, capsys):
    pool = calibrated
    with Pool.open(pool) as p:
        rule = Calibration.load(p).siblings
    assert rule is not None and rule["fitted_on"] == 5
    capsys.readouterr()
    out = tmp_path / "out.json"
    assert main(["score", "inheritance", f"{pool}::e-a", f"{pool}::e-sib", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["relation"] == SIBLING and "-> sibling" in capsys.readouterr().out
    assert main(["score", "fused", f"{pool}::e-a", f"{pool}::e-a-pr", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["related"] and result["backbone"]["relation"] == DERIVED
    assert result["verdict"] == "derived from the source"


def test_the_forest_hangs_siblings_from_their_public_backbone_virtual_when_absent(calibrated, tmp_path):
    pool = calibrated
    out = tmp_path / "forest.json"
    assert main(["forest", str(pool), "--models", "e-a,e-sib,e-a-q8,e-a-ft", "--json", str(out)]) == 0
    forest = json.loads(out.read_text())
    parents = {e["child"]: e["parent"] for e in forest["edges"]}
    assert forest["virtual"] == ["e"] and "e" in forest["roots"] and "e-sib" not in forest["roots"]
    assert (parents["e-a"], parents["e-sib"], parents["e-a-q8"]) == ("e", "e", "e-a"), parents
