"""Provenance of one suspect against one source with a trained MGMP checkpoint (SPEC §1, §5)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from mgmp.learned.module import MGMPModule
from model_pool.card import ModelCard
from model_pool.data import load_dataset
from model_pool.errors import BadInput, first_line
from model_pool.train import predict


@dataclass
class ProvenanceResult:
    probability: float
    decision: bool
    threshold: float
    n_fragments: int
    fragment_mean: float
    fragment_std: float
    fragments_above: float

    def to_dict(self) -> dict:
        return asdict(self)


def load_mgmp(ckpt: str) -> MGMPModule:
    """Load a trained MGMP checkpoint (tensors and plain types only: ``weights_only=True``)."""
    try:
        return MGMPModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    except FileNotFoundError:
        raise BadInput(f"{ckpt}: no such checkpoint") from None
    except Exception as e:  # noqa: BLE001 - any refusal or format error is bad input
        raise BadInput(f"{ckpt}: not a loadable MGMP checkpoint ({first_line(e, 200)})") from None


def probe_inputs(card: ModelCard, n: int, dataset: str | None = None, task=None) -> torch.Tensor:
    """The source's own test inputs (its D_s), from its recipe or an explicit dataset."""
    name = dataset or card.recipe.get("dataset")
    if not name:
        raise BadInput("the source model records no dataset; pass --data NAME (and --task)")
    data = load_dataset(name, task=task if dataset else card.recipe.get("task"), **({} if dataset else card.recipe.get("data", {})))
    return data.x_test[:n]


@torch.no_grad()
def provenance(module: MGMPModule, source: nn.Module, suspect: nn.Module, x: torch.Tensor,
               extra: torch.Tensor | None = None) -> ProvenanceResult:
    """Fragment probabilities p_i = f_p(o^c_i) on ``x``; model level mean_i p_i >= δ. ``extra``: the
    pair's score features when the checkpoint was trained with ``extra_scores``."""
    features = module.hparams.view == "features"
    y_s = predict(source, x, features=features)
    try:
        y_b = predict(suspect, x, features=features)
    except RuntimeError as e:
        raise BadInput(f"the suspect cannot take the source's inputs of shape {list(x.shape[1:])} "
                        f"({first_line(e, 120)})") from None
    if not torch.isfinite(y_b).all():
        raise BadInput("the suspect's outputs contain NaN or inf")
    known = {module.hparams.z_dim} | {int(k) for k in module.view.proj.keys()}
    if y_b.shape[1] not in known:
        raise BadInput(f"suspect outputs have width {y_b.shape[1]}; this checkpoint knows widths {sorted(known)}")
    p = torch.sigmoid(module.fragment_logits(x, y_s, y_b, extra))
    thr = float(module.hparams.threshold)
    prob = float(p.mean())
    return ProvenanceResult(prob, prob >= thr, thr, len(p), prob, float(p.std()), float((p >= thr).float().mean()))
