"""``mgmp bench reuse``: what the first suspect of a source costs against the later ones, per method.

Everything that depends only on the source (closeness's generated test set and reference models,
Zest's source signature and reference distance, IPGuard's fingerprints, ModelDiff's perturbed inputs
and DDV, SAC's correlation matrix, the source's gram DNA) is computed for the first suspect and read
from the cache for the others: in the source's pool, or outside a pool in a cache directory (a fresh
one per method here, so the first suspect pays all of that method's per-source work, even what another
method would share, e.g. closeness's independent references that Zest also uses). Works on any model
references, imported ones included.
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Any
from unittest import mock

from mgmp.scores import create_score, load_pair, timed_score
from model_pool.errors import NotApplicable

REUSE_METHODS = {"closeness": {}, "zest": {}, "ipguard": {}, "modeldiff": {}, "sac": {}, "dna": {}}


def run(source: str, suspects: list[str], methods: dict[str, dict] | None = None, data: str | None = None) -> dict[str, Any]:
    """Seconds of each method on each suspect in order, with a cold cache for the first."""
    rows = {}
    for name, params in (methods or REUSE_METHODS).items():
        with tempfile.TemporaryDirectory(prefix="mgmp-reuse-") as cache, mock.patch.dict(os.environ, {"MGMP_CACHE": cache}):
            rows[name] = _one_method(name, params, source, suspects, data)
    return {"source": source, "suspects": suspects, "rows": rows}


def _one_method(name: str, params: dict, source: str, suspects: list[str], data: str | None) -> dict[str, Any]:
    method, seconds, values, row = create_score(name, **params), [], [], {}
    for suspect in suspects:
        pair = load_pair(source, suspect, data=data)
        try:
            t0 = time.perf_counter()
            values.append(timed_score(method, pair).value)
            seconds.append(time.perf_counter() - t0)
        except NotApplicable as e:
            values.append(None)
            seconds.append(None)
            row["not_applicable"] = str(e)
    later = [s for s in seconds[1:] if s is not None]
    ratio = (sum(later) / len(later)) / seconds[0] if later and seconds[0] else None
    return row | {"params": method.params(), "seconds": seconds, "values": values, "later_over_first": ratio}


def markdown(result: dict) -> str:
    lines = ["| method | first suspect (s) | later suspects (s, each) | later / first |", "|---|---|---|---|"]
    for name, r in result["rows"].items():
        first, later = r["seconds"][0], r["seconds"][1:]
        fmt = lambda s: "n/a" if s is None else f"{s:.2f}"  # noqa: E731
        ratio = "-" if r["later_over_first"] is None else f"{r['later_over_first']:.3f}"
        lines.append(f"| {name} | {fmt(first)} | {', '.join(fmt(s) for s in later)} | {ratio} |")
    return "\n".join(lines)
