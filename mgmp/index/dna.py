"""Model-level DNA vectors on a pool's fixed probe set (SPEC §7).

``gram`` (default, training-free): the model's penultimate features on the N probe inputs give a
centred Gram matrix K̃ = HFFᵀH; its flattened, L2-normalised form makes the inner product of two
DNA vectors their linear CKA, whatever the architectures and label orders. A fixed seeded Gaussian
projection (Johnson-Lindenstrauss) takes the N² entries to ``dim`` dimensions for the index.
``weights``: a count sketch of the weight matrices (``mgmp.scores.weights``): finds the models a
suspect inherited its weights from (fine-tuned, pruned, quantized, transferred), whatever the
task, where representation similarity may favour another model of the suspect's task.
``mgmp``: the MGMP paper's model DNA with a trained checkpoint: the mean DNA fragment
asm(z(x), view(y(x))) over the probe inputs.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mgmp.scores.base import query, task_data
from mgmp.scores.cache import cached_tensor
from model_pool.card import ModelCard
from model_pool.errors import MgmpError
from model_pool.io import read_card
from model_pool.registry import PoolRegistry
from model_pool.train import predict

N_PROBES, DIM, SEED = 64, 128, 0
DNA_KINDS = ("gram", "weights", "mgmp")
INDEX_DNA = ("gram", "weights")  # the indexes `mgmp index build` makes and queries search by default


def input_key(card: ModelCard) -> str:
    """Models sharing an input space share a probe set."""
    spec = {k: card.input.get(k) for k in ("kind", "shape", "tokenizer", "max_length")}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def probe_set(pool: Path, card: ModelCard, own_data: bool = False, n: int = N_PROBES, seed: int = SEED) -> torch.Tensor:
    """The pool's fixed probe inputs for ``card``'s input space, drawn once from the test split of the
    first registered root with that input space and kept with the pool. Without such a root, a
    registered model (``own_data``) uses its own data; a suspect is refused."""
    key = input_key(card)

    def build() -> torch.Tensor:
        data = None
        with PoolRegistry(pool) as reg:
            for row in reg.models("relation = 'scratch'"):
                root_card = read_card(reg.root / row.path)
                if input_key(root_card) == key:
                    data = task_data(root_card)
                    break
        if data is None and own_data:
            data = task_data(card)
        if data is None:
            raise MgmpError("no registered model shares the suspect's input space: no DNA probe set fits it")
        g = torch.Generator().manual_seed(seed)
        return data.x_test[torch.randperm(len(data.x_test), generator=g)[:n]].contiguous()

    return cached_tensor(pool, f"dna-probe-{key}-{n}-{seed}", "probes", build)


def _projection(n: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n * n, dim, generator=g, dtype=torch.float64) / dim**0.5


@torch.no_grad()
def gram_dna(model: nn.Module, x: torch.Tensor, dim: int = DIM, seed: int = SEED) -> np.ndarray:
    """JL-projected, L2-normalised centred Gram matrix of the model's features on ``x``."""
    try:
        f = predict(model, x, features=True).double()
    except AttributeError:  # a model without forward_features: its outputs stand in
        f = query(model, x).double()
    if not torch.isfinite(f).all():
        raise MgmpError("the model's features contain NaN or inf")
    f = f - f.mean(0)
    k = (f @ f.T).flatten()
    k = k / k.norm().clamp_min(1e-12)
    v = k @ _projection(len(x), dim, seed)
    return (v / v.norm().clamp_min(1e-12)).float().numpy()


@torch.no_grad()
def mgmp_dna(module, model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The MGMP paper's model DNA: mean fragment over the probe inputs, L2-normalised."""
    y = predict(model, x, features=module.hparams.view == "features")
    v = module.fragments(module.z(x), y).mean(0).double()
    return (v / v.norm().clamp_min(1e-12)).float().numpy()


def model_dna(model: nn.Module, probes: Callable[[], torch.Tensor], kind: str = "gram", module=None) -> np.ndarray:
    """``model``'s DNA vector of ``kind``; ``probes()`` gives the probe inputs when the kind needs them."""
    if kind == "gram":
        return gram_dna(model, probes())
    if kind == "weights":
        from mgmp.scores.weights import weight_sketch

        return weight_sketch(model)
    if kind == "mgmp":
        if module is None:
            raise MgmpError("DNA kind 'mgmp' needs a trained checkpoint (--ckpt)")
        return mgmp_dna(module, model, probes())
    raise MgmpError(f"unknown DNA kind {kind!r}; known: {', '.join(DNA_KINDS)}")
