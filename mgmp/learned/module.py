"""``MGMPModule``: the DNA generator, output views, assembly and provenance classifier, trained
jointly on L_S + L_I + λ‖w_g‖² + BCE (eqs. 5-8) with Adam; evaluated per evaluation pair.
Runs unchanged under DDP: epoch-level logs are synced and evaluation records gathered across ranks."""
from __future__ import annotations

import pytorch_lightning as pl
import torch

from mgmp.learned.evaluation import PairRecord, evaluate, gather_records
from mgmp.learned.fragments import Assembly, OutputView, ProvenanceClassifier
from mgmp.learned.generators import create_generator
from mgmp.learned.losses import loss_bce, loss_i, loss_s, weight_penalty
from mgmp.scores.features import n_features
from model_pool.errors import BadInput

CONTROLS = ("none", "target_only", "shuffled")


class MGMPModule(pl.LightningModule):
    def __init__(self, output_dims: list[int], generator: str | None = "small_cnn", generator_kwargs: dict | None = None,
                 z_dim: int = 64, view: str = "logits", assembly: str = "add", tau: float = 0.1, lambda_g: float = 1e-5,
                 ls_form: str = "paper", li_form: str = "paper", reduction: str = "mean",
                 loss_weights: dict | None = None, hidden: int = 256, dropout: float = 0.2, n_extra: int = 0, pair: str = "concat",
                 lr: float = 1e-3, schedule: str = "joint", stage1_epochs: int = 0, threshold: float = 0.5,
                 control: str = "none", extra_scores: dict[str, dict] | None = None):
        """``generator=None`` is the "without generator" ablation (z = 0). ``schedule="two_stage"``:
        the first ``stage1_epochs`` train generator and views on L_S + L_I + penalty only, then the
        classifier on BCE only. ``control``: ``target_only`` zeroes the source's outputs,
        ``shuffled`` pairs each x with the source's outputs on another x (both are controls, not methods).
        ``extra_scores`` ({method: params}, linked from the data module) sets ``n_extra`` to its
        feature count, and is kept so that ``mgmp provenance`` computes the same scores."""
        super().__init__()
        self.save_hyperparameters()
        if control not in CONTROLS:
            raise BadInput(f"unknown control {control!r}; known: {', '.join(CONTROLS)}")
        if schedule not in ("joint", "two_stage"):
            raise BadInput(f"schedule must be joint or two_stage, got {schedule!r}")
        self.generator = create_generator(generator, z_dim, **(generator_kwargs or {})) if generator else None
        self.view = OutputView(view, output_dims, z_dim)
        self.assembly = Assembly(assembly, z_dim)
        if extra_scores:
            n_extra = n_features(extra_scores)
        self.classifier = ProvenanceClassifier(self.assembly.out_dim, hidden, dropout, n_extra, pair)
        self.weights = {"ls": 1.0, "li": 1.0, "bce": 1.0, **(loss_weights or {})}
        self._records: list[PairRecord] = []

    # -- DNA ---------------------------------------------------------------------------------
    def z(self, x: torch.Tensor) -> torch.Tensor:
        if self.generator is None:
            return torch.zeros(x.shape[0], self.hparams.z_dim, device=self.device)
        return self.generator(x)

    def fragments(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """DNA fragments o = asm(z, view(y)), (B, fragment_dim)."""
        return self.assembly(z, self.view(y))

    def _source_outputs(self, y_s: torch.Tensor) -> torch.Tensor:
        if self.hparams.control == "target_only":
            return torch.zeros_like(y_s)
        if self.hparams.control == "shuffled":
            return y_s.roll(1, dims=0)
        return y_s

    def pair_fragments(self, x, y_s, y_x) -> tuple[torch.Tensor, torch.Tensor]:
        """DNA fragments (o^s, o^x) of the source and of model X on inputs x."""
        z = self.z(x)
        return self.fragments(z, self._source_outputs(y_s)), self.fragments(z, y_x)

    def fragment_logits(self, x, y_s, y_x, extra=None) -> torch.Tensor:
        """Provenance logit of every fragment of model X against the source (B,)."""
        return self.classifier(*self.pair_fragments(x, y_s, y_x), extra)

    # -- training ------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        hp, w = self.hparams, self.weights
        two_stage = hp.schedule == "two_stage"
        dna_stage = two_stage and self.current_epoch < hp.stage1_epochs
        z = self.z(batch["x"])
        o_s = self.fragments(z, self._source_outputs(batch["y_s"]))
        o_t, o_n = self.fragments(z, batch["y_t"]), self.fragments(z, batch["y_n"])
        ls = loss_s(o_s, o_t, o_n, hp.tau, hp.reduction, hp.ls_form)
        li = loss_i(o_s, o_t, o_n, hp.tau, hp.reduction, hp.li_form)
        reg = hp.lambda_g * weight_penalty(self.generator).to(self.device)
        if two_stage and not dna_stage:  # stage 2 trains the classifier on frozen DNA
            o_s, o_t, o_n = o_s.detach(), o_t.detach(), o_n.detach()
        logits = torch.cat([self.classifier(o_s, o_t, batch.get("e_t")), self.classifier(o_s, o_n, batch.get("e_n"))])
        labels = torch.cat([torch.ones(len(o_t)), torch.zeros(len(o_n))]).to(logits.device)
        bce = loss_bce(logits, labels)
        dna_loss = w["ls"] * ls + w["li"] * li + reg
        loss = (dna_loss if dna_stage else w["bce"] * bce) if two_stage else dna_loss + w["bce"] * bce
        self.log_dict({"train/loss": loss, "train/L_S": ls, "train/L_I": li, "train/bce": bce, "train/reg": reg},
                      on_step=False, on_epoch=True, batch_size=len(o_t), sync_dist=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    # -- evaluation ------------------------------------------------------------------------------
    def _eval_step(self, batch):
        o_s, o_t = self.pair_fragments(batch["x"], batch["y_s"], batch["y_t"])
        _, o_n = self.pair_fragments(batch["x"], batch["y_s"], batch["y_n"])
        p_t = torch.sigmoid(self.classifier(o_s, o_t, batch.get("e_t")))
        p_n = torch.sigmoid(self.classifier(o_s, o_n, batch.get("e_n")))
        pair = int(batch["pair"])
        dm = self.trainer.datamodule
        hom, non = dm.eval_pairs[pair] if dm is not None else (f"h{pair}", f"n{pair}")
        dna = {"source": o_s.mean(0).cpu(), hom: o_t.mean(0).cpu(), non: o_n.mean(0).cpu()}
        self._records.append(PairRecord(pair, hom, non, p_t.detach().cpu(), p_n.detach().cpu(), dna))

    def _eval_end(self, prefix: str) -> dict[str, float]:
        """Metrics over every rank's pairs (identical on all ranks), logged and kept in ``last_eval``."""
        records, self._records = gather_records(self._records), []
        dm = self.trainer.datamodule
        hom = {m for m, _ in dm.eval_pairs} if dm is not None else {r.hom for r in records}
        ev = evaluate(records, hom, self.hparams.threshold)
        out = {f"{prefix}/{k}": v for k, v in ev.metrics.items()}
        self.log_dict(out, sync_dist=True)  # equal on every rank already; the sync keeps Lightning's DDP contract
        self.last_eval = {"metrics": out, "model_scores": ev.model_scores, "pair_acc": ev.pair_acc,
                          "homologous": sorted(hom), "model_dna": ev.model_dna}
        return out

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch)

    def on_validation_epoch_end(self):
        self._eval_end("val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch)

    def on_test_epoch_end(self):
        self._eval_end("test")

    def predict_step(self, batch, batch_idx):
        return torch.sigmoid(self.fragment_logits(batch["x"], batch["y_s"], batch["y_t"], batch.get("e_t")))
