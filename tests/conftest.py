"""Shared fixtures: tiny models and a tiny built pool (built once per session)."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

TINY_CNN = {"arch": "small_cnn", "arch_kwargs": {"in_channels": 1, "image_size": 8, "width": 16}}

TINY_PLAN = {
    "name": "tiny",
    "defaults": {"epochs": 5, "lr": 0.003, "batch_size": 64},
    "models": [
        {"id": "src", "recipe": "scratch", **TINY_CNN, "dataset": "digits", "data": {"n_train": 400}, "seed": 0,
         "params": {"epochs": 10}},
        {"id": "ft", "recipe": "finetune", "parent": "src", "dataset": "digits", "data": {"n_train": 200}, "seed": 1},
        {"id": "tr-{task}", "recipe": "transfer", "parent": "src", "dataset": "digits-tasks", "data": {"n_train": 200},
         "seed": 2, "grid": {"task": [{"name": "10way", "task": 1}, {"name": "5way", "task": "2:5"}]}, "split": "eval"},
        {"id": "ft-q8", "recipe": "quantize", "parent": "ft", "dataset": "digits", "data": {"n_train": 100}, "params": {"bits": 8}},
        {"id": "soup", "recipe": "merge", "parents": ["src", "ft"], "dataset": "digits", "data": {"n_train": 200}},
        {"id": "ind", "recipe": "scratch", **TINY_CNN, "dataset": "digits", "data": {"n_train": 400}, "seed": 9,
         "params": {"epochs": 10}},
    ],
}


def _build(plan: dict, tmp_path_factory):
    from model_pool.builder import build_pool
    from model_pool.plan import parse_plan

    out = tmp_path_factory.mktemp(plan["name"]) / "pool"
    report = build_pool(parse_plan(plan), out)
    assert report.ok, report.failed
    return out


@pytest.fixture(scope="session")
def tiny_pool(tmp_path_factory):
    """A seven-model pool from ``TINY_PLAN``: every lineage shape (chain, merge, transfer, independent root)."""
    return _build(TINY_PLAN, tmp_path_factory)

_KW = {"in_channels": 1, "image_size": 8, "width": 8}
MGMP_PLAN = {
    "name": "tiny-mgmp",
    "defaults": {"epochs": 3, "lr": 0.003, "batch_size": 64},
    "models": [
        {"id": "source", "recipe": "scratch", "arch": "small_cnn", "arch_kwargs": _KW, "dataset": "digits",
         "data": {"n_train": 300, "n_test": 60}, "params": {"epochs": 6}, "tags": {"role": "source"}},
        {"id": "hom-{task}-{v}", "recipe": "transfer", "parent": "source", "dataset": "digits-tasks",
         "data": {"n_train": 200}, "grid": {"task": [{"name": "0", "task": 0, "split": "pool"},
                                                    {"name": "1", "task": 1, "split": "pool"},
                                                    {"name": "2", "task": 2, "split": "eval"}], "v": ["a", "b"]}},
        {"id": "non-{task}-{v}", "recipe": "scratch", "arch": "small_cnn", "arch_kwargs": _KW, "dataset": "digits-tasks",
         "data": {"n_train": 200}, "grid": {"task": [{"name": "0", "task": 0, "split": "pool"},
                                                    {"name": "1", "task": 1, "split": "pool"},
                                                    {"name": "2", "task": 2, "split": "eval"}], "v": ["a", "b"]}},
    ],
}


@pytest.fixture(scope="session")
def mgmp_pool(tmp_path_factory):
    """A 13-model pool with homologous / non-homologous models on two pool tasks and one eval task."""
    return _build(MGMP_PLAN, tmp_path_factory)


_LIN = {"arch": "small_cnn", "arch_kwargs": _KW, "dataset": "digits", "data": {"n_train": 300, "n_test": 120}}
LINEAGE_PLAN = {
    "name": "tiny-lineage",
    "defaults": {"epochs": 3, "lr": 0.003, "batch_size": 64},
    "models": [
        {"id": "{s}", "recipe": "scratch", **_LIN, "params": {"epochs": 8}, "tags": {"role": "source"},
         "grid": {"s": [{"name": "sa", "seed": 0, "split": "eval"}, {"name": "sc", "seed": 1, "split": "calibration"},
                        {"name": "sd", "seed": 4, "split": "calibration"}]}},
        {"id": "{s}-{v}", "parent": "{s}", "dataset": "digits", "data": {"n_train": 300, "n_test": 120},
         "grid": {"s": [{"name": "sa", "split": "eval"}, {"name": "sc", "split": "calibration"},
                        {"name": "sd", "split": "calibration"}],
                  "v": [{"name": "ft", "recipe": "finetune", "seed": 2},
                        {"name": "q8", "recipe": "quantize", "bits": 8},
                        {"name": "tr", "recipe": "transfer", "dataset": "digits-tasks", "task": "2:5", "seed": 3}]}},
        {"id": "ind-{s}", "recipe": "scratch", **_LIN, "params": {"epochs": 8}, "tags": {"role": "independent"},
         "grid": {"s": [{"name": "e1", "seed": 5, "split": "eval"}, {"name": "e2", "seed": 6, "split": "eval"},
                        {"name": "c1", "seed": 7, "split": "calibration"}, {"name": "c2", "seed": 8, "split": "calibration"}]}},
    ],
}


@pytest.fixture(scope="session")
def lineage_pool(tmp_path_factory):
    """Three sources (one eval, two calibration) with three descendants each and two independents per split."""
    return _build(LINEAGE_PLAN, tmp_path_factory)
