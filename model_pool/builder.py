"""Run a pool plan: jobs in parent-before-child order, inline, in local worker processes or as Ray tasks.

Each job trains in a worker, writes its model directory atomically (temp dir + rename) and is
registered by the parent process in one transaction. A row therefore always means a complete
model; directories without a row (a crash between rename and commit) are removed on ``--resume``
and rebuilt. A failed job is reported and only its descendants are skipped, except a failed write
(disk full, read-only directory, file size limit): that stops the build with one ``StorageError``,
since every later job would fail the same way; ``--resume`` finishes it once the fault is gone.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from model_pool.archs import standalone_kwargs
from model_pool.card import ModelCard
from model_pool.dag import run_dag
from model_pool.data import load_dataset
from model_pool.errors import BadInput, StorageError, first_line, one_line
from model_pool.executors import check_executor, create_executor
from model_pool.io import load_model_dir, save_model_dir
from model_pool.plan import Job, Plan
from model_pool.recipes import RecipeContext, run_recipe
from model_pool.registry import MODELS_DIR, PoolRegistry
from model_pool.train import accuracy


@dataclass
class BuildReport:
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def run_job(job: Job, pool_dir: str) -> dict:
    """Build one model (in a worker process): load parents and data, run the recipe, evaluate, save."""
    t0 = time.perf_counter()
    root = Path(pool_dir)
    loaded = [load_model_dir(root / MODELS_DIR / p) for p in job.parents]
    data = load_dataset(job.dataset, task=job.task, **job.data)
    parent_cards = [c for _, c in loaded]
    if {"scratch", "extract"} & set(job.recipe.split("+")) or not parent_cards:
        arch, arch_kwargs = job.arch, job.arch_kwargs
    else:
        arch, arch_kwargs = parent_cards[0].arch, parent_cards[0].arch_kwargs
    ctx = RecipeContext(data=data, parents=[m for m, _ in loaded], parent_cards=parent_cards, arch=job.arch,
                        arch_kwargs=job.arch_kwargs, seed=job.seed, params=job.params)
    model = run_recipe(job.recipe, ctx)
    # the public start it was built on: its builder's pretrained weights, or its parent's when it inherits them
    inherits = parent_cards and not {"scratch", "extract", "distill"} & set(job.recipe.split("+"))
    start = arch_kwargs.get("pretrained") or (parent_cards[0].recipe.get("init") if inherits else None)
    init = {"init": start} if start else {}
    arch_kwargs = standalone_kwargs(arch_kwargs, model)
    metrics = {"test_acc": accuracy(model, data.x_test, data.y_test), "train_acc": accuracy(model, data.x_train, data.y_train),
               "seconds": round(time.perf_counter() - t0, 3)}
    card = ModelCard(arch=arch, arch_kwargs=arch_kwargs, num_classes=model.head.out_features, input=data.input,
                     task=data.meta.get("label_space", data.name), relation=job.recipe, parents=list(job.parents), seed=job.seed,
                     recipe={"relation": job.recipe, "params": job.params, "dataset": job.dataset, "task": job.task, "data": job.data,
                             "split": job.split, "tags": job.tags, "job_hash": job.hash(), **init}, metrics=metrics)
    card = save_model_dir(model, card, root / MODELS_DIR / job.id, tokenizer=data.meta.get("tokenizer"))
    return {"card": card.to_json(), "seconds": metrics["seconds"]}


def clean_orphans(reg: PoolRegistry) -> list[str]:
    """Remove temp dirs and model dirs that have no registry row (left by an interrupted build)."""
    removed = []
    models = reg.root / MODELS_DIR
    for d in sorted(models.iterdir()) if models.is_dir() else []:
        if d.name.startswith(".tmp-") or not reg.has(d.name):
            shutil.rmtree(d, ignore_errors=True) if d.is_dir() and not d.is_symlink() else d.unlink()
            removed.append(d.name)
    return removed


def build_pool(plan: Plan, out: str | Path, *, workers: int = 1, resume: bool = False,
               on_event: Callable[[str, str, dict], None] | None = None, executor: str = "local",
               address: str | None = None) -> BuildReport:
    """Build every job of ``plan`` into pool directory ``out``; see the module docstring.

    ``executor``: ``local`` (inline for one worker, else processes) or ``ray`` (tasks on a local Ray
    instance with ``workers`` CPUs, or the cluster at ``address``, which must see ``out``)."""
    t0 = time.perf_counter()
    check_executor(executor, workers, address)
    out = Path(out)
    reg = PoolRegistry(out, create=True)
    report = BuildReport()
    emit = on_event or (lambda kind, job_id, info: None)
    try:
        existing = reg.ids()
        if existing and not resume:
            raise BadInput(f"{out} already holds {len(existing)} models; pass --resume to finish the plan")
        report.cleaned = clean_orphans(reg)
        reg.set_meta("plan_name", plan.name)
        jobs = plan.by_id()
        for job_id in existing:
            if job_id in jobs and reg.get(job_id).job_hash != jobs[job_id].hash():
                raise BadInput(f"{out}: model {job_id!r} was built from another plan entry; use a new --out")
        bad: set[str] = set()
        pool_dir = str(out.resolve())  # remote workers need not share the driver's working directory

        def start(job_id: str):
            job = jobs[job_id]
            if reg.has(job_id):
                report.skipped.append(job_id)
                emit("skipped", job_id, {})
                return None
            if any(p in bad for p in job.parents):
                bad.add(job_id)
                report.blocked.append(job_id)
                emit("blocked", job_id, {})
                return None
            return run_job, job, pool_dir

        def finish(job_id: str, result: dict | None, error: BaseException | None) -> None:
            if error is None:
                try:
                    card = ModelCard.from_dict(json.loads(result["card"]))
                    job = jobs[job_id]
                    reg.add(job_id, card, dataset=job.dataset, split=job.split, tags=job.tags, job_hash=job.hash())
                except Exception as e:  # noqa: BLE001 - a job that cannot be registered failed like any other
                    error = e
                else:
                    report.built.append(job_id)
                    emit("built", job_id, {"seconds": result["seconds"], **card.metrics})
                    return
            if isinstance(error, (StorageError, OSError)):
                raise StorageError(f"pool build stopped at {job_id}: {first_line(error)}; {len(report.built)} models "
                                   f"built in this run, nothing half-written: rerun with --resume once it can write")
            bad.add(job_id)
            report.failed[job_id] = one_line(error)
            emit("failed", job_id, {"error": report.failed[job_id]})

        pool = create_executor(executor, workers, address)
        try:
            run_dag({j.id: j.parents for j in plan.jobs}, pool, start, finish)
        finally:
            pool.shutdown(cancel_futures=True)
    finally:
        reg.close()
    report.seconds = round(time.perf_counter() - t0, 2)
    return report
