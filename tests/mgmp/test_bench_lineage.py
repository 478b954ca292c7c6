"""``mgmp calibrate`` / ``bench lineage`` / ``bench speed`` / ``score fused`` end to end on tiny pools."""
import json
import math
import shutil

import pytest

from mgmp.bench import lineage, speed
from mgmp.calibration.fit import pair_specs
from mgmp.calibration.store import Calibration
from mgmp.cli import main
from mgmp.commands.calibrate import query_protocol
from mgmp.scores import create_score
from model_pool.errors import BadInput
from model_pool.pool import Pool

# small budgets: one lineage and one independent reference for closeness's test set, basin's barrier at 5 points
# of the path (its default 11 costs twice as much: one BatchNorm refresh and probe fit per point)
CLOSENESS = {"k": 20, "candidates": 200, "n_lineage": 1, "n_independent": 1}
FAST = {"closeness": ("closeness", CLOSENESS),
        "closeness (no test-set gen.)": ("closeness", {"k": 20, "generate": False}),
        "basin": ("basin", {"alphas": 5}),
        "zest": ("zest", {"n_points": 8, "n_masks": 64}),
        "modeldiff": ("modeldiff", {"n_points": 40}),
        "ipguard": ("ipguard", {"n_points": 20, "steps": 20}),
        "sac": ("sac", {"n_points": 20}),
        "dna": ("dna", {"n_points": 32}),
        "weights": ("weights", {})}


def test_pair_specs_label_lineage_and_splits(lineage_pool):
    with Pool.open(lineage_pool) as pool:
        specs = pair_specs(pool.registry)
    by = {(p.source, p.suspect): p for p in specs}
    assert by[("sa", "sa-ft")].related and by[("sa", "sa-ft")].row == "finetune"
    assert not by[("sa", "ind-e1")].related and by[("sa", "ind-e1")].split == "eval"
    assert ("sa", "ind-c1") not in by  # other split's models are never paired
    assert {p.split for p in specs} == {"eval", "calibration"}


def test_bench_lineage_on_a_subset_of_sources(lineage_copy):
    weights = {"weights": ("weights", {})}
    with Pool.open(lineage_copy) as pool:
        sources = sorted({p.source for p in pair_specs(pool.registry) if p.split == "calibration"})[:1] + ["sa"]
        result = lineage.run(pool, methods=weights, with_mgmp=False, sources=sources)
        assert {p["source"] for p in result["pairs"]} == set(sources)
        assert result["n_pairs"]["evaluation"] == sum(p["split"] == "eval" for p in result["pairs"]) > 0
        with pytest.raises(BadInput, match="source of no pair"):
            lineage.run(pool, methods=weights, with_mgmp=False, sources=["sa-ft"])


def test_calibrate_an_untagged_user_pool_from_the_cli(tiny_pool, tmp_path):
    """A pool without role tags (a user's own) is calibrated on its roots' families; the thresholds it stores
    are the ones ``mgmp score`` then decides with."""
    pool = tmp_path / "pool"
    shutil.copytree(tiny_pool, pool)
    out = tmp_path / "cal.json"
    assert main(["calibrate", str(pool), "--methods", "weights,sac", "--json", str(out)]) == 0
    cal = json.loads(out.read_text())
    assert set(cal["thresholds"]) == {"weights", "sac"} and cal["query"] is None
    assert cal["fused"]["columns"] == ["weights", "sac"] and set(cal["fused_fast"]["columns"]) == {"weights", "sac"}
    with Pool.open(pool) as opened:
        assert Calibration.load(opened).thresholds == cal["thresholds"]
    assert main(["score", "weights", f"{pool}::src", f"{pool}::ft", "--json", str(out)]) == 0
    scored = json.loads(out.read_text())
    assert scored["threshold"] == cal["thresholds"]["weights"]["threshold"] and scored["related"]
    assert main(["calibrate", str(pool), "--methods", "nope"]) == 2
    assert main(["calibrate", str(tmp_path)]) == 2  # not a pool
    # reduced settings: the stored threshold is keyed to them (what a transferred calibration must match)
    assert main(["calibrate", str(pool), "--methods", "weights,sac", "--no-query", "--param", "sac.n_points=20"]) == 0
    with Pool.open(pool) as opened:
        stored = Calibration.load(opened).thresholds["sac"]["params_hash"]
    assert stored == create_score("sac", n_points=20).params_hash() != create_score("sac").params_hash()
    assert main(["calibrate", str(pool), "--methods", "sac", "--param", "zest.n_points=8"]) == 2
    # a new score calibration replaces the old one whole: no student model or query calibration fitted on other scores
    with Pool.open(pool) as opened:
        Calibration(fused_students={"columns": ["generated", "cae"]}, query={"support_threshold": 0.9},
                    siblings={"rho": 0.5}).save(opened)
    assert main(["calibrate", str(pool), "--methods", "weights", "--no-query"]) == 0
    with Pool.open(pool) as opened:
        cal = Calibration.load(opened)
    assert cal.fused_students is None and cal.query is None and set(cal.thresholds) == {"weights"}
    assert cal.siblings == {"rho": 0.5}  # the backbone rule is fitted on inheritance, not on these scores


def test_calibrate_finds_thequery_protocol_of_a_tagged_pool(lineage_pool, tiny_pool):
    """Query calibration runs on any pool whose plan tags its calibration sources, not only on digits_lineage."""
    with Pool.open(lineage_pool) as tagged, Pool.open(tiny_pool) as untagged:
        protocol = query_protocol(tagged)
        assert protocol is not None and query_protocol(untagged) is None
        assert set(protocol.held_out(tagged.registry)) == {"sc-ft", "sc-q8", "sc-tr"}  # sd is the unrelated family


@pytest.mark.slow
def test_bench_lineage_table_fusion_and_cli(lineage_pool, tmp_path):
    with Pool.open(lineage_pool) as pool:
        result = lineage.run(pool, mgmp_epochs=1, methods=FAST, mgmp_episodes=20)
    table = result["table"]
    assert table["overall"]["n"] == result["n_pairs"]["evaluation"] == 5
    for col in ["mgmp", "mgmp + scores", "fused", "fused (scores only)", *FAST]:
        assert 0 <= table["overall"][col] <= 1
    assert math.isnan(result["values"]["ipguard"][[p["suspect"] for p in result["pairs"]].index("sa-tr")])
    md = lineage.markdown(result)
    assert "| **overall** | 5 |" in md and "handles transfer" in md
    assert lineage.heatmap(result, tmp_path / "h.png").stat().st_size > 1000
    with Pool.open(lineage_pool) as pool:  # the pool's own stored calibration, applied as another pool's would be
        again = lineage.transferred(result, Calibration.load(pool), FAST)
    stored = [c for c, (name, _) in FAST.items() if c == name]  # calibration keeps default-named columns
    assert set(again["overall"]) == {"n", *stored, "fused (scores only)", "fused (fast scores)"}
    for col in [*stored, "fused (scores only)"]:
        assert again["overall"][col] == table["overall"][col], col
    out = tmp_path / "f.json"
    assert main(["score", "fused", f"{lineage_pool}::sa", f"{lineage_pool}::sa-ft", "--json", str(out)]) == 0
    fused = json.loads(out.read_text())
    assert 0 <= fused["value"] <= 1 and set(fused["scores"]) == set(FAST)
    assert main(["score", "modeldiff", f"{lineage_pool}::sa", f"{lineage_pool}::sa-ft", "--param", "n_points=40",
                 "--json", str(out)]) == 0
    assert "threshold" in json.loads(out.read_text())  # calibrated by the bench


@pytest.mark.slow
def test_bench_speed_and_lime_route(lineage_pool, monkeypatch):
    pytest.importorskip("lime")
    monkeypatch.setattr(speed, "SPEED_METHODS", {"closeness": CLOSENESS, "sac": {"n_points": 20},
                                                 "zest": {"n_points": 4, "n_masks": 50}})
    with Pool.open(lineage_pool) as pool:
        result = speed.run(pool, "sa", ("sa-ft",), repeat=1, lime_points=3, lime_masks=60)
    for name in ("closeness", "sac", "zest"):
        row = result["rows"][name]
        assert row["seconds_per_pair"] > 0 and row["same_result"], (name, row)
    assert result["zest_vs_lime"]["relative_difference"] < 0.01
    assert "Zest vs the `lime` route" in speed.markdown(result)


def test_bench_siblings_pairs_and_table(sibling_pool, tmp_path):
    """A = each source's fine-tune with 3 children: its children are 'derived', the source's other children its
    siblings; inheritance ranks every child of A above every sibling on both splits."""
    pool = sibling_pool
    out = tmp_path / "siblings.json"
    assert main(["bench", "siblings", "--pool", str(pool), "--methods", "weights,inheritance", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n_pairs"] == {"calibration": 5, "evaluation": 5}
    rows = {(p["source"], p["suspect"]): p["related"] for p in result["pairs"]}
    assert rows[("e-a", "e-a-q8")] and not rows[("e-a", "e-sib")] and not rows[("e-a", "e-q8")]
    values = dict(zip(rows, result["values"]["inheritance"]))
    for s in ("e", "c"):
        children = [values[(f"{s}-a", f"{s}-a-{v}")] for v in ("q8", "ft", "pr")]
        siblings = [values[(f"{s}-a", f"{s}-{v}")] for v in ("sib", "q8")]
        assert min(children) > max(siblings), (children, siblings)
    assert result["table"]["all lineage pairs"]["inheritance"] == 1.0
    verdicts = dict(zip(rows, result["verdict"]["verdicts"]))
    assert verdicts[("e-a", "e-sib")] != "derived" and verdicts[("e-a", "e-a-ft")] == "derived"
    assert "Verdict (fused, then the backbone rule" in result["markdown"]


def test_bench_param_flags_reach_their_column_even_when_its_name_has_dots():
    from mgmp.commands._common import with_params
    from model_pool.errors import BadInput

    methods = {"zest": {}, "closeness (no test-set gen.)": {"generate": False}}
    tuned = with_params(methods, ["zest.n_points=32", "closeness (no test-set gen.).k=5"])
    assert tuned == {"zest": {"n_points": 32}, "closeness (no test-set gen.)": {"generate": False, "k": 5}}
    with pytest.raises(BadInput, match="METHOD.KEY=VALUE"):
        with_params({"zest": {}}, ["basin.steps=3"])
