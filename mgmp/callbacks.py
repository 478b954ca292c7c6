"""Lightning callbacks that turn an MGMP evaluation into artefacts people look at."""
from __future__ import annotations

import csv
from pathlib import Path

import pytorch_lightning as pl


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
        out = Path(trainer.log_dir or trainer.default_root_dir)
        out.mkdir(parents=True, exist_ok=True)
        png = self._tsne(ev, out / "dna_tsne.png")
        hom = set(ev["homologous"])
        rows = [[m, "homologous" if m in hom else "non-homologous", round(p, 4)] for m, p in sorted(ev["model_scores"].items())]
        with open(out / "model_scores.csv", "w", newline="") as f:
            csv.writer(f).writerows([["model", "group", "p_derived"], *rows])
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.log_image("dna_tsne", [str(png)])
                logger.log_table("model_scores", columns=["model", "group", "p_derived"], data=rows)

    @staticmethod
    def _tsne(ev: dict, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import torch
        from sklearn.manifold import TSNE

        ids = sorted(ev["model_dna"])
        x = torch.stack([ev["model_dna"][m] for m in ids]).float().numpy()
        xy = TSNE(n_components=2, perplexity=max(2.0, min(30.0, (len(ids) - 1) / 3)), init="pca", random_state=0).fit_transform(x)
        hom = set(ev["homologous"])
        fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
        for label, color, marker, keep in (("non-homologous", "tab:blue", "o", lambda m: m != "source" and m not in hom),
                                           ("homologous", "tab:red", "o", lambda m: m in hom),
                                           ("source", "black", "*", lambda m: m == "source")):
            pts = [i for i, m in enumerate(ids) if keep(m)]
            ax.scatter(xy[pts, 0], xy[pts, 1], c=color, marker=marker, s=120 if marker == "*" else 30, label=label)
        ax.set_title("model-level DNA (t-SNE)")
        ax.set_xticks([]), ax.set_yticks([])
        ax.legend(frameon=False, fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path
