"""Shared fixtures: tiny models and a tiny built pool (built once per session)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MGMP_CACHE", tempfile.mkdtemp(prefix="mgmp-test-cache-"))  # never the user's ~/.cache/mgmp
# one thread per process, for this process and the CLI processes the tests start (they inherit the variables):
# the tests' networks are small, so a second intra-op thread saves little, and on a busy 2-core machine (a
# concurrent build, a reader beside a writer, DDP ranks, another user) every op waits for the thread that is not
# scheduled: measured on tests/mgmp/test_forest.py, 147 CPU seconds with two threads against 21 with one
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
torch.set_num_threads(1)

TINY_CNN = {"arch": "small_cnn", "arch_kwargs": {"in_channels": 1, "image_size": 8, "width": 16}}

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "pool"
TINY_PLAN = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())


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
MGMP_PLAN = yaml.safe_load((CONFIGS / "tiny_mgmp.yaml").read_text())


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


@pytest.fixture(scope="module")
def lineage_copy(lineage_pool, tmp_path_factory):
    """A module's own copy of ``lineage_pool``, for scores that write references and fingerprints to its caches."""
    import shutil

    out = tmp_path_factory.mktemp("lineage-copy") / "pool"
    shutil.copytree(lineage_pool, out)
    return out


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray instance (2 CPUs, no dashboard, worker logs kept out of the test output), started once
    for the tests that use it (collected last, see below, so that it is not left running beside the others);
    executors reuse it and leave it running, the fixture shuts it down."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def pytest_collection_modifyitems(config, items):
    """The tests on Ray run last, one after the other: one Ray start (and warm workers) for all of them."""
    items.sort(key=lambda item: "ray_session" in getattr(item, "fixturenames", ()))


# two public backbones {s} (e: evaluation split, c: calibration), each with A = {s}-a (fine-tuned) and its three
# children, and A's siblings {s}-sib (fine-tuned with another seed) and {s}-q8 (the backbone quantized); {s}-ind
# trained from scratch
SIBLING_PLAN = {"name": "siblings", "defaults": {"epochs": 3, "lr": 0.003, "batch_size": 64}, "models": [
    {"id": "{s}", "recipe": "scratch", "arch": "small_cnn", "dataset": "digits", "data": {"n_train": 300},
     "arch_kwargs": {"in_channels": 1, "image_size": 8, "width": 8}, "params": {"epochs": 6}, "tags": {"role": "source", "public": True},
     "grid": {"s": [{"name": "e", "seed": 0, "split": "eval"}, {"name": "c", "seed": 1, "split": "calibration"}]}},
    {"id": "{s}-{v}", "parent": "{s}", "dataset": "digits", "data": {"n_train": 300},
     "grid": {"s": [{"name": "e", "split": "eval"}, {"name": "c", "split": "calibration"}],
              "v": [{"name": "a", "recipe": "finetune", "seed": 5, "epochs": 4},
                    {"name": "sib", "recipe": "finetune", "seed": 6, "epochs": 4},
                    {"name": "q8", "recipe": "quantize", "bits": 8}]}},
    {"id": "{s}-a-{v}", "parent": "{s}-a", "dataset": "digits", "data": {"n_train": 300},
     "grid": {"s": [{"name": "e", "split": "eval"}, {"name": "c", "split": "calibration"}],
              "v": [{"name": "q8", "recipe": "quantize", "bits": 8}, {"name": "ft", "recipe": "finetune", "seed": 7, "epochs": 1, "lr": 0.0003},
                    {"name": "pr", "recipe": "prune", "seed": 8, "amount": 0.3, "epochs": 1}]}},
    {"id": "{s}-ind", "recipe": "scratch", "arch": "small_cnn", "dataset": "digits", "data": {"n_train": 300},
     "arch_kwargs": {"in_channels": 1, "image_size": 8, "width": 8}, "params": {"epochs": 6}, "tags": {"role": "independent"},
     "grid": {"s": [{"name": "e", "seed": 3, "split": "eval"}, {"name": "c", "seed": 4, "split": "calibration"}]}},
]}


@pytest.fixture(scope="session")
def sibling_pool(tmp_path_factory):
    """``SIBLING_PLAN``: derived-from-A and sibling-of-A pairs on two public backbones (copy it before calibrating)."""
    return _build(SIBLING_PLAN, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_lm_files(tmp_path_factory):
    """A tiny random Llama as users bring one: a Hugging Face directory and a Q8_0 GGUF file, with the model."""
    from tests.lm_models import tiny_llama, tiny_tokenizer, write_gguf, write_hf_dir

    root = tmp_path_factory.mktemp("lm")
    tok, model = tiny_tokenizer(), tiny_llama()
    return {"hf": write_hf_dir(model, tok, root / "hf"), "gguf": write_gguf(model, tok, root / "tiny.gguf"),
            "model": model, "root": root}
