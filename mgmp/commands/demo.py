"""``mgmp demo``: the main job on the embedded default, stage by stage, ending in ``DIR/report.html``."""
from __future__ import annotations

import importlib.util
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from rich.console import Console
from rich.progress import track

from mgmp._jsonio import write_json
from mgmp.calibration.verdict import DEFAULT_ALPHA, FusedTest, verdict
from mgmp.commands import Outcome
from mgmp.commands._tables import make_table
from mgmp.commands.pool import build_with_progress
from mgmp.index.query import QueryOptions, query
from mgmp.index.store import build_indexes
from mgmp.learned.datamodule import ModelPoolDataModule
from mgmp.learned.evaluation import group
from mgmp.learned.module import MGMPModule
from mgmp.plots import dna_tsne, grouped_strip, score_heatmap
from mgmp.report import write_report
from mgmp.scores import SCORES, compute, create_score, load_pair
from model_pool.errors import NotApplicable
from model_pool.plan import load_plan
from model_pool.pool import Pool

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
console = Console(stderr=True)
STAGES = ("build the embedded digits pool", "train MGMP (features view) and test on held-out tasks",
          "pair scores: lineage closeness, basin test, Zest", "DNA index and ancestor query", "HTML report")
METHODS = ("closeness", "basin", "zest")
SCORE_PARAMS: dict[str, dict[str, Any]] = {}  # per method: parameters of its pair scores; each paper's defaults otherwise


def _eval_models(pool: Pool, order: list[str]) -> tuple[list[str], list[str]]:
    """Held-out evaluation models of the pool in the plan's ``order`` (not the order the workers finished them in, so
    that every run shows and queries the same ones): (homologous: descendants of `source`, non-homologous)."""
    desc = set(pool.registry.descendants("source"))
    rank = {m: i for i, m in enumerate(order)}
    ev = sorted((r.id for r in pool.registry.models("split = 'eval'")), key=lambda m: (rank.get(m, len(rank)), m))
    return [m for m in ev if m in desc], [m for m in ev if m not in desc]


def _logger(kind: str, out: Path):
    if kind == "wandb" and importlib.util.find_spec("wandb") is None:
        console.print("wandb is not installed: logging to CSV instead")
        kind = "csv"
    if kind == "wandb":
        return WandbLogger(project="mgmp", name="demo", save_dir=str(out), offline=True)
    if kind == "csv":
        return CSVLogger(str(out), name="demo")
    return False


def _train_mgmp(pool_dir: Path, out: Path, logger_kind: str, epochs: int, figures: dict,
                seed: int = 0) -> dict[str, Any]:
    """Train MGMP on the pool tasks, test on the held-out ones; returns the stage's results.
    ``seed``: MGMP's initialisation and training episodes, the t-SNE."""
    for name in ("pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    pl.seed_everything(seed)
    dm = ModelPoolDataModule(str(pool_dir), view="features", episodes_per_epoch=100, eval_points=200, seed=seed)
    dm.setup()
    model = MGMPModule(dm.output_dims, generator="small_cnn", generator_kwargs={"in_channels": 1, "image_size": 8},
                       view="features")
    logger = _logger(logger_kind, out)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="auto", logger=logger, default_root_dir=str(out / "mgmp"),
                         enable_model_summary=False, num_sanity_val_steps=0, check_val_every_n_epoch=epochs)
    trainer.fit(model, dm)
    metrics = {k.split("/", 1)[1]: v for k, v in trainer.test(model, dm, verbose=False)[0].items()}
    run_dir = None
    if logger and logger_kind == "wandb" and hasattr(logger, "experiment"):
        run_dir = str(Path(logger.experiment.dir).parent)
        console.print(f"W&B offline run: {run_dir}", soft_wrap=True)
        console.print(f"upload it with: wandb sync {run_dir}", soft_wrap=True)
        logger.experiment.finish()
    ev = model.last_eval
    hom = set(ev["homologous"])
    figures["dna_tsne"] = dna_tsne({m: v.float().numpy() for m, v in ev["model_dna"].items()},
                                   {m: group(m, hom) for m in ev["model_dna"]}, out / "figures" / "dna_tsne.png", seed=seed)
    top = sorted(ev["model_scores"].items(), key=lambda kv: -kv[1])[:6]
    Console().print(make_table(("held-out model", "group", "P(derived)"), ((m, group(m, hom), f"{p:.3f}") for m, p in top),
                               title="MGMP on held-out evaluation tasks: P(derived from source)",
                               names=("held-out model", "group"), numbers=("P(derived)",)))
    Console().print(f"fragment accuracy {metrics['frag_acc']:.3f} ± {metrics['frag_acc_std']:.3f}, "
                    f"model accuracy {metrics['model_acc']:.3f}, model AUROC {metrics['model_auroc']:.3f}")
    return {"metrics": metrics, "model_scores": ev["model_scores"], "eval_pairs": [list(p) for p in dm.eval_pairs],
            "pair_acc": ev["pair_acc"], "threshold": float(model.hparams.threshold), "eval_points": dm.hparams.eval_points,
            "wandb_run": run_dir}


def _score(method: str, pool: Pool, source: str, suspect: str, seed: int = 0) -> float | None:
    params = {"seed": seed} if "seed" in SCORES.get(method).param_specs else {}  # the points the score samples
    params |= SCORE_PARAMS.get(method, {})
    try:
        return compute(create_score(method, **params), load_pair(pool.ref(source), pool.ref(suspect), pool=pool)).value
    except NotApplicable:
        return None


def _pair_scores(pool: Pool, out: Path, mgmp_scores: dict[str, float], figures: dict, order: list[str],
                 seed: int = 0) -> dict[str, Any]:
    """Closeness, basin and Zest of `source` vs 2 homologous and 2 non-homologous held-out models; closeness of the
    unrelated source(s) too, for the heatmap. ``seed``: the points the scores sample (the verdicts use the shipped
    fused test as it was calibrated: its scores' parameters and its references' seeds are part of it)."""
    hom, non = _eval_models(pool, order)
    models = hom[:2] + non[:2]
    cards = {m: pool.registry.get(m) for m in models}
    sources = ["source"] + sorted(r.id for r in pool.registry.models() if r.tags.get("role") == "unrelated-source")
    jobs = [("source", m, k) for m in models for k in METHODS] + [(s, m, "closeness") for s in sources[1:] for m in models]
    values = {(a, b, k): _score(k, pool, a, b, seed) for a, b, k in track(
        jobs, description=f"{len(jobs)} pair scores of {', '.join(sources)} vs {len(models)} held-out models", console=console)}
    test = FusedTest.load()
    verdicts = {m: verdict(load_pair(pool.ref("source"), pool.ref(m), pool=pool), test) for m in track(
        models, description="verdicts (the shipped fused test; the source's references are trained once)", console=console)}
    rows = [{"model": m, "group": group(m, set(hom)), "relation": cards[m].relation,
             "parent": ", ".join(cards[m].parents), "mgmp": mgmp_scores.get(m),
             **{k: values["source", m, k] for k in METHODS}, "verdict": verdicts[m]["verdict"],
             "verdict_p": _finite(verdicts[m]["p_value"]), "verdict_P": _finite(verdicts[m]["P"])} for m in models]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    Console().print(make_table(
        ("model", "group", "MGMP", "close", "basin", "Zest", "verdict (p-value)"),
        ((r["model"], r["group"], fmt(r["mgmp"]), *(fmt(r[k]) for k in METHODS), r["verdict"] + ("" if r["verdict_p"] is None else f" ({r['verdict_p']:.2g})"))
         for r in rows), title="pair scores against `source`", names=("model", "group"),
        numbers=("MGMP", "close", "basin", "Zest"),
        caption=f"MGMP: its P(derived); close: lineage closeness s; verdict: the shipped fused test at α {DEFAULT_ALPHA:g}"))
    grid = np.array([[np.nan if values[s, m, "closeness"] is None else values[s, m, "closeness"] for m in models] for s in sources])
    figures["closeness_heatmap"] = score_heatmap(grid, sources, models, out / "figures" / "closeness_heatmap.png",
                                                 "lineage closeness s (rows: sources; columns: held-out models)", annotate=True)
    figures["zest"] = grouped_strip({g: [r["zest"] for r in rows if r["group"] == g and r["zest"] is not None]
                                     for g in ("homologous", "non-homologous")},
                                    out / "figures" / "zest_distances.png", "Zest: source vs held-out models",
                                    "relative distance (lower = related)")
    return {"rows": rows, "closeness_matrix": {"rows": sources, "cols": models, "values": grid.tolist()}}


def _finite(value: float) -> float | None:
    """A verdict's P or p-value; None where the weights alone decided (NaN is no JSON)."""
    return None if math.isnan(value) else value


def _ancestor_query(pool: Pool, order: list[str]) -> dict[str, Any]:
    """Index every model but two held-out ones, then ask for the ancestors of each: a homologous model and an
    independent one with no ancestor in the registry. Hits are supported by the shipped fused verdict (each hit
    against its own independent references; the demo pool has no calibration of its own)."""
    hom, non = _eval_models(pool, order)
    reg = pool.registry
    orphans = [m for m in non if not reg.get(m).parents]
    queried = (hom[-1], orphans[-1] if orphans else non[-1])
    truth = {m: " -> ".join(reg.chain(m)[1:]) or None for m in queried}
    built = build_indexes(pool, "flat", exclude=set(queried), rebuild=True, tag="demo")
    built = {"ntotal": built[0]["ntotal"], "dna": [b["dna"] for b in built], "seconds": sum(b["seconds"] for b in built)}
    console.print(f"flat indexes of {built['ntotal']} {' and '.join(built['dna'])} DNA vectors ({built['seconds']:.1f} s); "
                  f"{', '.join(queried)} left out")
    answers = {}
    options = QueryOptions(top_k=3, exclude=frozenset(queried), tag="demo")
    for m in queried:
        res = query(pool, pool.ref(m), options)
        runner_up = next((h for h in res.hits if h.supported and h.model_id != res.parent), None)
        Console().print(f"{m} (truth: {truth[m] or 'no ancestor'}): [bold]{res.verdict}[/] (support: {res.support}); "
                        f"hits: " + ", ".join(_evidence(h) for h in res.hits)
                        + (f"; runner-up: {runner_up.model_id}" if runner_up else ""))
        answers[m] = res.to_dict() | {"runner_up": runner_up.model_id if runner_up else None}
    return {"index": built, "queries": answers, "truth": truth}


def _evidence(h) -> str:
    """A hit as the demo prints it: its verdict's P and p-value, or its weight cosine where the weights decided."""
    if h.probability is not None:
        return f"{h.model_id} (P {h.probability:.2f}, p {h.p_value:.2g}{', derived' if h.derived else ''})"
    return f"{h.model_id} (weights {h.scores.get('weights', float('nan')):.2f}{', derived' if h.derived else ''})"


class _Stages:
    """Numbered, timed stages: each appends its result (with status and seconds) to ``run['stages']``."""

    def __init__(self, run: dict):
        self.run, self.n = run, 0

    def __call__(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        self.n += 1
        console.rule(f"[bold]mgmp demo: {self.n}/{len(STAGES)} {STAGES[self.n - 1]}")
        t0 = time.perf_counter()
        result = {"stage": name, "status": "done", **fn()}
        result["seconds"] = time.perf_counter() - t0
        self.run["stages"].append(result)
        return result


def run(args) -> Outcome:
    out = Path(args.out)
    pool_dir = out / "pools" / "digits"
    run = {"out": str(out), "pool": str(pool_dir), "stages": [], "seed": args.seed,
           "command": f"mgmp demo --out {out} --logger {args.logger} --epochs {args.epochs} --workers {args.workers} "
                      f"--seed {args.seed}"}
    figures: dict[str, Path] = {}
    stage = _Stages(run)
    plan = load_plan(CONFIGS / "pool" / "digits.yaml")

    def pool_stage():
        report = build_with_progress(plan, pool_dir, args.workers, resume=Pool.exists(pool_dir))
        return {"status": "done" if report.ok else "failed", "models": len(report.built) + len(report.skipped)}

    if stage("pool", pool_stage)["status"] != "done":
        return Outcome(run, 1)
    mgmp_result = stage("mgmp", lambda: _train_mgmp(pool_dir, out, args.logger, args.epochs, figures, args.seed))
    with Pool.open(pool_dir) as pool:
        order = [j.id for j in plan.jobs]
        stage("scores", lambda: _pair_scores(pool, out, mgmp_result["model_scores"], figures, order, args.seed))
        stage("query", lambda: _ancestor_query(pool, order))
    report = out / "report.html"
    stage("report", lambda: {"path": str(write_report(run, figures, report))})
    write_json(out / "demo.json", run)
    Console().print(f"report: {report.resolve()}", soft_wrap=True)
    return Outcome(run)
