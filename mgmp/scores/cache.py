"""Where scores keep what they generate: tensors (test sets, signatures) and generated models.

Pool sources use ``POOL/cache/<kind>/`` with tensors registered in the registry's probes table;
other sources fall back to an in-process memo, so nothing is written outside a pool directory.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from model_pool.errors import IntegrityError
from model_pool.io import sha256_file
from model_pool.registry import PoolRegistry

_MEMO: dict[str, torch.Tensor] = {}


def cached_tensor(pool: Path | None, name: str | None, domain: str, build: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``build()`` once per ``name``: stored as safetensors beside the pool and recorded (with sha256) as a probe.
    ``name=None`` (inputs without a content hash to key them) builds every time."""
    if name is None:
        return build()
    if pool is None:
        if name not in _MEMO:
            _MEMO[name] = build()
        return _MEMO[name]
    with PoolRegistry(pool) as reg:
        row = reg.get_probe(name)
        if row is not None:
            path = reg.root / row["path"]
            if not path.is_file() or sha256_file(path) != row["sha256"]:
                raise IntegrityError(f"{path}: cached tensor missing or altered (sha256 mismatch)")
            return load_file(str(path))["x"]
        x = build().contiguous()
        path = reg.root / "cache" / domain / f"{name}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".safetensors", dir=path.parent)
        os.close(fd)
        save_file({"x": x}, tmp)
        os.replace(tmp, path)
        reg.put_probe(name, domain, str(path.relative_to(reg.root)), sha256_file(path))
        return x


def models_dir(pool: Path | None, source_id: str | None) -> Path | None:
    """Cache directory of the models generated for ``source_id`` (None outside a pool)."""
    if pool is None or source_id is None:
        return None
    return Path(pool) / "cache" / "generated" / source_id
