"""Pair scores by name (SPEC §6): ``create_score("closeness", k=100).score(pair)``.

Every score is a :class:`~mgmp.scores.base.PairScore`, a function of the pair alone; what it
generates for a source goes to ``pair.cache`` (the pool, else the process). :func:`compute` adds
the pool's score cache keyed by (pair, method, params hash).
"""
from __future__ import annotations

import time

from mgmp.representations.outputs import QueryCounter
from mgmp.scores.base import Pair, PairScore, ScoreResult, load_pair, task_data
from model_pool._registry import Registry
from model_pool.pool import Pool

SCORES: Registry = Registry("score method")

__all__ = ["SCORES", "Pair", "PairScore", "ScoreResult", "compute", "create_score", "list_scores", "load_pair",
           "task_data", "timed_score"]


def create_score(name: str, **params) -> PairScore:
    """The score ``name`` with ``params`` (``BadInput`` for an unknown name, or a parameter its specs refuse)."""
    return SCORES.get(name)(**params)


def list_scores() -> list[str]:
    return SCORES.names()


def cached_score(pool: Pool, method: PairScore, source_id: str, suspect_id: str) -> ScoreResult | None:
    """The pool's cached :class:`ScoreResult` of ``method`` on (source, suspect), or None."""
    hit = pool.registry.get_score(source_id, suspect_id, method.name, method.params_hash())
    if hit is None:
        return None
    return ScoreResult(method.name, hit["value"], method.higher_is_related, hit["extra"], hit["seconds"], True)


def store_score(pool: Pool, method: PairScore, source_id: str, suspect_id: str, result: ScoreResult) -> None:
    """Write ``result`` to the pool's scores cache (one transaction)."""
    pool.registry.put_score(source_id, suspect_id, method.name, method.params_hash(), result.value, result.seconds,
                            result.extra)


def timed_score(method: PairScore, pair: Pair, max_queries: int | None = None) -> ScoreResult:
    """``method.score(pair)`` with its wall time in ``seconds`` and the suspect inputs it queried in
    ``extra["queries"]`` (no cache); more than ``max_queries`` stops it with BadInput."""
    method.check_access(pair)
    t0 = time.perf_counter()
    with QueryCounter(pair.suspect, max_queries) as counter:
        result = method.score(pair)
    result.seconds = time.perf_counter() - t0
    result.extra["queries"] = counter.n
    return result


def compute(method: PairScore, pair: Pair, cache: bool = True, max_queries: int | None = None) -> ScoreResult:
    """Score ``pair`` with ``method``, reading and writing the pool's scores cache for pairs of one pool."""
    # a score that reads a base given with the pair depends on that base, which the cache key does not name
    use_cache = cache and pair.pool is not None and pair.suspect_id is not None and not (
        method.reads_base and pair.base is not None)
    if use_cache and (hit := cached_score(pair.pool, method, pair.source_id, pair.suspect_id)) is not None:
        return hit
    result = timed_score(method, pair, max_queries)
    if use_cache:
        store_score(pair.pool, method, pair.source_id, pair.suspect_id, result)
    return result


from mgmp.scores import baselines as _baselines  # noqa: E402,F401
from mgmp.scores import basin as _basin  # noqa: E402,F401
from mgmp.scores import cae as _cae  # noqa: E402,F401
from mgmp.scores import closeness as _closeness  # noqa: E402,F401  (registration)
from mgmp.scores import dataset_inference as _dataset_inference  # noqa: E402,F401
from mgmp.scores import generated as _generated  # noqa: E402,F401
from mgmp.scores import inheritance as _inheritance  # noqa: E402,F401
from mgmp.scores import lm as _lm  # noqa: E402,F401
from mgmp.scores import weights as _weights  # noqa: E402,F401
from mgmp.scores import zest as _zest  # noqa: E402,F401
