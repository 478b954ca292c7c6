"""``RunSummary``: a ``summary.json`` beside the logs saying how a fit really ran (processes, batches,
wall time, final metrics), so DDP runs can be checked and compared with single-process ones."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from mgmp._jsonio import write_json


class RunSummary(pl.Callback):
    """At the end of fit, rank 0 writes ``summary.json`` with the world size, every rank's pid and
    training batches per epoch (gathered), optimizer steps, fit seconds and the logged metrics."""

    def __init__(self, filename: str = "summary.json"):
        self.filename = filename
        self._t0 = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds = time.perf_counter() - self._t0
        mine = torch.tensor([os.getpid(), int(trainer.num_training_batches)], device=pl_module.device)
        ranks = trainer.strategy.all_gather(mine).reshape(-1, 2).cpu().tolist()  # a collective: every rank calls it
        out = Path(trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero:
            return
        write_json(out / self.filename, {
            "world_size": trainer.world_size, "strategy": type(trainer.strategy).__name__,
            "accelerator": type(trainer.accelerator).__name__, "pids": [r[0] for r in ranks],
            "train_batches_per_rank": [r[1] for r in ranks], "global_step": trainer.global_step,
            "epochs": trainer.current_epoch, "fit_seconds": round(seconds, 3),
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()}})
