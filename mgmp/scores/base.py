"""What every pair score shares: the pair being compared (with the pool that caches for it), results."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from model_pool.card import ModelCard
from model_pool.data import load_dataset
from model_pool.data.base import TaskData
from model_pool.errors import BadInput
from model_pool.pool import MEMORY, Pool, TensorCache, load_ref, split_ref


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
    pool: Pool | None = None  # the source's pool: where generated sets, models and scores are cached

    def __post_init__(self):
        self.source.eval()
        self.suspect.eval()

    @property
    def cache(self) -> TensorCache:
        """Where what a score generates for the source is kept: the pool, else the process."""
        return self.pool if self.pool is not None else MEMORY

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
            raise BadInput(f"{method}: the suspect's output space differs from the source's and its task is unknown "
                           "(unknown output mapping); pass --suspect-data NAME [--suspect-task T]")
        return self.suspect_data


def load_pair(source: str, suspect: str, pool: Pool | None = None, data: str | None = None, task=None,
              suspect_data: str | None = None, suspect_task=None) -> Pair:
    """A :class:`Pair` from two model references (directories or ``POOL_DIR::MODEL_ID``). ``pool``: the open
    pool the references name; when None and the source names a pool, that pool is opened for this pair
    (the convenience of an API edge: callers that score many pairs open it once and pass it)."""
    if pool is None and (pool_dir := split_ref(source)[0]) is not None:
        pool = Pool.open(pool_dir)
    a, a_card = load_ref(source, pool)
    b, b_card = load_ref(suspect, pool)
    a_data = task_data(a_card, data, task)
    if a_data is None:
        raise BadInput("the source model records no dataset; pass --data NAME (and --task)")
    b_data = task_data(b_card, suspect_data, suspect_task)
    a_id, b_id = _pool_id(source, pool), _pool_id(suspect, pool)
    if a_id is None:  # scores and generated sets are cached for sources of the open pool only
        return Pair(a, b, a_card, b_card, a_data, b_data)
    return Pair(a, b, a_card, b_card, a_data, b_data, a_id, b_id, pool)


def _pool_id(ref: str, pool: Pool | None) -> str | None:
    """The model id of ``ref`` when it names a model of ``pool``."""
    pool_dir, model_id = split_ref(ref)
    if pool is None or pool_dir is None or Path(pool_dir).resolve() != pool.root.resolve():
        return None
    return model_id


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
