"""Crash and concurrency guarantees with real processes: kill -9 at random points, resume; queries during a build."""
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mgmp.cli import main
from model_pool.chaos import kill_repeatedly
from model_pool.io import load_model_dir
from model_pool.plan import parse_plan
from model_pool.registry import PoolRegistry
from model_pool.verify import verify_pool
from tests.conftest import TINY_PLAN

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
CLI = [sys.executable, "-m", "mgmp.cli"]
# the killed runs are separate processes (SIGKILL of the whole group); the run that resumes after them, the index
# builds around a concurrent build and that build itself run in this process through the same entry point
# (mgmp.cli.main): a fresh interpreter costs the torch (and, for fit, Lightning) imports each time


def _assert_consistent(pool: Path) -> set[str]:
    """Every registered model loads with its recorded sha256; no row without files, no file without a row."""
    rep = verify_pool(pool)
    assert rep.consistent, rep
    with PoolRegistry(pool) as reg:
        ids = set(reg.ids())
        for mid in ids:
            load_model_dir(reg.root / reg.get(mid).path)
    return ids


@pytest.mark.slow
def test_kill9_at_random_points_of_pool_build_then_resume(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(TINY_PLAN))
    pool = tmp_path / "pool"
    args = ["pool", "build", str(plan), "--out", str(pool), "--resume"]
    cmd = CLI + args
    rng = random.Random(0)
    counts = []
    for kill in kill_repeatedly(cmd, [rng.uniform(2.0, 7.0) for _ in range(2)], ENV):
        if (pool / "pool.sqlite").exists():
            counts.append(len(_assert_consistent(pool)))
    assert counts == sorted(counts)  # every resumed run keeps what the killed ones registered
    assert main(args) == 0
    assert _assert_consistent(pool) == {j.id for j in parse_plan(TINY_PLAN).jobs}


@pytest.mark.slow
def test_kill9_during_fit_then_resume_from_last_checkpoint(mgmp_pool, tmp_path, monkeypatch):
    pool = tmp_path / "pool"
    shutil.copytree(mgmp_pool, pool)
    gen = json.dumps({"in_channels": 1, "image_size": 8, "width": 8})
    args = ["fit", "--config", str(ROOT / "configs/mgmp/digits.yaml"), "--data.pool_dir", str(pool), "--data.plan", "null",
                 "--data.eval_points", "20", "--data.episodes_per_epoch", "30", "--model.generator_kwargs", gen,
                 "--trainer.max_epochs", "8", "--trainer.check_val_every_n_epoch", "4", "--trainer.logger", "false",
                 "--ckpt_path", "last"]
    cmd = CLI + args
    last = tmp_path / "runs" / "mgmp-digits" / "checkpoints" / "last.ckpt"
    rng = random.Random(1)
    for _ in kill_repeatedly(cmd, [rng.uniform(5.0, 11.0) for _ in range(1)], ENV, cwd=str(tmp_path)):
        if last.exists():  # never a torn checkpoint: Lightning writes it through an fsspec transaction
            assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] >= 0
        _assert_consistent(pool)  # the output caches fit writes into the pool stay consistent
    monkeypatch.chdir(tmp_path)  # where the killed runs wrote runs/
    assert main(args) == 0
    # the last epoch was reached (a run resumed after the final epoch saves it once more as epoch max_epochs)
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] in (7, 8)
    assert not list(last.parent.glob("*.tmp*"))


@pytest.mark.slow
def test_queries_while_a_build_adds_models_and_extends_the_index(tiny_pool, tmp_path, capsys):
    pool = tmp_path / "pool"
    shutil.copytree(tiny_pool, pool)
    assert main(["index", "build", str(pool)]) == 0
    bigger = {**TINY_PLAN, "models": TINY_PLAN["models"] + [
        {"id": "ft-{s}", "recipe": "finetune", "parent": "src", "dataset": "digits", "data": {"n_train": 200},
         "grid": {"s": [{"name": "b", "seed": 3}]}}]}
    plan = tmp_path / "bigger.yaml"
    plan.write_text(yaml.safe_dump(bigger))
    stop, ready = tmp_path / "stop", tmp_path / "ready"
    reader = f"""
import sys
import time
from pathlib import Path
from mgmp.index.query import QueryOptions, query
from model_pool.pool import Pool
ok = err = 0
pool = Pool.open({str(pool)!r})
while not Path({str(stop)!r}).exists() or ok < 4:
    try:  # the index alone, then re-ranked (which reads models and scores, and caches each hit's null) in turn;
        # two references per null, the fewest a query takes (the default's four double the reader's training)
        res = query(pool, pool.ref("ft-q8"), QueryOptions(top_k=3, rerank=bool(ok % 2), references=2))
        assert all(pool.registry.get(h.model_id).sha256 for h in res.hits)
        ok += 1
        Path({str(ready)!r}).touch()  # querying: the build may start
        time.sleep(0.2)  # a steady reader, not a busy loop starving the build it runs beside
    except Exception as e:
        err += 1
        print(repr(e)[:300], file=sys.stderr)
print(ok, err)
"""
    reader = subprocess.Popen([sys.executable, "-c", reader], env=ENV, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not ready.exists():  # the build starts once the reader is querying (its interpreter takes seconds to start)
        if reader.poll() is not None or time.monotonic() > deadline:
            stop.touch()
            pytest.fail(f"the reader never answered a query: {reader.communicate(timeout=600)}")
        time.sleep(0.05)
    try:
        build = main(["pool", "build", str(plan), "--out", str(pool), "--resume"])
        index = main(["index", "build", str(pool), "--json", str(tmp_path / "i.json")])
    finally:
        stop.touch()
    out, errs = reader.communicate(timeout=600)
    assert build == 0 and index == 0, capsys.readouterr().err
    ok, err = map(int, out.split())
    assert err == 0 and ok >= 4, errs[-2000:]
    assert [r["ntotal"] for r in json.loads((tmp_path / "i.json").read_text())["indexes"]] == [8, 8]
    assert len(_assert_consistent(pool)) == 8
