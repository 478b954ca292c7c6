"""Lightning callbacks that turn an MGMP evaluation into artefacts people look at."""
from __future__ import annotations

import csv
from pathlib import Path

import pytorch_lightning as pl

from mgmp.learned.evaluation import group
from mgmp.plots import dna_tsne


class DNAReport(pl.Callback):
    """After fitting (last validation) and testing: a model-level DNA t-SNE (source / homologous / non-homologous, as the MGMP
    paper's Fig. 4) and a per-model results table, logged to W&B or written beside the CSV logs."""

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.report(trainer, pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.report(trainer, pl_module)  # from the last validation

    def report(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        ev = getattr(pl_module, "last_eval", None)
        if not ev or not ev.get("model_dna"):
            return
        out = Path(trainer.log_dir or trainer.default_root_dir)  # a broadcast under DDP: every rank gets here
        if not trainer.is_global_zero:  # DDP: every rank holds the same gathered evaluation; one writes
            return
        out.mkdir(parents=True, exist_ok=True)
        hom = set(ev["homologous"])
        png = dna_tsne({m: v.float().numpy() for m, v in ev["model_dna"].items()}, {m: group(m, hom) for m in ev["model_dna"]},
                       out / "dna_tsne.png")
        rows = [[m, group(m, hom), round(p, 4)] for m, p in sorted(ev["model_scores"].items())]
        with open(out / "model_scores.csv", "w", newline="") as f:
            csv.writer(f).writerows([["model", "group", "p_derived"], *rows])
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.log_image("dna_tsne", [str(png)])
                logger.log_table("model_scores", columns=["model", "group", "p_derived"], data=rows)
