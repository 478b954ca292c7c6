"""Datasets by name: ``load_dataset("digits-tasks", task=3)``.

Embedded (no download): ``digits``, ``digits-tasks``, ``synthetic-topics``, ``shapes``, ``lm-corpus``.
User-side (download only when ``download=True``): see :mod:`model_pool.data.vision` and
:mod:`model_pool.data.text`.
"""
from __future__ import annotations

from model_pool._registry import Registry
from model_pool.data.base import TaskData
from model_pool.data.references import is_data_ref, load_data_ref

DATASETS: Registry = Registry("dataset")


def load_dataset(name: str, task=None, **kwargs) -> TaskData:
    """Build dataset ``name`` (and derived ``task`` where the dataset has tasks), or load a data reference."""
    if is_data_ref(name):
        return load_data_ref(name, task=task, **kwargs)
    return DATASETS.get(name)(task=task, **kwargs)


def list_datasets(pattern: str = "*") -> list[str]:
    return DATASETS.names(pattern)


# registration side effects
from model_pool.data import corpus as _corpus  # noqa: E402,F401
from model_pool.data import digits as _digits  # noqa: E402,F401
from model_pool.data import shapes as _shapes  # noqa: E402,F401
from model_pool.data import text as _text  # noqa: E402,F401
from model_pool.data import topics as _topics  # noqa: E402,F401
from model_pool.data import vision as _vision  # noqa: E402,F401

__all__ = ["DATASETS", "TaskData", "load_dataset", "list_datasets"]
