"""All-pairs scores of one pool: a scheduler over (source, suspect) pairs on any executor.

Workers only load the two models (safetensors) and compute; the driver reads and writes the
registry's scores cache, so cached pairs are never recomputed and scores have one SQLite writer.
The first pair of each source runs before that source's other pairs, so what a method generates
once per source (closeness test sets, Zest references) is built by one worker and then reused.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from mgmp.scores import cached_score, create_score, load_pair, store_score, timed_score
from mgmp.scores.base import ScoreResult
from model_pool.dag import run_dag
from model_pool.errors import BadInput, NotApplicable, first_line, one_line
from model_pool.executors import check_executor, create_executor
from model_pool.pool import Pool

PairIds = tuple[str, str]  # (source id, suspect id)


@dataclass
class MatrixReport:
    """Scores of every pair (NaN where the method does not apply or the pair failed)."""

    pool: str
    method: str
    params: dict[str, Any]
    params_hash: str
    sources: list[str]
    suspects: list[str]
    values: dict[PairIds, float] = field(default_factory=dict)
    seconds_per_pair: dict[PairIds, float] = field(default_factory=dict)
    cached: list[PairIds] = field(default_factory=list)
    computed: list[PairIds] = field(default_factory=list)
    not_applicable: dict[PairIds, str] = field(default_factory=dict)
    failed: dict[PairIds, str] = field(default_factory=dict)
    executor: str = "local"
    workers: int = 1
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def value(self, source: str, suspect: str) -> float:
        return self.values.get((source, suspect), math.nan)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("values", "seconds_per_pair", "not_applicable", "failed"):
            d[k] = [{"source": a, "suspect": b, "value": v} for (a, b), v in getattr(self, k).items()]
        for k in ("cached", "computed"):
            d[k] = [{"source": a, "suspect": b} for a, b in getattr(self, k)]
        d["matrix"] = {a: {b: self.values.get((a, b)) for b in self.suspects if b != a} for a in self.sources}
        return d | {"ok": self.ok, "n_cached": len(self.cached), "n_computed": len(self.computed)}


def score_pair(pool_dir: str, source: str, suspect: str, method: str, params: dict) -> dict:
    """Worker side: score one pool pair without touching the scores cache; returns ScoreResult.to_dict()."""
    with Pool.open(pool_dir) as pool:
        pair = load_pair(pool.ref(source), pool.ref(suspect), pool=pool)
        return timed_score(create_score(method, **params), pair).to_dict()


def plan_pairs(ids: list[str], sources: list[str] | None, suspects: list[str] | None) -> tuple[list[str], list[str], list[PairIds]]:
    """Sources, suspects (default: every model) and their pairs, a model never paired with itself."""
    for name, chosen in (("source", sources), ("suspect", suspects)):
        unknown = [m for m in chosen or [] if m not in ids]
        if unknown:
            raise BadInput(f"unknown {name} model {unknown[0]!r} (not in the pool)")
    sources, suspects = list(sources or ids), list(suspects or ids)
    pairs = [(a, b) for a in sources for b in suspects if a != b]
    if not pairs:
        raise BadInput("no pairs to score: give at least two distinct models")
    return sources, suspects, pairs


def pair_graph(pairs: list[PairIds]) -> dict[PairIds, list[PairIds]]:
    """{pair: predecessors}: each source's first pair first, its other pairs after it (in parallel)."""
    first: dict[str, PairIds] = {}
    graph = {}
    for a, b in pairs:
        head = first.setdefault(a, (a, b))
        graph[(a, b)] = [] if head == (a, b) else [head]
    return graph


def score_matrix(pool: Pool, method: str, params: dict | None = None, sources: list[str] | None = None,
                 suspects: list[str] | None = None, *, executor: str = "local", workers: int = 1,
                 address: str | None = None, on_event: Callable[[str, PairIds | None, dict], None] | None = None) -> MatrixReport:
    """Score every (source, suspect) pair of ``pool`` with ``method``; cached pairs are read, the rest
    computed on ``executor`` (see :func:`model_pool.executors.create_executor`) and cached."""
    t0 = time.perf_counter()
    check_executor(executor, workers, address)
    params = dict(params or {})
    scorer = create_score(method, **params)
    emit = on_event or (lambda kind, pair, info: None)
    pool_dir = str(pool.root.resolve())
    sources, suspects, pairs = plan_pairs(pool.registry.ids(), sources, suspects)
    report = MatrixReport(str(pool.root), method, scorer.params(), scorer.params_hash(), sources, suspects,
                          executor=executor, workers=workers)
    emit("planned", None, {"pairs": len(pairs)})
    todo = []
    for a, b in pairs:
        hit = cached_score(pool, scorer, a, b)
        if hit is None:
            todo.append((a, b))
            continue
        report.values[(a, b)], report.seconds_per_pair[(a, b)] = hit.value, hit.seconds
        report.cached.append((a, b))
        emit("cached", (a, b), {"value": hit.value})

    def finish(pair: PairIds, result: dict | None, error: BaseException | None) -> None:
        if isinstance(error, NotApplicable):
            report.not_applicable[pair] = first_line(error, None)
            emit("not_applicable", pair, {"reason": report.not_applicable[pair]})
        elif error is not None:
            report.failed[pair] = one_line(error)
            emit("failed", pair, {"error": report.failed[pair]})
        else:
            res = ScoreResult(**result)
            store_score(pool, scorer, *pair, res)
            report.values[pair], report.seconds_per_pair[pair] = res.value, res.seconds
            report.computed.append(pair)
            emit("computed", pair, {"value": res.value, "seconds": res.seconds})

    if todo:
        ex = create_executor(executor, workers, address)
        try:
            run_dag(pair_graph(todo), ex, lambda p: (score_pair, pool_dir, *p, method, params), finish)
        finally:
            ex.shutdown(cancel_futures=True)
    report.seconds = round(time.perf_counter() - t0, 2)
    return report
