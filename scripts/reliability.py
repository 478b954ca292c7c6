"""The reliability figures of docs/results.md: hostile files tried, crashes injected, concurrent operations run,
registries damaged, write faults injected.

    python scripts/reliability.py --out runs/reliability [--kills 8] [--readers 3]
        [--parts crashes,hostile,concurrency,corruption,faults] [--json runs/reliability.json]

Every check runs real ``mgmp`` processes on the tiny plans of configs/pool/ and counts losses: a hostile file
accepted or with a side effect, a registry inconsistent after a kill, a torn checkpoint or index, a failed resume,
a query that errors while a build extends the pool and its index, a damaged registry not reported or not restored
to the same models, edges and sha256, a write fault that gives more than one line, a traceback, a half-written
file or a rerun that fails.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from mgmp.index.store import load_index
from model_pool.chaos import (
    STATE_DICT_ARGS,
    flip_pages,
    hostile_corpus,
    kill_at,
    registry_state,
    run_to_end,
    snapshot,
    truncation_offsets,
)
from model_pool.pool import Pool
from model_pool.verify import verify_pool

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "mgmp.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}


def _mgmp(*args: str, cwd: str | None = None, fsize: int | None = None) -> subprocess.CompletedProcess:
    """A real ``mgmp`` process (``fsize``: its RLIMIT_FSIZE, bytes per file)."""
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))) if fsize else None
    return subprocess.run(CLI + list(args), env=ENV, cwd=cwd, capture_output=True, text=True, preexec_fn=limit)


def _one_line(r: subprocess.CompletedProcess, code: int = 2) -> bool:
    """Exit ``code`` with exactly one ``mgmp:`` line and no traceback on stderr."""
    return r.returncode == code and "Traceback" not in r.stderr and sum(
        ln.startswith("mgmp:") for ln in r.stderr.splitlines()) == 1


def _leftovers(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]


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


def corruption(out: Path, tiny: Path) -> dict:
    """Damage ``pool.sqlite`` (10 truncation offsets, 5 pairs of flipped pages); each time ``pool ls`` answers or
    gives one line, ``pool verify`` exits 1, ``pool repair`` restores the same rows, and ``verify`` then passes."""
    pool = out / "corrupt"
    shutil.copytree(tiny, pool)
    db = pool / "pool.sqlite"
    before, intact = registry_state(pool), db.read_bytes()
    cases = [(f"truncated at {o}", lambda o=o: db.write_bytes(intact[:o])) for o in truncation_offsets(len(intact))]
    pages = len(intact) // 4096
    cases += [(f"pages {p} and {p + 2} flipped", lambda p=p: flip_pages(db, [p, p + 2], seed=p))
              for p in range(1, min(6, pages - 2))]
    losses = []
    for name, damage in cases:
        db.write_bytes(intact)
        damage()
        ls, verify, repair = _mgmp("pool", "ls", str(pool)), _mgmp("pool", "verify", str(pool)), _mgmp("pool", "repair", str(pool))
        after = _mgmp("pool", "verify", str(pool))
        if not (ls.returncode == 0 or _one_line(ls)) or verify.returncode != 1 or "Traceback" in verify.stderr:
            losses.append(f"{name}: not reported cleanly (ls {ls.returncode}, verify {verify.returncode})")
        elif repair.returncode != 0 or registry_state(pool) != before or after.returncode != 0:
            losses.append(f"{name}: not restored (repair {repair.returncode}: {repair.stderr.strip()[-200:]})")
        for f in pool.glob("pool.sqlite.corrupt-*"):
            f.unlink()
    return {"damaged": len(cases), "restored": len(cases) - len(losses), "losses": losses}


FAULT_PLAN = {"name": "faults", "defaults": {"epochs": 1, "batch_size": 64},
              "models": [{"id": f"m{w}", "recipe": "scratch", "arch": "small_cnn", "dataset": "digits", "seed": w,
                          "arch_kwargs": {"in_channels": 1, "image_size": 8, "width": w}, "data": {"n_train": 100}}
                         for w in (8, 16, 32, 64)]}


def _immutable(path: Path, on: bool) -> bool:
    """``chattr +i``/``-i``: read-only even for root."""
    return subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True).returncode == 0


def faults(out: Path, tiny: Path) -> dict:
    """Write faults: RLIMIT_FSIZE at several sizes on pool build, index build, a cached score and pool repair, and a
    read-only (immutable) directory on pool build and pool add. Each faulted run must give one line and exit 2,
    leave the pool consistent with no temp file, and the same command must complete once the fault is gone."""
    plan = out / "faults.yaml"
    plan.write_text(yaml.safe_dump(FAULT_PLAN))
    runs, losses = [], []

    def check(name: str, faulted: subprocess.CompletedProcess, pool: Path, rerun: list[str], unchanged: bytes = b"") -> None:
        """``unchanged``: the damaged registry a faulted repair must leave as it was (else: the pool must verify)."""
        runs.append(name)
        problem = None if _one_line(faulted) else f"exit {faulted.returncode}: {faulted.stderr.strip()[-300:]}"
        if problem is None and unchanged and (pool / "pool.sqlite").read_bytes() != unchanged:
            problem = "the damaged registry was changed"
        elif problem is None and not unchanged and (pool / "pool.sqlite").exists() and not verify_pool(pool).consistent:
            problem = "pool inconsistent after the fault"
        if problem is None and _leftovers(pool):
            problem = f"left {_leftovers(pool)}"
        if problem is None and (done := _mgmp(*rerun)).returncode != 0:
            problem = f"rerun failed: {done.stderr.strip()[-200:]}"
        if problem:
            losses.append(f"{name}: {problem}")

    for limit in (4 << 10, 8 << 10, 64 << 10, 256 << 10):  # the widest model's weights take 450 kB
        pool = out / f"faults-{limit}"
        build = ["pool", "build", str(plan), "--out", str(pool)]
        check(f"pool build, {limit} B/file", _mgmp(*build, fsize=limit), pool, build + ["--resume"])
    pool = out / "faults-tiny"
    shutil.copytree(tiny, pool)
    for argv in (["index", "build", str(pool)], ["score", "sac", f"{pool}::src", f"{pool}::ft"],
                 ["score", "ipguard", f"{pool}::src", f"{pool}::ind"]):
        check(f"{' '.join(argv[:2])}, 4096 B/file", _mgmp(*argv, fsize=4096), pool, argv)
    damaged = (pool / "pool.sqlite").read_bytes()[:5000]
    (pool / "pool.sqlite").write_bytes(damaged)
    check("pool repair, 4096 B/file", _mgmp("pool", "repair", str(pool), fsize=4096), pool, ["pool", "repair", str(pool)],
          unchanged=damaged)
    frozen = out / "frozen"
    frozen.mkdir()
    if _immutable(frozen, True):
        faulted = _mgmp("pool", "build", str(plan), "--out", str(frozen / "pool"))
        _immutable(frozen, False)
        check("pool build into a read-only directory", faulted, frozen, ["pool", "build", str(plan), "--out", str(frozen / "pool")])
        _immutable(pool / "models", True)
        faulted = _mgmp("pool", "add", str(pool), str(pool / "models" / "src"), "--id", "copy")
        _immutable(pool / "models", False)
        check("pool add into a read-only models/", faulted, pool, ["pool", "add", str(pool), str(pool / "models" / "src"), "--id", "copy"])
    return {"faults": len(runs), "clean": len(runs) - len(losses), "runs": runs, "losses": losses}


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
    ap.add_argument("--parts", default="crashes,hostile,concurrency,corruption,faults")
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
    for part, run in (("corruption", corruption), ("faults", faults)):
        if part in parts:
            result[part] = run(a.out, tiny)
            print(result[part], flush=True)
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))
    losses = sum(len(result[k]["losses"]) for k in ("pool build", "index build", "fit", "hostile", "corruption", "faults")
                 if k in result)
    if "concurrency" in result:
        losses += result["concurrency"]["query_errors"] + (not result["concurrency"]["consistent_after"])
    print(f"losses: {losses}")
    return 1 if losses else 0


if __name__ == "__main__":
    sys.exit(main())
