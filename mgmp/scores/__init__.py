"""Pair scores by name (SPEC §6): ``create_score("closeness", k=100).score(pair)``.

Every score is a :class:`~mgmp.scores.base.PairScore`; :func:`compute` adds the registry cache
keyed by (pair, method, params hash).
"""
from __future__ import annotations

import time
from pathlib import Path

from model_pool._registry import Registry
from model_pool.errors import MgmpError

SCORES: Registry = Registry("score method")


def create_score(name: str, **params):
    return SCORES.get(name)(**params)


def list_scores() -> list[str]:
    return SCORES.names()


def load_pair(source: str, suspect: str, data: str | None = None, task=None, suspect_data: str | None = None,
              suspect_task=None):
    """A :class:`Pair` from two CLI model references (directories or ``POOL_DIR::MODEL_ID``)."""
    from mgmp.scores.base import Pair, task_data
    from model_pool.refs import load_ref

    a, a_card = load_ref(source)
    b, b_card = load_ref(suspect)
    a_data = task_data(a_card, data, task)
    if a_data is None:
        raise MgmpError("the source model records no dataset; pass --data NAME (and --task)")
    b_data = task_data(b_card, suspect_data, suspect_task)
    pool, a_id = (Path(source.partition("::")[0]), source.partition("::")[2]) if "::" in source else (None, None)
    same_pool = "::" in suspect and pool is not None and Path(suspect.partition("::")[0]).resolve() == pool.resolve()
    b_id = suspect.partition("::")[2] if same_pool else None  # scores are cached only for pairs of one pool
    return Pair(a, b, a_card, b_card, a_data, b_data, a_id, b_id, pool)


def cached_score(reg, method, source_id: str, suspect_id: str):
    """The registry's cached :class:`ScoreResult` of ``method`` on (source, suspect), or None."""
    from mgmp.scores.base import ScoreResult

    hit = reg.get_score(source_id, suspect_id, method.name, method.params_hash())
    if hit is None:
        return None
    return ScoreResult(method.name, hit["value"], method.higher_is_related, hit["extra"], hit["seconds"], True)


def store_score(reg, method, source_id: str, suspect_id: str, result) -> None:
    """Write ``result`` to the registry's scores cache (one transaction)."""
    reg.put_score(source_id, suspect_id, method.name, method.params_hash(), result.value, result.seconds, result.extra)


def timed_score(method, pair):
    """``method.score(pair)`` with its wall time in ``seconds`` (no cache)."""
    t0 = time.perf_counter()
    result = method.score(pair)
    result.seconds = time.perf_counter() - t0
    return result


def compute(method, pair, cache: bool = True):
    """Score ``pair`` with ``method`` (a PairScore), reading and writing the pool's scores cache."""
    from model_pool.registry import PoolRegistry

    use_cache = cache and pair.pool is not None and pair.suspect_id is not None
    if use_cache:
        with PoolRegistry(pair.pool) as reg:
            hit = cached_score(reg, method, pair.source_id, pair.suspect_id)
        if hit is not None:
            return hit
    result = timed_score(method, pair)
    if use_cache:
        with PoolRegistry(pair.pool) as reg:
            store_score(reg, method, pair.source_id, pair.suspect_id, result)
    return result


from mgmp.scores import closeness as _closeness  # noqa: E402,F401
from mgmp.scores import basin as _basin  # noqa: E402,F401
from mgmp.scores import zest as _zest  # noqa: E402,F401
from mgmp.scores import baselines as _baselines  # noqa: E402,F401
from mgmp.scores import weights as _weights  # noqa: E402,F401
