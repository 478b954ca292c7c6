"""``Pool``: a model pool opened once, with everything the pipeline keeps in it.

``Pool.open(dir)`` gives the registry (``pool.sqlite``), the caches that live beside it (tensors such
as probe sets, generated test sets and signatures; models generated for a source; frozen models'
outputs; pair scores), the calibration store (JSON documents written by ``mgmp calibrate``) and
verified loading of the registered models. Commands open it at their edge and pass the object down;
library code never reopens a pool from a path. Outside any pool, :func:`user_cache` stands in: the
same tensors and generated models, kept under ``$MGMP_CACHE`` (default ``~/.cache/mgmp``) with their
sha256 checked on every read, so per-source work is done once across commands (SPEC §11).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from model_pool.atomic import write_file
from model_pool.card import ModelCard
from model_pool.errors import BadInput, IntegrityError
from model_pool.guards import check_safetensors, load_json
from model_pool.hashing import sha256_file
from model_pool.io import load_model_dir
from model_pool.outputs import OutputCache
from model_pool.registry import DB_NAME, REF_SEP, PoolRegistry


class TensorCache:
    """Tensors built once per name (``tensor``) and a directory per source for generated models
    (``generated_dir``), kept under ``root``; each tensor's sha256 is recorded beside it and checked."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _record(self, name: str) -> dict | None:
        f = self.root / "cache" / "index" / f"{name}.json"
        if not f.is_file():
            return None
        try:
            row = load_json(f.read_text(), str(f))
            return {"path": str(row["path"]), "sha256": str(row["sha256"])}
        except (BadInput, KeyError, TypeError):
            raise IntegrityError(f"{f}: cache record unreadable (remove it to recompute)") from None

    def _remember(self, name: str, domain: str, path: Path) -> None:
        f = self.root / "cache" / "index" / f"{name}.json"
        f.parent.mkdir(parents=True, exist_ok=True)
        write_file(f, lambda tmp: Path(tmp).write_text(json.dumps(
            {"path": str(path.relative_to(self.root)), "domain": domain, "sha256": sha256_file(path)})))

    def has(self, name: str | None) -> bool:
        """Is a tensor recorded under ``name``?"""
        return name is not None and self._record(name) is not None

    def tensor(self, name: str | None, domain: str, build: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``build()`` once per ``name``: kept as ``cache/<domain>/<name>.safetensors``, recorded with its sha256
        (``name=None``: inputs without a content hash to key them, built every time)."""
        if name is None:
            return build()
        row = self._record(name)
        if row is not None:
            path = self.root / row["path"]
            if not path.is_file() or sha256_file(path) != row["sha256"]:
                raise IntegrityError(f"{path}: cached tensor missing or altered (sha256 mismatch)")
            check_safetensors(path)
            return load_file(str(path))["x"]
        x = build().contiguous()
        path = self.root / "cache" / domain / f"{name}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, lambda tmp: save_file({"x": x}, tmp))
        self._remember(name, domain, path)
        return x

    def generated_dir(self, source_key: str | None) -> Path | None:
        """Where models generated for a source (references, transfers) are kept."""
        return None if source_key is None else self.root / "cache" / "generated" / source_key


def user_cache() -> TensorCache:
    """The cache of per-source work outside any pool: ``$MGMP_CACHE``, default ``~/.cache/mgmp``."""
    return TensorCache(os.environ.get("MGMP_CACHE") or Path.home() / ".cache" / "mgmp")


class CalibrationStore:
    """JSON documents keyed by name in the registry's ``meta`` table (what ``mgmp calibrate`` writes)."""

    def __init__(self, registry: PoolRegistry):
        self._reg = registry

    def get(self, key: str) -> Any | None:
        stored = self._reg.get_meta(key)
        return json.loads(stored) if stored else None

    def put(self, key: str, value: Any) -> None:
        self._reg.set_meta(key, json.dumps(value))

    def delete(self, key: str) -> None:
        self._reg.delete_meta(key)


class Pool(TensorCache):
    """An open model pool: ``registry``, caches, ``calibration`` and verified model loading."""

    def __init__(self, registry: PoolRegistry):
        super().__init__(registry.root)
        self.registry = registry
        self.calibration = CalibrationStore(registry)

    @classmethod
    def open(cls, root: str | Path, create: bool = False) -> "Pool":
        """The pool at ``root`` (``create``: make an empty one when absent); ``BadInput`` when it is not a pool."""
        return cls(PoolRegistry(root, create=create))

    @staticmethod
    def exists(root: str | Path) -> bool:
        return (Path(root) / DB_NAME).is_file()

    def close(self) -> None:
        self.registry.close()

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Pool({str(self.root)!r})"

    # -- models ---------------------------------------------------------------------------
    def ref(self, model_id: str) -> str:
        """The CLI reference of a registered model (``POOL_DIR::MODEL_ID``)."""
        return f"{self.root}{REF_SEP}{model_id}"

    def load(self, model_id: str) -> tuple[nn.Module, ModelCard]:
        """A registered model in eval mode, its files and the registry's sha256 verified."""
        row = self.registry.get(model_id)
        path = self.root / row.path
        if path.is_symlink() or not path.resolve().is_relative_to(self.root.resolve()):
            raise IntegrityError(f"{self.ref(model_id)}: model directory leaves the pool directory")
        model, card = load_model_dir(path)
        if card.sha256 != row.sha256:
            raise IntegrityError(f"{self.ref(model_id)}: weights differ from the registry's sha256")
        return model, card

    # -- caches ---------------------------------------------------------------------------
    def _record(self, name: str) -> dict | None:
        return self.registry.get_probe(name)  # a pool records its tensors in the registry's probes table

    def _remember(self, name: str, domain: str, path: Path) -> None:
        self.registry.put_probe(name, domain, str(path.relative_to(self.root)), sha256_file(path))

    def outputs(self, x: torch.Tensor, batch_size: int = 512) -> OutputCache:
        """Frozen registered models' outputs on ``x``, computed once and kept beside the pool."""
        return OutputCache(self, x, batch_size)


def split_ref(ref: str) -> tuple[str | None, str]:
    """``POOL_DIR::MODEL_ID`` -> (pool dir, model id); a directory path -> (None, path)."""
    if REF_SEP in ref:
        pool, _, model_id = ref.partition(REF_SEP)
        if not pool or not model_id:
            raise BadInput(f"{ref!r}: a pool reference is POOL_DIR::MODEL_ID")
        return pool, model_id
    return None, ref


def load_ref(ref: str, pool: Pool | None = None) -> tuple[nn.Module, ModelCard]:
    """Load the model a CLI reference names (a directory, or ``POOL_DIR::MODEL_ID`` through ``pool``
    when it is that pool, else by opening the named pool)."""
    pool_dir, name = split_ref(ref)
    if pool_dir is None:
        if not Path(name).exists():
            raise BadInput(f"{ref}: no such model directory (or use POOL_DIR::MODEL_ID)")
        return load_model_dir(name)
    if pool is not None and Path(pool_dir).resolve() == pool.root.resolve():
        return pool.load(name)
    with Pool.open(pool_dir) as other:
        return other.load(name)
