"""Resolve a CLI model reference (a directory path or ``POOL_DIR::MODEL_ID``) to a loaded model."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from model_pool.card import ModelCard
from model_pool.errors import IntegrityError, MgmpError
from model_pool.io import load_model_dir
from model_pool.registry import PoolRegistry


def load_ref(ref: str) -> tuple[nn.Module, ModelCard]:
    """Load the model ``ref`` names, verifying its files (and its registry sha256 for pool refs)."""
    if "::" in ref:
        pool_dir, _, model_id = ref.partition("::")
        with PoolRegistry(pool_dir) as reg:
            row = reg.get(model_id)
            path = reg.root / row.path
        resolved = path.resolve()
        if path.is_symlink() or not resolved.is_relative_to(Path(pool_dir).resolve()):
            raise IntegrityError(f"{ref}: model directory leaves the pool directory")
        model, card = load_model_dir(path)
        if card.sha256 != row.sha256:
            raise IntegrityError(f"{ref}: weights differ from the registry's sha256")
        return model, card
    if not Path(ref).exists():
        raise MgmpError(f"{ref}: no such model directory (or use POOL_DIR::MODEL_ID)")
    return load_model_dir(ref)
