"""MGMP evaluation metrics (SPEC §5) from per-pair records, gathered across DDP ranks first.

Each evaluation batch is one pair; under DDP a DistributedSampler gives each rank some pairs (padding
with repeats). Gathering the records, dropping repeats by pair index and computing the metrics on
the union gives every rank the numbers a single process computes on the same weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torchmetrics.functional.classification import binary_accuracy, binary_auroc


@dataclass
class PairRecord:
    """One evaluation pair: fragment probabilities (N,) of its homologous and non-homologous model,
    and the model-level DNA (mean fragment, (D,)) of the source and of both models."""

    pair: int
    hom: str
    non: str
    p_t: torch.Tensor
    p_n: torch.Tensor
    dna: dict[str, torch.Tensor]


@dataclass
class Evaluation:
    metrics: dict[str, float]
    model_scores: dict[str, float]
    pair_acc: list[float]
    model_dna: dict[str, torch.Tensor]


def group(model_id: str, homologous: set[str]) -> str:
    """A model's group in plots and tables: the source (named ``source`` in the model DNA), homologous or not."""
    return "source" if model_id == "source" else "homologous" if model_id in homologous else "non-homologous"


def gather_records(records: list[PairRecord]) -> list[PairRecord]:
    """Every rank's records (CPU tensors), one per pair index, in pair order; a no-op in one process."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, records)
        records = [r for part in parts for r in part]
    return sorted({r.pair: r for r in records}.values(), key=lambda r: r.pair)


def pair_accuracy(p_t: torch.Tensor, p_n: torch.Tensor, threshold: float) -> float:
    """(A_o + A_n) / 2N: homologous fragments at or above ``threshold``, non-homologous ones below."""
    return float(((p_t >= threshold).sum() + (p_n < threshold).sum()) / (2 * len(p_t)))


def evaluate(records: list[PairRecord], homologous: set[str], threshold: float = 0.5) -> Evaluation:
    """Fragment accuracy per pair (mean, std), over all fragments, fragment AUROC, and model-level
    accuracy / AUROC of mean fragment probabilities (a model in several pairs keeps its last pair's)."""
    pair_acc = [pair_accuracy(r.p_t, r.p_n, threshold) for r in records]
    probs = torch.cat([torch.cat([r.p_t, r.p_n]) for r in records])
    labels = torch.cat([torch.cat([torch.ones(len(r.p_t)), torch.zeros(len(r.p_n))]) for r in records]).long()
    scores, dna = {}, {}
    for r in records:
        scores[r.hom], scores[r.non] = float(r.p_t.mean()), float(r.p_n.mean())
        dna.update(r.dna)
    ids = sorted(scores)
    s = torch.tensor([scores[m] for m in ids])
    y = torch.tensor([1 if m in homologous else 0 for m in ids])
    acc = np.array(pair_acc)
    metrics = {"frag_acc": float(acc.mean()), "frag_acc_std": float(acc.std()),
               "frag_acc_all": float(binary_accuracy(probs, labels, threshold)), "frag_auroc": float(binary_auroc(probs, labels)),
               "model_acc": float(binary_accuracy(s, y, threshold)), "model_auroc": float(binary_auroc(s, y))}
    return Evaluation(metrics, scores, pair_acc, dna)
