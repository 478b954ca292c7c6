"""What every pair score shares: the pair being compared, black-box queries, results, calibration."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model_pool.card import ModelCard
from model_pool.data import load_dataset
from model_pool.data.base import TaskData
from model_pool.errors import MgmpError, first_line


class NotApplicable(MgmpError):
    """The method cannot compare this pair (e.g. the basin test across architectures)."""


def task_data(card: ModelCard, dataset: str | None = None, task=None) -> TaskData | None:
    """The data a model was trained on, from its recipe record (or an explicit dataset name)."""
    name = dataset or card.recipe.get("dataset")
    if not name:
        return None
    if dataset:
        return load_dataset(dataset, task=task)
    return load_dataset(name, task=card.recipe.get("task"), **card.recipe.get("data", {}))


@dataclass
class Pair:
    """Source A (white-box) and suspect B (queried only, except by weight-space methods)."""

    source: nn.Module
    suspect: nn.Module
    source_card: ModelCard
    suspect_card: ModelCard
    source_data: TaskData
    suspect_data: TaskData | None = None
    source_id: str | None = None
    suspect_id: str | None = None
    pool: Path | None = None  # the source's pool directory: where generated sets and models are cached

    def __post_init__(self):
        self.source.eval()
        self.suspect.eval()

    @property
    def same_task(self) -> bool:
        """Do A and B share their output space (same classes in the same order)?"""
        if self.suspect_card.num_classes != self.source_card.num_classes:
            return False
        if self.suspect_card.task and self.source_card.task:
            return self.suspect_card.task == self.source_card.task
        return self.suspect_data is None or self.suspect_data.name == self.source_data.name

    def require_suspect_data(self, method: str) -> TaskData:
        if self.suspect_data is None:
            raise MgmpError(f"{method}: the suspect's output space differs from the source's and its task is unknown "
                            "(unknown output mapping); pass --suspect-data NAME [--suspect-task T]")
        return self.suspect_data


@torch.no_grad()
def query(model: nn.Module, x: torch.Tensor, batch_size: int = 4096, probs: bool = False) -> torch.Tensor:
    """Black-box outputs of ``model`` on ``x`` (logits, or softmax ``probs``), with clear errors on bad models."""
    try:
        out = torch.cat([model(chunk) for chunk in x.split(batch_size)])
    except RuntimeError as e:
        raise MgmpError(f"the model cannot take inputs of shape {list(x.shape[1:])} "
                        f"({first_line(e, 120)})") from None
    if out.ndim != 2:
        raise MgmpError(f"the model returns outputs of shape {list(out.shape[1:])}, expected class scores")
    if not torch.isfinite(out).all():
        raise MgmpError("the model's outputs contain NaN or inf")
    return out.softmax(1) if probs else out


def labels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return query(model, x).argmax(1)


@dataclass
class ScoreResult:
    """One method's verdict material on one pair: ``value`` oriented as the method's ``higher_is_related``."""

    method: str
    value: float
    higher_is_related: bool
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    cached: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class PairScore:
    """Base of every score: parameters in ``__init__``, ``score(pair)`` computes, ``params_hash`` keys the cache."""

    name: str = ""
    higher_is_related: bool = True
    handles_transfer: bool = False
    measures_closeness: bool = False

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def params_hash(self) -> str:
        blob = json.dumps({"method": self.name, **self.params()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def score(self, pair: Pair) -> ScoreResult:
        raise NotImplementedError

    def result(self, value: float, **extra) -> ScoreResult:
        return ScoreResult(self.name, float(value), self.higher_is_related, extra)


def fit_threshold(values, related, higher_is_related: bool = True) -> float:
    """The decision threshold with the best accuracy on calibration pairs (midpoint between neighbours)."""
    v = np.asarray(values, dtype=float)
    r = np.asarray(related, dtype=bool)
    if not higher_is_related:
        v = -v
    ok = np.isfinite(v)
    v, r = v[ok], r[ok]
    if len(v) == 0:
        raise MgmpError("no finite calibration scores to fit a threshold on")
    cuts = np.unique(v)
    cands = np.concatenate([[cuts[0] - 1e-9], (cuts[1:] + cuts[:-1]) / 2, [cuts[-1] + 1e-9]])
    acc = [((v >= c) == r).mean() for c in cands]
    best = float(cands[int(np.argmax(acc))])
    return best if higher_is_related else -best


def decide(value: float, threshold: float, higher_is_related: bool) -> bool:
    """Related iff the value is on the related side of the threshold (NaN: not related)."""
    if not np.isfinite(value):
        return False
    return value >= threshold if higher_is_related else value <= threshold
