"""Index kinds and their FAISS factory strings (numpy only, so the CLI can list the kinds cheaply).

``flat`` = ``IDMap2,Flat`` (exact), ``hnsw`` = ``IDMap2,HNSW32,Flat``, ``ivfpq`` =
``IDMap2,IVF{nlist},PQ{m}x{bits},RFlat`` sized to the number of vectors.
"""
from __future__ import annotations

import numpy as np

from model_pool.errors import BadInput
from model_pool.params import Choice

KINDS = ("flat", "hnsw", "ivfpq")
KIND = Choice(*KINDS)  # the spec of every ``kind`` option


def factory(kind: str, n: int, dim: int) -> str:
    """The FAISS factory string of ``kind`` for ``n`` vectors of ``dim`` dimensions."""
    if kind == "flat":
        return "IDMap2,Flat"
    if kind == "hnsw":
        return "IDMap2,HNSW32,Flat"
    if kind == "ivfpq":
        nlist = max(1, min(4096, int(4 * np.sqrt(n)), n // 39))
        m = next(m for m in (32, 16, 8, 4, 2, 1) if dim % m == 0)
        bits = int(max(1, min(8, np.log2(max(2, n // 39)))))  # k-means needs ~39 points per centroid
        return f"IDMap2,IVF{nlist},PQ{m}x{bits},RFlat"
    raise BadInput(f"unknown index kind {kind!r}; known: {', '.join(KINDS)}")
