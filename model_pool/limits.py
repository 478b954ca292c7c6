"""Stated limits on untrusted input, checked before anything is allocated (README "Guarantees").

Each limit can be raised (or lowered) with an environment variable ``MGMP_MAX_<NAME>``, e.g.
``MGMP_MAX_NUM_CLASSES=1000000``; a refusal names the variable.
"""
from __future__ import annotations

import os

from model_pool.errors import BadInput, TooLarge

DEFAULTS: dict[str, int] = {
    "num_classes": 100_000,  # classes of one model (its head is num_classes x features)
    "tensor_bytes": 8 << 30,  # total tensor bytes one weights file may declare, or one model's parameters hold
    "header_bytes": 16 << 20,  # a safetensors header (JSON)
    "plan_jobs": 10_000,  # jobs one pool plan may expand to
    "json_depth": 64,  # nesting of any JSON or YAML document mgmp reads
    "json_nodes": 10_000_000,  # values of one JSON or YAML document, YAML aliases expanded ("billion laughs")
    "input_elements": 1 << 24,  # values of one input example a card declares (C*H*W, or a text's max_length)
    "data_rows": 1_000_000,  # rows of a data reference (npz:, csv:, jsonl:, imagefolder:)
    "data_bytes": 4 << 30,  # bytes of one array (npz:) or file (csv:, jsonl:) of a data reference
}


def limit(name: str) -> int:
    """The limit ``name``: ``$MGMP_MAX_<NAME>`` when set, else its default."""
    env = f"MGMP_MAX_{name.upper()}"
    raw = os.environ.get(env)
    if raw is None:
        return DEFAULTS[name]
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise BadInput(f"{env} must be a positive integer, got {raw!r}")
    return value


def check_limit(name: str, value: int, what: str) -> int:
    """``value`` when within the limit ``name``, else ``TooLarge`` naming ``what`` and the override."""
    lim = limit(name)
    if value > lim:
        raise TooLarge(f"{what}: {value:,} exceeds the limit of {lim:,} ({name}; set MGMP_MAX_{name.upper()} to raise it)")
    return value
