"""Helpers shared by the command modules: the pool a reference names, ``--param`` and id lists."""
from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterator

from model_pool.errors import BadInput
from model_pool.pool import Pool, split_ref


@contextmanager
def pool_of(ref: str) -> Iterator[Pool | None]:
    """The pool a model reference names (``POOL_DIR::MODEL_ID``), open for the block; None for a directory."""
    pool_dir, _ = split_ref(ref)
    if pool_dir is None:
        yield None
        return
    with Pool.open(pool_dir) as pool:
        yield pool


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["k=50", "generate=false"]`` -> {"k": 50, "generate": False} (values parsed as JSON when they parse,
    else kept as strings; the method's own specs check them). A key given twice is refused, not overwritten."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"--param expects KEY=VALUE, got {item!r}")
        if key in out:
            raise BadInput(f"--param {key} is given twice")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
        except RecursionError:
            raise BadInput(f"--param {key}: the value is nested too deeply") from None
    return out


def id_list(text: str | None) -> list[str] | None:
    """``"a, b"`` -> ["a", "b"] (None when not given)."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def with_params(methods: dict[str, dict], items: list[str] | None) -> dict[str, dict]:
    """``methods`` ({method or column: params}) with ``--param METHOD.KEY=VALUE`` applied (the last dot splits:
    column names may hold dots)."""
    for key, value in parse_params(items).items():
        name, _, param = key.rpartition(".")
        if name not in methods or not param:
            raise BadInput(f"--param {key}: expected METHOD.KEY=VALUE with METHOD one of {', '.join(methods)}")
        methods[name][param] = value
    return methods


def tuned_columns(columns: dict[str, tuple[str, dict]], items: list[str] | None) -> dict[str, tuple[str, dict]]:
    """Score columns ({column: (method, params)}) with ``--param COLUMN.KEY=VALUE`` applied."""
    tuned = with_params({col: dict(params) for col, (_, params) in columns.items()}, items)
    return {col: (name, tuned[col]) for col, (name, _) in columns.items()}
