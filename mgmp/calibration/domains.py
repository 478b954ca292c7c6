"""In-house domains as rows of the fused test: every calibration/evaluation pair of a pool, with its features
against its source's null (``mgmp calibrate --domains`` fits the shipped test on them; ``mgmp bench transfer``
holds one domain out at a time)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from rich.progress import Progress

from mgmp.calibration.fusion import score_values
from mgmp.calibration.null import DEFAULT_REFERENCES, NULL_COLUMNS, RAW_COLUMNS, source_null
from mgmp.calibration.verdict import FusedTest, pair_features
from mgmp.scores import load_pair
from model_pool.errors import BadInput
from model_pool.pool import Pool


@dataclass
class DomainRows:
    """One domain's pairs: features (pairs x columns), truth, the relation row and split of each pair, and costs."""

    domain: str
    x: np.ndarray
    related: np.ndarray
    rows: list[str]
    splits: list[str]
    sources: list[str]
    null_columns: dict[str, tuple[str, dict]] = field(default_factory=lambda: dict(NULL_COLUMNS))
    raw_columns: dict[str, tuple[str, dict]] = field(default_factory=lambda: dict(RAW_COLUMNS))
    source_seconds: dict[str, float] = field(default_factory=dict)  # per source: references + their scores
    pair_seconds: list[float] = field(default_factory=list)  # per pair: wall time of the suspect's scores (cache hits are ~0)
    unlike: dict[str, str] = field(default_factory=dict)  # sources whose references do not perform like them: why

    def select(self, mask: np.ndarray) -> "DomainRows":
        pick = lambda v: [a for a, m in zip(v, mask) if m]  # noqa: E731
        return DomainRows(self.domain, self.x[mask], self.related[mask], pick(self.rows), pick(self.splits),
                          pick(self.sources), self.null_columns, self.raw_columns, self.source_seconds,
                          pick(self.pair_seconds), self.unlike)


def score_domain(pool: Pool, specs: list, references: int = DEFAULT_REFERENCES, null_columns=None, raw_columns=None,
                 on_source: Callable[[str], None] | None = None) -> DomainRows:
    """Features of the pairs ``specs`` (``mgmp.calibration.fit.PairSpec``) of ``pool``, the sources' nulls built
    first (cached in the pool, so a second run reads them back)."""
    null_columns, raw_columns = dict(null_columns or NULL_COLUMNS), dict(raw_columns or RAW_COLUMNS)
    nulls, source_seconds = {}, {}
    for s in sorted({sp.source for sp in specs}):
        if on_source:
            on_source(s)
        t0 = time.perf_counter()
        nulls[s] = source_null(load_pair(pool.ref(s), pool.ref(s), pool=pool), references, null_columns)
        source_seconds[s] = time.perf_counter() - t0
    x, seconds = [], []
    with Progress(transient=True) as bar:
        task = bar.add_task(f"{pool.root.name}: scoring pairs", total=len(specs))
        for sp in specs:
            pair = load_pair(pool.ref(sp.source), pool.ref(sp.suspect), pool=pool)
            t0 = time.perf_counter()
            values = score_values(pair, null_columns | raw_columns)
            seconds.append(time.perf_counter() - t0)
            x.append(pair_features(nulls[sp.source].statistics(values), values, null_columns, raw_columns))
            bar.advance(task)
    return DomainRows(pool.root.name, np.array(x).reshape(len(specs), -1), np.array([s.related for s in specs]),
                      [s.row for s in specs], [s.split or "" for s in specs], [s.source for s in specs],
                      null_columns, raw_columns, source_seconds, seconds,
                      {s: n.unlike_source for s, n in nulls.items() if n.unlike_source})


def test_columns(methods: dict[str, tuple[str, dict]]) -> tuple[dict, dict]:
    """The fused test's null and raw columns whose score is among ``methods`` (a pool calibrated on some scores
    gets a test over those)."""
    names = {name for name, _ in methods.values()}
    return ({c: v for c, v in NULL_COLUMNS.items() if v[0] in names},
            {c: v for c, v in RAW_COLUMNS.items() if v[0] in names})


def fit_test(domains: list[DomainRows], references: int = DEFAULT_REFERENCES, C: float = 1.0,
             combiner: str = "logistic") -> FusedTest:
    """The fused test fit on the pairs of ``domains`` pooled (all scored with the same columns)."""
    first = domains[0]
    if any((d.null_columns, d.raw_columns) != (first.null_columns, first.raw_columns) for d in domains):
        raise BadInput("the domains were scored with different columns; score them alike to pool them")
    x = np.concatenate([d.x for d in domains])
    related = np.concatenate([d.related for d in domains])
    return FusedTest.fit(x, related, first.null_columns, first.raw_columns, C,
                         {"domains": {d.domain: int(len(d.related)) for d in domains}, "references": references,
                          "combiner": combiner}, combiner, [f"{d.domain}/{s}" for d in domains for s in d.sources])
