"""``mgmp bench mgmp`` on the tiny pool: every row, the controls and the training-free baselines."""

from mgmp.bench import mgmp_table
from mgmp.cli import main


def test_bench_rows_controls_and_baselines(mgmp_pool, monkeypatch):
    monkeypatch.setitem(mgmp_table.DOMAINS, "image", ("digits.yaml", "small_cnn", {"in_channels": 1, "image_size": 8, "width": 8}))
    names = ["mgmp logits (paper)", "target-only control (logits)", "mgmp features no-generator"]
    res = mgmp_table.run(str(mgmp_pool), seeds=2, epochs=1, episodes=2, eval_points=20, variants=names)
    assert list(res["rows"]) == names and all(r["seeds"] == 2 for r in res["rows"].values())
    for row in res["rows"].values():
        assert 0 <= row["frag_acc"] <= 1 and 0 <= row["model_auroc"] <= 1
    assert set(res["baselines"]) == {"baseline: top-1 agreement", "baseline: linear CKA of outputs"}
    assert res["groups"]["homologous"]["n"] == 2 and res["groups"]["non-homologous"]["n"] == 2
    table = mgmp_table.markdown(res)
    assert all(n in table for n in names) and "linear CKA" in table


def test_bench_cli_rejects_unknown_variant(mgmp_pool, tmp_path):
    assert main(["bench", "mgmp", "--pool", str(mgmp_pool), "--variants", "nope", "--seeds", "1"]) == 2


def test_bench_cli_takes_the_generator_and_its_arguments(mgmp_pool, tmp_path):
    import json

    out = tmp_path / "r.json"
    kwargs = ["--generator-kwarg", "in_channels=1", "--generator-kwarg", "image_size=8", "--generator-kwarg", "width=4"]
    assert main(["bench", "mgmp", "--pool", str(mgmp_pool), "--variants", "mgmp logits (paper)", "--seeds", "1",
                 "--epochs", "1", "--episodes", "2", "--eval-points", "20", "--generator", "small_cnn", *kwargs,
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["generator"] == "small_cnn" and res["generator_kwargs"] == {"in_channels": 1, "image_size": 8, "width": 4}
    assert main(["bench", "mgmp", "--pool", str(mgmp_pool), "--generator-kwarg", "width", "--seeds", "1"]) == 2


def test_students_are_reported_by_their_query_data_budget_and_outputs():
    from types import SimpleNamespace

    from mgmp.calibration.fit import relation_row

    def row(relation, tags=None, **params):
        return SimpleNamespace(relation=relation, recipe={"params": params}, tags=tags or {})

    assert relation_row(row("finetune", epochs=2)) == "finetune"
    assert relation_row(row("extract")) == "extract"  # plans without query data keep their rows
    assert relation_row(row("extract", query_data="surrogate", surrogate="shapes-textures", queries=1000,
                            outputs="labels")) == "extract (shapes-textures, 1000 queries, labels)"
    assert relation_row(row("distill", query_data="jbda", queries=4000)) == "distill (jbda, 4000 queries)"
    assert relation_row(row("extract", {"control": True}, query_data="task")) == "extract (task, probabilities, control)"


def test_the_budget_curve_groups_students_by_attack_and_budget(tmp_path):
    from mgmp.bench.lineage import budget_curve
    from mgmp.plots import budget_curves

    table = {"extract (shapes-textures, 1000 queries, labels)": {"n": 2, "fused": 0.5, "zest": 0.0},
             "extract (shapes-textures, 4000 queries, labels)": {"n": 2, "fused": 1.0, "zest": 0.5},
             "distill (jbda, 4000 queries)": {"n": 2, "fused": 1.0, "zest": 1.0},
             "extract (task, probabilities, control)": {"n": 2, "fused": 0.0, "zest": 0.0}, "finetune": {"n": 2}}
    curve = budget_curve(table)
    assert curve == {"extract (shapes-textures, labels)": {1000: {"fused": 0.5, "zest": 0.0},
                                                           4000: {"fused": 1.0, "zest": 0.5}},
                     "distill (jbda)": {4000: {"fused": 1.0, "zest": 1.0}}}
    assert budget_curves(curve, ["fused", "zest"], tmp_path / "b.png").stat().st_size > 1000
