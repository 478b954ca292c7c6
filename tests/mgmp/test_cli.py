"""The ``mgmp`` command line: pool commands, --json output, one-line errors with exit code 2."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mgmp.cli import main


def _readable_at_80(printed: str, names) -> None:
    """A table printed 80 wide: no line longer, nothing cut with an ellipsis, every name whole on one line."""
    lines = printed.splitlines()
    assert max(map(len, lines)) <= 80 and "\u2026" not in printed
    assert all(any(n in line.split() for line in lines) for n in names), printed


def test_pool_ls_json_and_tree(tiny_pool, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ls.json"
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["pool", "ls", str(tiny_pool), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data["models"]) == 7 and all("test_acc" in m["metrics"] for m in data["models"])
    assert {m["id"]: m["parents"] for m in data["models"]}["ft-q8"] == ["ft"]
    _readable_at_80(capsys.readouterr().out, [m["id"] for m in data["models"]] + ["digits-tasks/2:5"])
    assert main(["pool", "ls", str(tiny_pool), "--tree"]) == 0
    printed = capsys.readouterr().out
    assert "ft-q8" in printed and "quantize" in printed


def test_pool_add_mgmp_dir_and_pt(tiny_pool, tmp_path):
    import shutil

    pool = tmp_path / "pool"
    shutil.copytree(tiny_pool, pool)
    assert main(["pool", "add", str(pool), str(pool / "models" / "ft"), "--id", "ft-copy", "--parent", "src",
                 "--relation", "finetune", "--json", str(tmp_path / "a.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["parents"] == ["src"]
    assert main(["pool", "add", str(tmp_path / "new"), str(pool / "models" / "ft"), "--id", "first"]) == 0  # starts a pool
    from model_pool.registry import PoolRegistry

    with PoolRegistry(tmp_path / "new") as reg:
        assert reg.ids() == ["first"]
    from model_pool.io import load_model_dir

    model, card = load_model_dir(pool / "models" / "ft")
    torch.save(model.state_dict(), tmp_path / "w.pt")
    assert main(["pool", "add", str(pool), str(tmp_path / "w.pt"), "--id", "from-pt", "--arch", "small_cnn",
                 "--num-classes", "10", "--input", json.dumps(card.input), "--parent", "ft"]) == 2  # width 8 not given
    assert not (pool / "models" / "from-pt").exists()
    assert main(["pool", "add", str(pool), str(tmp_path / "w.pt"), "--id", "from-pt", "--arch", "small_cnn",
                 "--arch-kwargs", json.dumps(card.arch_kwargs), "--num-classes", "10", "--input", json.dumps(card.input),
                 "--parent", "ft", "--relation", "finetune"]) == 0
    loaded, _ = load_model_dir(pool / "models" / "from-pt")
    x = torch.rand(2, 1, 8, 8)
    assert torch.allclose(loaded(x), model(x))


def _run(*args):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-m", "mgmp.cli", *args], capture_output=True, text=True, env=env, timeout=120)


ERROR_CASES = [
    (["pool", "ls", "/nonexistent"], "not a model pool"),
    (["pool", "build", "/nonexistent.yaml", "--out", "/tmp/x"], "no such plan"),
    (["score", "closeness", "a", "b"], "no such model directory"),
    (["index", "build", "/nonexistent"], "not a model pool"),
    (["query", "/nonexistent", "/nonexistent"], "not a model pool"),
    (["calibrate", "/nonexistent"], "not a model pool"),
]


def test_the_real_cli_prints_one_line_and_exits_2():
    """As a user sees it, in a fresh process: no library warning or traceback around the error line."""
    args, msg = ERROR_CASES[0]
    r = _run(*args)
    assert r.returncode == 2 and msg in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize("args, msg", ERROR_CASES)
def test_errors_are_one_line_exit_2(args, msg, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bugs_exit_1_and_show_the_traceback_under_debug(monkeypatch, capsys):
    """An exception that is not an MgmpError is a bug: exit 1 and a pointer to --debug, which re-raises it."""
    from mgmp.commands import pool

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(pool, "ls", broken)
    assert main(["pool", "ls", "/anything"]) == 1
    err = capsys.readouterr().err
    assert "internal error: KeyError" in err and "--debug" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(KeyError, match="a bug"):
        main(["--debug", "pool", "ls", "/anything"])


def test_score_and_score_matrix_accept_every_registered_method(capsys):
    """The CLI's choices come from the score registry (``weights`` was once refused by a hand-kept list)."""
    from mgmp.cli import build_parser
    from mgmp.scores import list_scores

    parser = build_parser()
    for name in list_scores():
        assert parser.parse_args(["score", name, "a", "b"]).method == name
        assert parser.parse_args(["score-matrix", "p", "--method", name]).method == name
    assert parser.parse_args(["score", "fused", "a", "b"]).method == "fused"
    with pytest.raises(SystemExit):
        parser.parse_args(["score-matrix", "p", "--method", "fused"])
    with pytest.raises(SystemExit):
        parser.parse_args(["score", "nope", "a", "b"])
    assert "invalid choice" in capsys.readouterr().err


def test_dry_run_expands_real_data_plans(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    for cfg in ["configs/pool/cifar.yaml", "configs/pool/agnews.yaml"]:
        out = tmp_path / (os.path.basename(cfg) + ".json")
        assert main(["pool", "build", cfg, "--out", str(tmp_path / "unused"), "--dry-run", "--json", str(out)]) == 0
        jobs = json.loads(out.read_text())["jobs"]
        assert len(jobs) >= 20
        _readable_at_80(capsys.readouterr().out, [j["id"] for j in jobs])  # ids up to 30 characters stay whole
    assert not (tmp_path / "unused").exists()


CHEAP_SCORES = {"closeness": {"k": 20, "candidates": 200, "n_lineage": 1, "n_independent": 1},
                "zest": {"n_points": 8, "n_masks": 64}, "basin": {"n_points": 64}}


def test_demo_runs_every_stage_and_writes_its_report(mgmp_pool, tmp_path, monkeypatch, capsys):
    import shutil

    import yaml

    from mgmp.commands import demo

    (tmp_path / "configs" / "pool").mkdir(parents=True)
    from tests.conftest import MGMP_PLAN

    (tmp_path / "configs" / "pool" / "digits.yaml").write_text(yaml.safe_dump(MGMP_PLAN))
    monkeypatch.setattr(demo, "CONFIGS", tmp_path / "configs")
    # its pair scores with small budgets (the test checks the stages and their report, not the papers' defaults)
    monkeypatch.setattr(demo, "SCORE_PARAMS", CHEAP_SCORES)
    out = tmp_path / "run"
    shutil.copytree(mgmp_pool, out / "pools" / "digits")  # the demo resumes a finished pool: nothing to train
    monkeypatch.setenv("COLUMNS", "80")
    args = ["demo", "--out", str(out), "--workers", "1", "--epochs", "1", "--logger", "csv", "--seed", "0"]
    assert main(args + ["--json", str(tmp_path / "d.json")]) == 0
    run = json.loads((tmp_path / "d.json").read_text())
    stages = run["stages"]
    assert run["seed"] == 0 and run["command"].endswith("--seed 0")
    printed = capsys.readouterr().out  # its tables, 80 wide: the held-out models' ids whole, nothing cut
    assert "\u2026" not in printed and all(f"{m} " in printed for m in ("hom-2-a", "non-2-b", "non-homologous"))
    assert stages[0]["models"] == 13 and [s["stage"] for s in stages] == ["pool", "mgmp", "scores", "query", "report"]
    assert all(s["status"] == "done" and s["seconds"] >= 0 for s in stages)
    mg, sc, q = stages[1], stages[2], stages[3]
    assert 0 <= mg["metrics"]["frag_acc"] <= 1 and len(mg["model_scores"]) == 4 and len(mg["pair_acc"]) == len(mg["eval_pairs"])
    assert [r["model"] for r in sc["rows"]] == ["hom-2-a", "hom-2-b", "non-2-a", "non-2-b"]
    assert all(0 <= r["closeness"] <= 1 and r["relation"] in ("transfer", "scratch") for r in sc["rows"])
    # the shipped test, not a bare number: the held-out models answer other tasks than the source's, so the weights decide
    assert all(r["verdict"].startswith(("derived", "not derived", "sibling")) and r["verdict_p"] is None for r in sc["rows"])
    assert sc["closeness_matrix"]["rows"] == ["source"]  # no model tagged unrelated-source in this pool
    assert set(q["queries"]) == {"hom-2-b", "non-2-b"} and q["truth"] == {"hom-2-b": "source", "non-2-b": None}
    assert q["index"]["ntotal"] == 11 and q["queries"]["hom-2-b"]["support"].startswith("the fused verdict at alpha")
    assert q["queries"]["hom-2-b"]["parent"] == "source" and q["queries"]["non-2-b"]["parent"] is None
    assert json.loads((out / "demo.json").read_text())["stages"][1]["metrics"] == mg["metrics"]
    html = (out / "report.html").read_text()
    # the report holds this run's numbers and its three figures, inlined (one self-contained file)
    assert f'{mg["metrics"]["frag_acc"]:.3f} ± {mg["metrics"]["frag_acc_std"]:.3f}' in html
    assert all(f'{r["closeness"]:.3f}' in html for r in sc["rows"])
    assert q["queries"]["non-2-b"]["verdict"] in html and sc["rows"][-1]["verdict"].startswith("not derived") and sc["rows"][-1]["verdict"] in html
    assert html.count('src="data:image/png;base64,') == 3 and "{{" not in html
    assert (out / "demo").is_dir()  # the CSV logger's run


@pytest.mark.parametrize("argv", [
    ["index", "build", "{p}"],
    ["query", "{p}", "{p}::x"],
    ["bench", "lineage", "--pool", "{p}", "--no-mgmp"],
    ["score", "closeness", "{p}::a", "{p}::b"],
    ["fit", "--config", "configs/mgmp/digits.yaml", "--data.pool_dir", "{p}", "--data.plan", "null", "--trainer.logger", "false"],
])
def test_empty_pool_gets_one_line_and_exit_2(argv, tmp_path, capsys, monkeypatch):
    from model_pool.registry import PoolRegistry

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    PoolRegistry(tmp_path / "empty", create=True).close()
    capsys.readouterr()
    assert main([a.replace("{p}", str(tmp_path / "empty")) for a in argv]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mgmp: error:")]
    assert len(err) == 1 and str(tmp_path / "empty") in err[0]
