"""What every pair score shares: the pair being compared (with the pool that caches for it), results."""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from model_pool.card import ModelCard
from model_pool.data import load_dataset
from model_pool.data.base import TaskData
from model_pool.data.references import data_kwargs, is_data_ref
from model_pool.endpoint import EndpointModel, parse_endpoint_ref
from model_pool.errors import BadInput, NotApplicable
from model_pool.params import Spec, check_params
from model_pool.pool import Pool, TensorCache, load_ref, split_ref, user_cache


def task_data(card: ModelCard, dataset: str | None = None, task=None) -> TaskData | None:
    """The data a model was trained on, from its recipe record (or an explicit dataset name or data
    reference, read in the model's input space)."""
    name = dataset or card.recipe.get("dataset")
    if not name:
        return None
    if dataset:
        extra = data_kwargs(card.input) | {"num_classes": card.num_classes} if is_data_ref(dataset) else {}
        return load_dataset(dataset, task=task, **extra)
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
    base: nn.Module | None = None  # a known common starting point (public backbone) of source and suspect
    base_card: ModelCard | None = None
    base_label: str | None = None  # the base's pool id or reference, for verdicts

    def __post_init__(self):
        self.source.eval()
        self.suspect.eval()
        if self.base is not None:
            self.base.eval()

    @property
    def cache(self) -> TensorCache:
        """Where what a score generates for the source is kept: the pool, else the user's cache directory."""
        return self.pool if self.pool is not None else user_cache()

    @property
    def source_key(self) -> str | None:
        """The source's name in caches: its pool id, else its weights' sha256 (None: unknown weights)."""
        return self.source_id or (self.source_card.sha256[:16] if self.source_card.sha256 else None)

    def source_cache_name(self, kind: str, params: dict[str, Any]) -> str | None:
        """The cache name of what depends only on the source, its data and ``params`` (None: unknown weights)."""
        if not self.source_card.sha256:
            return None
        blob = json.dumps([self.source_card.sha256, self.source_data.name, kind, params], sort_keys=True, default=str)
        return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"

    def source_cached(self, kind: str, params: dict[str, Any], build: Callable[[], torch.Tensor]) -> torch.Tensor:
        """What depends only on the source, its data and ``params`` (fingerprints, reference outputs),
        built once per source and reused across suspects."""
        return self.cache.tensor(self.source_cache_name(kind, params), "source", build)

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
              suspect_data: str | None = None, suspect_task=None, timeout: float = 30.0, base: str | None = None) -> Pair:
    """A :class:`Pair` from two model references (directories, ``POOL_DIR::MODEL_ID``, or for the suspect
    ``endpoint:URL``). ``pool``: the open pool the references name; when None and the source names a pool,
    that pool is opened for this pair (the convenience of an API edge: callers that score many pairs open
    it once and pass it). ``timeout``: seconds an endpoint suspect may take per request. ``base``: a model
    reference for the public backbone both may descend from (read by backbone-aware scores)."""
    if pool is None and (pool_dir := split_ref(source)[0]) is not None:
        pool = Pool.open(pool_dir)
    if parse_endpoint_ref(source) is not None:
        raise BadInput(f"{source}: the source is read white-box; only the suspect may be an endpoint")
    a, a_card = load_ref(source, pool)
    if not getattr(a, "white_box", True):
        raise BadInput(f"{source}: the source is read white-box (gradients, features); a black-box model can only be the suspect")
    a_data = task_data(a_card, data, task)
    if a_data is None:
        raise BadInput("the source model records no dataset; pass --data NAME (and --task)")
    if (url := parse_endpoint_ref(suspect)) is not None:
        b, b_card = _endpoint(url, a_card, a_data, timeout)
    else:
        b, b_card = load_ref(suspect, pool)
    b_data = task_data(b_card, suspect_data, suspect_task)
    p, p_card = load_ref(base, pool) if base is not None else (None, None)
    a_id, b_id = _pool_id(source, pool), _pool_id(suspect, pool)
    label = (_pool_id(base, pool) or base) if base is not None else None
    if a_id is None:  # scores and generated sets are cached for sources of the open pool only
        return Pair(a, b, a_card, b_card, a_data, b_data, base=p, base_card=p_card, base_label=label)
    return Pair(a, b, a_card, b_card, a_data, b_data, a_id, b_id, pool, p, p_card, label)


def _endpoint(url: str, source_card: ModelCard, source_data: TaskData, timeout: float) -> tuple[nn.Module, ModelCard]:
    """A black-box suspect behind ``url``, taken in the source's input space; one query finds its output
    width (a labels-only endpoint answers in the source's label space)."""
    model = EndpointModel(url, timeout=timeout, num_classes=source_card.num_classes)
    width = model(source_data.x_test[:1]).shape[1]
    card = ModelCard("endpoint", width, dict(source_card.input), relation="external", recipe={"endpoint": url})
    return model, card


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


def _validated(init: Callable) -> Callable:
    """``init`` preceded by the check of its arguments (defaults included) against the class's ``param_specs``."""
    sig = inspect.signature(init)
    names = list(sig.parameters)[1:]
    defaults = {n: p.default for n, p in sig.parameters.items() if p.default is not p.empty}

    @functools.wraps(init)
    def checked(self, /, *args, **kwargs):
        cls = type(self)
        check_params(cls.name or cls.__name__, init, defaults | dict(zip(names, args)) | kwargs, cls.param_specs)
        init(self, *args, **kwargs)

    return checked


class PairScore:
    """Base of every score: parameters in ``__init__``, ``score(pair)`` computes, ``params_hash`` keys the cache.

    ``param_specs``: a :class:`~model_pool.params.Range` or :class:`~model_pool.params.Choice` for every
    numeric or choice parameter; every construction (API, CLI, workers) checks names, types and specs."""

    name: str = ""
    needs: str = "outputs"  # what of the suspect: "labels", "outputs" (class scores), "features" or "weights"
    higher_is_related: bool = True
    handles_transfer: bool = False
    measures_closeness: bool = False
    reads_base: bool = False  # reads the pair's base (a given backbone): its results are not cached per pair
    param_specs: ClassVar[dict[str, Spec]] = {}
    execution_params: ClassVar[frozenset[str]] = frozenset()  # how, not what, is computed: not in the cache key

    def __init__(self) -> None:
        """A score without parameters."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__ or cls.__init__ is PairScore.__init__:
            cls.__init__ = _validated(cls.__init__)

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def params_hash(self) -> str:
        what = {k: v for k, v in self.params().items() if k not in self.execution_params}
        blob = json.dumps({"method": self.name, **what}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def score(self, pair: Pair) -> ScoreResult:
        raise NotImplementedError

    def check_access(self, pair: Pair) -> None:
        """NotApplicable when the suspect does not expose what this method needs (an endpoint: black box)."""
        if self.needs in ("weights", "features") and not getattr(pair.suspect, "white_box", True):
            raise NotApplicable(f"{self.name} reads the suspect's {self.needs}; this suspect is a black box (endpoint or ONNX)")
        if self.needs == "outputs" and getattr(pair.suspect, "labels_only", False):
            raise NotApplicable(f"{self.name} needs the suspect's output scores; the endpoint answers labels only")

    def result(self, value: float, **extra) -> ScoreResult:
        return ScoreResult(self.name, float(value), self.higher_is_related, extra)
