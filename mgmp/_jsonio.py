"""Atomic file output (temp file + fsync + rename) for every command's ``--json PATH`` and reports."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model_pool.atomic import write_file


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` so that readers see either the old file or the complete new one."""
    return write_file(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str))
