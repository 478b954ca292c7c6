"""Frozen models' outputs on a probe set, computed once and cached on disk beside the pool.

Files: ``POOL/cache/outputs/<probe>/<model>-<kind>-<sha12>.npy`` (kind: logits or features),
written atomically; large files are memory-mapped on load. The sha in the name ties an entry to
the exact weights, so a replaced model is never served stale outputs.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from model_pool.atomic import write_file
from model_pool.errors import BadInput
from model_pool.train import predict

MMAP_BYTES = 64 << 20
KINDS = ("logits", "features")


def probe_key(x: torch.Tensor) -> str:
    """A short content hash of the probe inputs."""
    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()[:16]


class OutputCache:
    """Outputs of a :class:`~model_pool.pool.Pool`'s models on probe inputs ``x``: ``cache.get(model_id, "logits")``."""

    def __init__(self, pool, x: torch.Tensor, batch_size: int = 512):
        self.pool, self.x, self.batch_size = pool, x, batch_size
        self.dir = pool.root / "cache" / "outputs" / probe_key(x)
        self._mem: dict[tuple[str, str], torch.Tensor] = {}

    def get(self, model_id: str, kind: str = "logits") -> torch.Tensor:
        if kind not in KINDS:
            raise BadInput(f"cached output kind must be one of {', '.join(KINDS)}, got {kind!r}")
        key = (model_id, kind)
        if key not in self._mem:
            row = self.pool.registry.get(model_id)
            path = self.dir / f"{model_id}-{kind}-{row.sha256[:12]}.npy"
            if not path.is_file():
                self._compute(model_id, path, kind)
            mmap = "r" if path.stat().st_size > MMAP_BYTES else None  # large: pages are read on demand
            self._mem[key] = torch.from_numpy(np.asarray(np.load(path, mmap_mode=mmap)))
        return self._mem[key]

    def _compute(self, model_id: str, path: Path, kind: str) -> None:
        model, _ = self.pool.load(model_id)
        out = predict(model, self.x, self.batch_size, features=kind == "features").float().numpy()
        write_file(path, lambda tmp: _save_npy(tmp, out))


def _save_npy(file: str, array: np.ndarray) -> None:
    with open(file, "wb") as f:  # a file object: np.save would add ".npy" to a path
        np.save(f, array)
