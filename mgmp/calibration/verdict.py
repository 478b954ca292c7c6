"""The fused verdict as a test with a stated false-positive rate (SPEC §13).

Features of a pair (all domain-free): for each null column, the suspect's z against the source's own references
(:mod:`mgmp.calibration.null`), compressed as sign(z)·log(1 + |z|) so that a fine-tune 300 sds away and one 30 sds
away weigh alike; for each raw column (weight cosine) its value. A score that does not apply is 0 (no evidence).
A logistic regression over them (fit on pairs pooled over every in-house domain; the MGMP head f_p is the other
combiner, :mod:`mgmp.calibration.head`) gives P; the test's level comes
from the same pooled *independent* pairs: p = (1 + #{independents with P' ≥ P}) / (n + 1), and the verdict is
"derived" iff p ≤ α. The outputs are read only where they can be: a suspect that answers another task than A's
(``Pair.same_task``) cannot be compared with A's references on A's task, and a source its references do not perform
like (``SourceNull.unlike_source``) has no null; there the weights alone decide (:func:`weights_alone`), and the
first case trains no references. The package ships one such test (``default_verdict.json``, written by
``mgmp calibrate --domains``); a pool's own (``mgmp calibrate POOL``) overrides it with ``--calibration``. A causal
LM source is decided by :mod:`mgmp.calibration.bonferroni` instead (no LM pool is large enough to fit on).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mgmp._jsonio import write_json
from mgmp.calibration.backbone import SiblingRule, backbone_verdict
from mgmp.calibration.bonferroni import BonferroniTest, lm_test
from mgmp.calibration.fusion import FusedScore, score_values
from mgmp.calibration.head import KIND as HEAD
from mgmp.calibration.head import HeadFusion
from mgmp.calibration.null import NULL_COLUMNS, RAW_COLUMNS, source_null
from mgmp.calibration.store import Calibration
from mgmp.scores import Pair
from model_pool.errors import BadInput
from model_pool.guards import load_json
from model_pool.pool import Pool

DEFAULT_ALPHA = 0.01
WEIGHTS_COLUMN = "weights"
WEIGHTS_DERIVED = 0.5  # weight cosine that says "derived" when the outputs cannot be read (as a public start's rule)
MIN_OWN_INDEPENDENTS = 20  # a pool's own test fit on fewer independent pairs states no level (its tail is a guess)
DEFAULT_PATH = Path(__file__).with_name("default_verdict.json")
FORMAT = 1
COMBINERS = ("logistic", HEAD)  # the learned combination: logistic fusion, or the MGMP head f_p (mgmp.calibration.head)


def _out_of_fold(make: Callable, x: np.ndarray, related: np.ndarray, groups: np.ndarray, folds: int = 5) -> np.ndarray:
    """P of every pair from a model fit without its group's pairs (GroupKFold; with one group, or where a fold's
    training part holds one class only, the model fit on all)."""
    from sklearn.model_selection import GroupKFold

    p = make().fit(x, related).predict_proba(x)
    if len(set(groups)) < 2:
        return p
    for train, test in GroupKFold(n_splits=min(folds, len(set(groups)))).split(x, related, groups):
        if related[train].any() and not related[train].all():
            p[test] = make().fit(x[train], related[train]).predict_proba(x[test])
    return p


def compress(z: np.ndarray) -> np.ndarray:
    """sign(z)·log(1 + |z|), NaN -> 0."""
    z = np.nan_to_num(np.asarray(z, dtype=float), nan=0.0, posinf=1e6, neginf=-1e6)
    return np.sign(z) * np.log1p(np.abs(z))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def pair_features(against: dict[str, dict], raw: dict[str, float], null_columns, raw_columns) -> np.ndarray:
    """One pair's feature row: compressed z of ``null_columns`` (from ``against``: each score against its null),
    then ``raw_columns``' values."""
    z = [against.get(c, {}).get("z", math.nan) for c in null_columns]
    r = np.nan_to_num(np.array([raw.get(c, math.nan) for c in raw_columns], dtype=float), nan=0.0)
    return np.concatenate([compress(np.array(z, dtype=float)), r])


@dataclass
class FusedTest:
    """A learned fusion of the normalised features (logistic, or the MGMP head) plus the pooled independents' P that
    set its level."""

    null_columns: dict[str, tuple[str, dict]]
    raw_columns: dict[str, tuple[str, dict]]
    model: FusedScore | HeadFusion
    negatives: list[float]  # sorted P of the independent pairs it was fitted on
    fitted_on: dict[str, Any] = field(default_factory=dict)
    backbone: bool = True  # a derived verdict is asked the backbone question (mgmp.calibration.backbone)

    @property
    def tail(self) -> tuple[float, float]:
        """Mean and sd of logit(P) over the fitted independents: the normal tail model of ``p_value`` when they are
        too few for the level asked."""
        lg = _logit(np.asarray(self.negatives))
        return float(lg.mean()), max(float(lg.std(ddof=1)) if len(lg) > 1 else 1.0, 1e-6)

    @property
    def columns(self) -> list[str]:
        return [*self.null_columns, *self.raw_columns]

    @classmethod
    def fit(cls, x: np.ndarray, related: np.ndarray, null_columns=None, raw_columns=None, C: float = 1.0,
            fitted_on: dict | None = None, combiner: str = "logistic", groups=None) -> "FusedTest":
        """``groups`` (one per pair, e.g. its domain and source): where given, the MGMP head's independents get their
        P out of fold (each group predicted by a head fit on the others), since a flexible fit puts its own
        training independents lower than any new one and the level would not hold; the logistic's in-sample P
        are kept (seven parameters over hundreds of pairs)."""
        null_columns, raw_columns = dict(null_columns or NULL_COLUMNS), dict(raw_columns or RAW_COLUMNS)
        related = np.asarray(related, dtype=bool)
        if related.all() or not related.any():
            raise BadInput("the fused test needs both derived and independent pairs to fit on")
        cols = [*null_columns, *raw_columns]
        if combiner not in COMBINERS:
            raise BadInput(f"unknown combiner {combiner!r}; known: {', '.join(COMBINERS)}")
        make = (lambda: HeadFusion(cols)) if combiner == HEAD else (
            lambda: FusedScore(cols, [True] * len(cols), C=C, indicators=False))
        model = make().fit(x, related)
        if combiner == HEAD and groups is not None:
            negatives = np.sort(_out_of_fold(make, x, related, np.asarray(groups))[~related]).tolist()
        else:
            negatives = np.sort(model.predict_proba(x[~related])).tolist()
        return cls(null_columns, raw_columns, model, negatives,
                   (fitted_on or {}) | {"pairs": int(len(related)), "independent_pairs": int((~related).sum())})

    def probability(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(np.atleast_2d(x))

    def p_value(self, prob: np.ndarray | float, alpha: float = DEFAULT_ALPHA) -> tuple[np.ndarray, str]:
        """The p-value of fused ``prob`` under H0 and the tail model used: the share of the fitted independents at
        least as "derived" (with the +1 of a permutation test) when they are enough to reach ``alpha``, else the
        normal tail of their logit(P)."""
        neg = np.asarray(self.negatives)
        if self.min_alpha() <= alpha:
            above = len(neg) - np.searchsorted(neg, np.asarray(prob, dtype=float), side="left")
            return (1 + above) / (1 + len(neg)), f"empirical over {len(neg)} independent pairs"
        from scipy import stats  # here: scipy.stats costs most of a second to import

        mean, sd = self.tail
        return (stats.norm.sf((_logit(np.asarray(prob, dtype=float)) - mean) / sd),
                f"normal tail of logit P over {len(neg)} independent pairs (too few for an empirical {alpha:g})")

    def decide(self, against: dict[str, dict], values: dict[str, float], alpha: float) -> tuple[float, float, str]:
        """(P, its p-value, the tail model) of a pair's scores against the source's null and its raw values."""
        prob = float(self.probability(pair_features(against, values, self.null_columns, self.raw_columns))[0])
        p, tail = self.p_value(prob, alpha)
        return prob, float(p), tail

    def min_alpha(self) -> float:
        """The smallest level the empirical p-value can state (one over the independents + 1)."""
        return 1 / (1 + len(self.negatives))

    def to_dict(self) -> dict:
        return {"format": FORMAT, "null_columns": self.null_columns, "raw_columns": self.raw_columns,
                "model": self.model.describe(), "negatives": self.negatives, "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, d: dict) -> "FusedTest":
        if d.get("format") != FORMAT:
            raise BadInput(f"fused test format {d.get('format')!r} is not {FORMAT}; refit it (mgmp calibrate --domains)")
        cols = lambda m: {c: (v[0], dict(v[1])) for c, v in m.items()}  # noqa: E731  JSON lists back to tuples
        model = HeadFusion if d["model"].get("kind") == HEAD else FusedScore
        return cls(cols(d["null_columns"]), cols(d["raw_columns"]), model.from_dict(d["model"]),
                   list(d["negatives"]), dict(d.get("fitted_on", {})))

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path | None = None) -> "FusedTest":
        """The test at ``path``, by default the one the package ships."""
        path = Path(path or DEFAULT_PATH)
        if not path.is_file():
            raise BadInput(f"{path}: no fused test here (the package's default is written by `mgmp calibrate --domains`)")
        return cls.from_dict(load_json(path.read_text(), str(path)))


Test = FusedTest | BonferroniTest


def pool_test(pool: Pool | None, lm: bool = False, asked: bool = False) -> tuple[Test, str]:
    """The test a pool decides with: its own fused test (``mgmp calibrate``) when fit on at least
    ``MIN_OWN_INDEPENDENTS`` independent pairs or ``asked`` for by name (``--calibration``, then with a warning), else
    the one the package ships; for a causal LM source (``lm``), the Bonferroni LM test; with the label printed beside
    its verdicts."""
    if lm:
        return lm_test(), "LM test (Bonferroni, nothing fitted)"
    own = Calibration.load(pool).fused_test
    if own is None:
        return FusedTest.load(), "shipped calibration"
    label, n = f"calibration of {pool.root}", own["fitted_on"].get("independent_pairs", 0)
    if n >= MIN_OWN_INDEPENDENTS:
        return FusedTest.from_dict(own), label
    few = f"{n} independent pairs, fewer than {MIN_OWN_INDEPENDENTS}: its level is not established"
    return (FusedTest.from_dict(own), f"{label} ({few})") if asked else \
        (FusedTest.load(), f"shipped calibration (the pool's own test has {few})")


def weights_alone(cosine: float, other_task: bool = False) -> tuple[bool, str]:
    """The verdict when only the weights can speak: derived iff they share A's weights (cosine ≥ ``WEIGHTS_DERIVED``);
    otherwise cannot tell (a student or a model made another way would not show there), except on ``other_task``,
    where inherited weights are the only way to derive a model from A: not derived when they are comparable."""
    why = "another task: outputs not read" if other_task else "outputs not read"
    if math.isfinite(cosine) and cosine >= WEIGHTS_DERIVED:
        return True, f"derived from the source (weights: cosine {cosine:.3f} >= {WEIGHTS_DERIVED}; {why})"
    if other_task and math.isfinite(cosine):
        return False, f"not derived (the weights share nothing with the source: cosine {cosine:.3f}; {why})"
    shown = f"{cosine:.3f}" if math.isfinite(cosine) else "not comparable"
    return False, f"cannot tell (the weights share nothing with the source: cosine {shown}; {why})"


OTHER_TASK = "the suspect answers another task than the source's: its outputs are not read against A's references"


def decide(test: Test, against: dict[str, dict], values: dict[str, float], alpha: float, unlike: str | None,
           other_task: bool = False) -> tuple[bool, str, float, float, str]:
    """(derived?, its text, P, p-value, tail) of a pair's scores: the test's where the null describes the pair; where
    it does not (``unlike``: why), the outputs decide nothing and the weights alone may."""
    if unlike:
        derived, text = weights_alone(values.get(WEIGHTS_COLUMN, math.nan), other_task=other_task)
        return derived, text, math.nan, math.nan, unlike
    prob, p, tail = test.decide(against, values, alpha)
    return p <= alpha, "derived from the source" if p <= alpha else "not derived", prob, p, tail


def verdict(pair: Pair, test: Test, alpha: float = DEFAULT_ALPHA, references: int = 4,
            rule: SiblingRule | None = None, cache: bool = True, max_queries: int | None = None,
            on_progress: Callable[[str, int, int], None] | None = None, backbone: bool = True) -> dict:
    """The test of H0 "``pair.suspect`` is independent of ``pair.source``" at level ``alpha``: "derived" (or the
    backbone rule's "sibling" / "cannot tell" where A's starting point is known, unless ``backbone`` is False),
    else "not derived"; with P, the p-value and every score against its null."""
    if not 0 < alpha < 1:
        raise BadInput(f"--alpha must be in (0, 1), got {alpha}")
    if getattr(pair.source, "is_lm", False) and not any(c.startswith("lm_") for c in test.null_columns):
        raise BadInput("this fused test was fitted on classifiers and reads no language-model score; a causal LM "
                       "source is decided by the LM test (leave out --calibration)")
    null = source_null(pair, references, test.null_columns, on_progress) if pair.same_task else None
    unlike = null.unlike_source if null is not None else OTHER_TASK
    read = test.null_columns if null is not None else {c: v for c, v in test.null_columns.items() if c == WEIGHTS_COLUMN}
    values = score_values(pair, read | test.raw_columns, cache, max_queries)
    against = null.statistics(values) if null is not None else {}
    derived, text, prob, p, tail = decide(test, against, values, alpha, unlike, other_task=null is None)
    asked = derived and backbone and test.backbone
    start = backbone_verdict(pair, rule or SiblingRule.from_dict(None), cache=cache) if asked else None
    text = start["text"] if start else text
    return {"verdict": text, "derived": derived, "P": prob, "p_value": p, "alpha": alpha, "tail": tail,
            "references": references if null is not None else 0,
            "references_from": (null.start or "scratch") if null is not None else None,
            "null_missing": null.reason if null is not None else None,
            "null_unlike_source": unlike, "accuracy": null.accuracy if null is not None else None, "scores": against,
            "raw": {c: values[c] for c in test.raw_columns}, "backbone": start, "fitted_on": test.fitted_on}
