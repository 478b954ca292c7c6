"""A null per source: each score's distribution over the source's own independent references (SPEC §13).

H0 = "the suspect is independent of source A". The reference stage's ``independent`` kind (A's architecture, data
and recipe, other seeds) gives K models that are independent of A by construction; a score's values on (A, ref_k)
are its null. A suspect's value becomes a statistic relative to that null, so that a number means the same on a
digits CNN, a ResNet, an EfficientNet or MiniLM:

- z = (v − mean) / sd, oriented so that z > 0 is "more related than A's references" (sd floored at ``SD_FLOOR``);
- tail model: the references are a sample of K from a normal null, so a new independent's value follows the
  predictive Student t: z / sqrt(1 + 1/K) ~ t(K − 1); ``p`` is its upper tail;
- ``p_empirical`` = (1 + #{references at least as related}) / (K + 1): no tail model, but never below 1/(K + 1).

A source fine-tuned from a public pretrained backbone (``public_start``: recorded in its card, or found by its
weights among the packaged roots) gets references fine-tuned from that same backbone with its recipe: "independent
of A" then means "another fine-tune of A's backbone", the population an owner's suspects are drawn from; references
from scratch would sit far below every such model on the output scores and call them all derived.

The references use seeds from ``NULL_SEED`` on, disjoint from the references scores generate for themselves
(closeness's test-set generation, Zest's relative distance, the student detectors start at 1000), so no null model
was seen by the score it calibrates. Weight-space scores keep their own rule (``RAW_COLUMNS``): a from-scratch
reference shares no weights with A (cosine ≈ 0, sd ≈ 0), and a sibling reference shares exactly the backbone the
backbone rule reads (``mgmp.calibration.backbone``); their raw values enter the fused test as they are (a cosine is
already scale-free).
Null values are cached per source (``Pair.source_cached``: the pool's cache, else ``$MGMP_CACHE``), sha256-checked.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from mgmp.scores import Pair, compute, create_score
from mgmp.scores.references import build_references, public_start, reference_specs, require_trainable
from model_pool.card import ModelCard
from model_pool.errors import NotApplicable

# column -> (method, params): the scores read against the source's null. Output-space scores only; Zest at reduced
# settings (32 points x 250 masks, absolute distance: the null replaces the paper's relative distance)
NULL_COLUMNS: dict[str, tuple[str, dict]] = {
    "closeness": ("closeness", {"generate": False}),
    "modeldiff": ("modeldiff", {}),
    "sac": ("sac", {}),
    "dna": ("dna", {}),
    "zest": ("zest", {"relative": False, "n_points": 32, "n_masks": 250}),
}
RAW_COLUMNS: dict[str, tuple[str, dict]] = {"weights": ("weights", {})}
NULL_SEED = 5000
DEFAULT_REFERENCES = 4
SD_FLOOR = 1e-3
# the references stand for "models made like A" only if they perform like A: a gap in accuracy (train or test split
# of A's data) larger than this means A was made otherwise (untrained, another recipe) and its null says nothing
MAX_ACCURACY_GAP = 0.25
ACCURACY_POINTS = 2000  # at most this many inputs of each split measure it


@dataclass
class ScoreNull:
    """One score's values on (A, reference k); NaN where the score does not apply to the pair."""

    values: list[float]
    higher_is_related: bool

    @property
    def finite(self) -> np.ndarray:
        v = np.asarray(self.values, dtype=float)
        return v[np.isfinite(v)]

    @property
    def mean(self) -> float:
        return float(self.finite.mean()) if len(self.finite) else math.nan

    @property
    def sd(self) -> float:
        v = self.finite
        return max(float(v.std(ddof=1)) if len(v) > 1 else 0.0, SD_FLOOR)

    def statistic(self, value: float) -> dict[str, float]:
        """z (positive: more related than the references), its predictive-t p-value and the empirical one."""
        from scipy import stats  # here: scipy.stats costs most of a second to import

        v, k = self.finite, len(self.finite)
        if not math.isfinite(value) or k < 2:
            return {"value": value, "z": math.nan, "p": math.nan, "p_empirical": math.nan}
        sign = 1.0 if self.higher_is_related else -1.0
        z = sign * (value - self.mean) / self.sd
        p = float(stats.t.sf(z / math.sqrt(1 + 1 / k), df=k - 1))
        as_related = int((sign * (v - value) >= 0).sum())
        return {"value": value, "z": float(z), "p": p, "p_empirical": (1 + as_related) / (k + 1)}

    def describe(self) -> dict:
        return {"mean": self.mean, "sd": self.sd, "references": len(self.finite)}


@dataclass
class SourceNull:
    """Every null column of one source over its K references."""

    references: int
    nulls: dict[str, ScoreNull]
    reason: str | None = None  # why there is no null (a source mgmp cannot retrain)
    start: str | None = None  # the public backbone the references were fine-tuned from (None: from scratch)
    accuracy: dict | None = None  # {"source": [train, test], "references": [[train, test], ...]} on A's data

    @property
    def unlike_source(self) -> str | None:
        """Why the references do not stand for models made like A (None when they do, or when unknown): their
        median accuracy on A's data is more than ``MAX_ACCURACY_GAP`` away from A's on either split."""
        if not self.accuracy or not self.accuracy.get("references"):
            return None
        source, refs = np.asarray(self.accuracy["source"]), np.median(np.asarray(self.accuracy["references"]), axis=0)
        gap = np.abs(refs - source)
        if gap.max() <= MAX_ACCURACY_GAP:
            return None
        split = ("train", "test")[int(gap.argmax())]
        return (f"the references reach {refs[gap.argmax()]:.2f} {split} accuracy on A's data and A {source[gap.argmax()]:.2f}: "
                "A was not made like them (untrained, or another recipe), so its outputs cannot be read against them")

    def statistics(self, values: dict[str, float]) -> dict[str, dict[str, float]]:
        """{column: value, z, p, p_empirical, mean, sd} for the suspect's ``values`` (null columns only)."""
        return {c: n.statistic(values.get(c, math.nan)) | n.describe() for c, n in self.nulls.items()}

    def to_dict(self) -> dict:
        return {"references": self.references, "nulls": {c: asdict(n) for c, n in self.nulls.items()},
                "reason": self.reason, "start": self.start, "accuracy": self.accuracy, "unlike_source": self.unlike_source}


def reference_card(card: ModelCard, seed: int) -> ModelCard:
    """The card of a reference: the source's architecture, task and input space, trained from scratch."""
    return ModelCard(card.arch, card.num_classes, dict(card.input), dict(card.arch_kwargs), task=card.task,
                     relation="scratch", seed=seed, recipe=dict(card.recipe))


def source_null(pair: Pair, k: int = DEFAULT_REFERENCES, columns: dict[str, tuple[str, dict]] | None = None,
                on_progress: Callable[[str, int, int], None] | None = None, build: bool = True) -> SourceNull | None:
    """The null of ``pair``'s source (its suspect is not read): K independent references, each scored against the
    source by every column; references and values are cached per source, so later suspects pay nothing for it.
    ``on_progress(stage, done, total)`` reports the reference training and the scoring; ``build=False``: the cached
    null only (None when a column's is not cached)."""
    columns = columns or NULL_COLUMNS
    start = public_start(pair.source, pair.source_card)
    keys = {c: (f"null-{n}", {"params": create_score(n, **p).params_hash(), "k": k, "seed": NULL_SEED}
                | ({"start": start} if start else {})) for c, (n, p) in columns.items()}
    if not build and not all(pair.cache.has(pair.source_cache_name(*key)) for key in keys.values()):
        return None
    try:
        require_trainable(pair.source_card)
    except NotApplicable as e:
        return SourceNull(k, {c: ScoreNull([], create_score(n, **p).higher_is_related) for c, (n, p) in columns.items()},
                          str(e), start)
    specs = reference_specs(pair.source_card, "independent", k, seed=NULL_SEED, start=start)
    refs: list | None = None

    def references() -> list:
        nonlocal refs
        if refs is None:
            cache_dir = pair.cache.generated_dir(pair.source_key)
            refs = build_references(pair.source, pair.source_card, pair.source_data, specs, cache_dir,
                                    on_built=(lambda i: on_progress("training references", i, k)) if on_progress else None)
        return refs

    nulls = {}
    for col, (name, params) in columns.items():
        method = create_score(name, **params)

        def scored(method=method) -> torch.Tensor:
            out = []
            for i, (ref, spec) in enumerate(zip(references(), specs)):
                ref_pair = Pair(pair.source, ref, pair.source_card, reference_card(pair.source_card, spec.seed),
                                pair.source_data, pair.source_data, pair.source_id, None, pair.pool)
                try:
                    out.append(compute(method, ref_pair, cache=False).value)
                except NotApplicable:
                    out.append(math.nan)
                if on_progress:
                    on_progress(f"null of {method.name}", i + 1, k)
            return torch.tensor(out, dtype=torch.float64)

        values = pair.source_cached(*keys[col], scored)
        nulls[col] = ScoreNull(values.tolist(), method.higher_is_related)
    return SourceNull(k, nulls, start=start, accuracy=_accuracies(pair, keys, references))


def _accuracies(pair: Pair, keys: dict, references: Callable[[], list]) -> dict | None:
    """A's and each reference's accuracy on the train and test splits of A's data (cached per source); None where
    the data has no labels to score."""
    from model_pool.train import accuracy

    data = pair.source_data
    if data is None or data.y_train is None or data.y_test is None or not len(data.y_train) or not len(data.y_test):
        return None
    key = ("null-accuracy", {k: v for k, v in next(iter(keys.values()))[1].items() if k != "params"})

    def measured() -> torch.Tensor:
        models = [pair.source, *references()]
        n = ACCURACY_POINTS
        return torch.tensor([[accuracy(m, data.x_train[:n], data.y_train[:n]), accuracy(m, data.x_test[:n], data.y_test[:n])]
                             for m in models], dtype=torch.float64)

    acc = pair.source_cached(*key, measured).tolist()
    return {"source": acc[0], "references": acc[1:]}
