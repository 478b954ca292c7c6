"""Model-level DNA vectors on a pool's fixed probe set (SPEC §7).

``gram`` (default, training-free): the linear-CKA embedding of the model's penultimate features on
the N probe inputs (``mgmp.representations.gram``), whatever the architectures and label orders.
``weights``: a count sketch of the weight matrices (``mgmp.representations.weights``): finds the models a
suspect inherited its weights from (fine-tuned, pruned, quantized, transferred), whatever the
task, where representation similarity may favour another model of the suspect's task.
``mgmp``: the MGMP paper's model DNA with a trained checkpoint: the mean DNA fragment
asm(z(x), view(y(x))) over the probe inputs.
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable

import numpy as np
import torch
from torch import nn

from mgmp.representations.gram import SEED, gram_dna
from mgmp.representations.weights import weight_sketch
from mgmp.scores import task_data
from model_pool.card import ModelCard
from model_pool.errors import BadInput
from model_pool.model_files import read_card
from model_pool.pool import Pool
from model_pool.train import predict

N_PROBES = 64
DNA_KINDS = ("gram", "weights", "mgmp")
INDEX_DNA = ("gram", "weights")  # the indexes `mgmp index build` makes and queries search by default


def input_key(card: ModelCard) -> str:
    """Models sharing an input space share a probe set."""
    spec = {k: card.input.get(k) for k in ("kind", "shape", "tokenizer", "max_length")}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def probe_set(pool: Pool, card: ModelCard, own_data: bool = False, n: int = N_PROBES, seed: int = SEED) -> torch.Tensor:
    """The pool's fixed probe inputs for ``card``'s input space, drawn once from the test split of the
    first registered root with that input space and kept with the pool. Without such a root, a
    registered model (``own_data``) uses its own data; a suspect is refused."""
    key = input_key(card)

    def build() -> torch.Tensor:
        data = None
        for row in pool.registry.models("relation = 'scratch'"):
            root_card = read_card(pool.root / row.path)
            if input_key(root_card) == key:
                data = task_data(root_card)
                break
        if data is None and own_data:
            data = task_data(card)
        if data is None:
            raise BadInput("no registered model shares the suspect's input space: no DNA probe set fits it")
        g = torch.Generator().manual_seed(seed)
        return data.x_test[torch.randperm(len(data.x_test), generator=g)[:n]].contiguous()

    return pool.tensor(f"dna-probe-{key}-{n}-{seed}", "probes", build)


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
        return weight_sketch(model)
    if kind == "mgmp":
        if module is None:
            raise BadInput("DNA kind 'mgmp' needs a trained checkpoint (--ckpt)")
        return mgmp_dna(module, model, probes())
    raise BadInput(f"unknown DNA kind {kind!r}; known: {', '.join(DNA_KINDS)}")
