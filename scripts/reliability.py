"""The reliability figures of docs/results.md: hostile files tried, crashes injected, concurrent operations run.

    python scripts/reliability.py --out runs/reliability [--kills 8] [--readers 3] [--parts crashes,hostile,concurrency]
                                  [--json runs/reliability.json]

Every check runs real ``mgmp`` processes on the tiny plans of configs/pool/ and counts losses: a hostile file
accepted or with a side effect, a registry inconsistent after a kill, a torn checkpoint or index, a failed resume,
a query that errors while a build extends the pool and its index.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from mgmp.index.store import load_index
from model_pool.chaos import STATE_DICT_ARGS, hostile_corpus, kill_at, run_to_end, snapshot
from model_pool.pool import Pool
from model_pool.verify import verify_pool

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "mgmp.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}


def _mgmp(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), env=ENV, cwd=cwd, capture_output=True, text=True)


def hostile(out: Path, pool: Path) -> dict:
    marker = out / "pwned"
    files = hostile_corpus(out / "hostile", marker)
    before, losses = snapshot(pool), []
    for name, path in files.items():
        r = _mgmp("pool", "add", str(pool), str(path), "--id", "suspect", *(STATE_DICT_ARGS if path.suffix == ".pt" else []))
        if r.returncode != 2 or len(r.stderr.strip().splitlines()) != 1 or marker.exists() or snapshot(pool) != before:
            losses.append(name)
    return {"files": len(files), "refused_cleanly": len(files) - len(losses), "losses": losses}


def crashes(name: str, cmd: list[str], kills: int, span: tuple[float, float], check, cwd: str | None = None) -> dict:
    """Kill ``cmd`` at ``kills`` random points (each run resuming the last), checking state after each; then finish."""
    rng, hit, losses = random.Random(0), 0, []
    for i in range(kills):
        k = kill_at(cmd, rng.uniform(*span), ENV, cwd)
        hit += not k.finished_first
        problem = check()
        if problem:
            losses.append(f"kill {i}: {problem}")
    done = run_to_end(cmd, ENV, cwd)
    if done.returncode != 0:
        losses.append(f"resume failed: {done.stderr.strip().splitlines()[-1:]}")
    elif check():
        losses.append(f"after resume: {check()}")
    return {"operation": name, "kills": kills, "killed_mid_run": hit, "resume_seconds": round(done.seconds, 1), "losses": losses}


def _pool_problem(pool: Path) -> str | None:
    if not (pool / "pool.sqlite").exists():
        return None
    rep = verify_pool(pool)
    return None if rep.consistent else json.dumps(rep.to_dict())[:300]


def concurrency(out: Path, pool: Path, readers: int) -> dict:
    with open(ROOT / "configs" / "pool" / "tiny.yaml") as f:
        plan = yaml.safe_load(f)
    plan["models"].append({"id": "ft-{s}", "recipe": "finetune", "parent": "src", "dataset": "digits", "data": {"n_train": 200},
                           "grid": {"s": [{"name": str(i), "seed": 10 + i} for i in range(6)]}})
    (out / "bigger.yaml").write_text(yaml.safe_dump(plan))
    stop = out / "stop"
    stop.unlink(missing_ok=True)
    reader = (f"from pathlib import Path\nfrom mgmp.index.query import QueryOptions, query\n"
              f"from model_pool.pool import Pool\nok = err = 0\npool = Pool.open({str(pool)!r})\n"
              f"while not Path({str(stop)!r}).exists():\n    try:\n"
              f"        query(pool, pool.ref('ft-q8'), QueryOptions(top_k=3, rerank=RERANK))\n        ok += 1\n"
              f"    except Exception:\n        err += 1\nprint(ok, err)")
    procs = [subprocess.Popen([sys.executable, "-c", reader.replace("RERANK", str(i % 2 == 1))], env=ENV, stdout=subprocess.PIPE,
                              text=True) for i in range(readers)]
    t0 = time.perf_counter()
    build = _mgmp("pool", "build", str(out / "bigger.yaml"), "--out", str(pool), "--resume")
    index = _mgmp("index", "build", str(pool))
    stop.touch()
    counts = [tuple(map(int, p.communicate()[0].split())) for p in procs]
    return {"readers": readers, "queries": sum(c[0] for c in counts), "query_errors": sum(c[1] for c in counts),
            "build_rc": build.returncode, "index_rc": index.returncode, "seconds": round(time.perf_counter() - t0, 1),
            "consistent_after": _pool_problem(pool) is None}


def crash_other(a, tiny: Path, plans: Path, result: dict) -> None:
    """kill -9 during index rebuilds and during MGMP training."""
    mgmp_pool = a.out / "mgmp"
    index = [sys.executable, "-c", f"from mgmp.index.store import build_index\nfrom model_pool.pool import Pool\n"
             f"pool = Pool.open({str(tiny)!r})\nfor _ in range(50):\n    build_index(pool, 'flat', rebuild=True)"]

    def index_problem():
        try:
            with Pool.open(tiny) as pool:
                return None if load_index(pool, "flat").ntotal == 7 else "wrong size"
        except Exception as e:  # noqa: BLE001 - a torn index is what this counts
            return f"unreadable index: {e}"
    _mgmp("index", "build", str(tiny))
    result["index build"] = crashes("index build", index, a.kills, (2.5, 6.0), lambda: index_problem() or _pool_problem(tiny))
    print(result["index build"], flush=True)
    assert _mgmp("pool", "build", str(plans / "tiny_mgmp.yaml"), "--out", str(mgmp_pool)).returncode == 0
    last = a.out / "runs" / "mgmp-digits" / "checkpoints" / "last.ckpt"
    fit = CLI + ["fit", "--config", str(ROOT / "configs/mgmp/digits.yaml"), "--data.pool_dir", str(mgmp_pool), "--data.plan", "null",
                 "--data.eval_points", "20", "--data.episodes_per_epoch", "30", "--trainer.max_epochs", "10",
                 "--trainer.check_val_every_n_epoch", "5", "--trainer.logger", "false", "--ckpt_path", "last",
                 "--model.generator_kwargs", json.dumps({"in_channels": 1, "image_size": 8, "width": 8})]

    def fit_problem():
        try:
            if last.exists():
                torch.load(last, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a torn checkpoint is what this counts
            return f"torn checkpoint: {e}"
        return _pool_problem(mgmp_pool)
    result["fit"] = crashes("fit", fit, a.kills, (5.0, 14.0), fit_problem, cwd=str(a.out))
    print(result["fit"], flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/reliability"))
    ap.add_argument("--kills", type=int, default=8)
    ap.add_argument("--readers", type=int, default=3)
    ap.add_argument("--parts", default="crashes,hostile,concurrency")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    shutil.rmtree(a.out, ignore_errors=True)
    a.out.mkdir(parents=True)
    tiny = a.out / "tiny"
    plans = ROOT / "configs" / "pool"
    result = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}
    build = CLI + ["pool", "build", str(plans / "tiny.yaml"), "--out", str(tiny), "--resume"]
    if "crashes" in parts:
        result["pool build"] = crashes("pool build", build, a.kills, (2.0, 8.0), lambda: _pool_problem(tiny))
        print(result["pool build"], flush=True)
    else:
        assert run_to_end(build, ENV).returncode == 0
    if "hostile" in parts:
        result["hostile"] = hostile(a.out, tiny)
        print(result["hostile"], flush=True)
    if "crashes" in parts:
        crash_other(a, tiny, plans, result)
    if "concurrency" in parts:
        result["concurrency"] = concurrency(a.out, tiny, a.readers)
        print(result["concurrency"], flush=True)
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))
    losses = sum(len(result[k]["losses"]) for k in ("pool build", "index build", "fit", "hostile") if k in result)
    if "concurrency" in result:
        losses += result["concurrency"]["query_errors"] + (not result["concurrency"]["consistent_after"])
    print(f"losses: {losses}")
    return 1 if losses else 0


if __name__ == "__main__":
    sys.exit(main())
