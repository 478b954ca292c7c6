"""Where user-side datasets live, and the one error for a dataset that is not there."""
from __future__ import annotations

import os
from pathlib import Path

from model_pool.errors import BadInput


def data_root(root: str | Path | None) -> Path:
    return Path(root or os.environ.get("MGMP_DATA") or Path.home() / ".cache" / "mgmp" / "data")


def missing(name: str, path: Path) -> BadInput:
    return BadInput(f"{name}: no data at {path}; pass download=True (CLI: data: {{download: true}}) to fetch it once")
