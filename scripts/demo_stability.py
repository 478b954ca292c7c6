"""Is the demo's ancestor answer stable? Runs `mgmp demo` from empty directories with different seeds and
logger/worker settings and reports, per run, the parent named for each queried suspect against its truth.

    python scripts/demo_stability.py --out runs/stability [--runs 5] [--skip 0] [--json results.json]
    python scripts/demo_stability.py --out runs/stability --requery     (the query stage again on each run's pool)

Each run builds its own pool (nothing is shared between runs), so this takes about as long as `runs` demos.
``--requery`` re-runs only the demo's query stage, with the code as it is now, on the pools earlier runs built.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = [  # (seed, logger, workers): the flags a user may vary
    (0, "csv", 2), (1, "none", 2), (2, "csv", 1), (3, "none", 1), (4, "csv", 2), (5, "none", 2), (6, "csv", 1),
]


def run_once(out: Path, seed: int, logger: str, workers: int) -> dict:
    report = out.with_suffix(".json")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mgmp.cli", "demo", "--out", str(out), "--seed", str(seed),
                           "--logger", logger, "--workers", str(workers), "--json", str(report)],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        return {"seed": seed, "logger": logger, "workers": workers, "seconds": seconds, "error": done.stderr[-2000:]}
    answers = _answers(next(s for s in json.loads(report.read_text())["stages"] if s["stage"] == "query"))
    return {"seed": seed, "logger": logger, "workers": workers, "seconds": seconds, "answers": answers,
            "correct": all(a["parent"] == a["truth"] for a in answers.values())}


def _answers(query: dict) -> dict:
    """Per queried suspect: the parent named, the truth (its registered parent, or None), the runner-up, the verdict."""
    return {m: {"parent": a["parent"], "truth": (query["truth"][m] or "").split(" -> ")[0] or None,
                "runner_up": a.get("runner_up"), "verdict": a["verdict"]} for m, a in query["queries"].items()}


def requery(out: Path) -> dict:
    """The demo's query stage on ``out``'s pool (the references the run trained are cached there)."""
    from mgmp.commands.demo import CONFIGS, _ancestor_query
    from model_pool.plan import load_plan
    from model_pool.pool import Pool

    order = [j.id for j in load_plan(CONFIGS / "pool" / "digits.yaml").jobs]
    t0 = time.perf_counter()
    with Pool.open(out / "pools" / "digits") as pool:
        answers = _answers(_ancestor_query(pool, order))
    return {"run": out.name, "seconds": time.perf_counter() - t0, "answers": answers,
            "correct": all(a["parent"] == a["truth"] for a in answers.values())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip", type=int, default=0, help="start at this row of SETTINGS (to resume a series)")
    ap.add_argument("--json")
    ap.add_argument("--requery", action="store_true", help="re-run only the query stage on each run's pool")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.requery:
        runs = [requery(d) for d in sorted(out.glob("run*")) if (d / "pools" / "digits").is_dir()]
        for r in runs:
            print(f"{r['run']}: " + "; ".join(f"{m}: {a['parent']} (truth {a['truth']})" for m, a in r["answers"].items()))
        print(f"correct in {sum(r['correct'] for r in runs)} of {len(runs)} pools")
        if args.json:
            Path(args.json).write_text(json.dumps({"requery": runs}, indent=1))
        return 0 if all(r["correct"] for r in runs) else 1
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for i, (seed, logger, workers) in enumerate(SETTINGS[args.skip: args.skip + args.runs], args.skip):
        r = run_once(out / f"run{i}", seed, logger, workers)
        runs.append(r)
        shown = "; ".join(f"{m}: {a['parent']} (truth {a['truth']})" for m, a in r.get("answers", {}).items())
        print(f"run {i}: --seed {seed} --logger {logger} --workers {workers}: {r['seconds']:.0f} s; "
              f"{shown or 'failed: ' + r['error'][-300:]}", flush=True)
    correct = sum(bool(r.get("correct")) for r in runs)
    print(f"correct in {correct} of {len(runs)} runs")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "correct": correct}, indent=1))
    return 0 if correct == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
