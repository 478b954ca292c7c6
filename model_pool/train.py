"""The one training loop every pool recipe shares, and batched prediction.

Pool models are tiny and trained by the hundred in worker processes, so this is a plain
full-tensor loop (no Trainer start-up per model); the loss is pluggable per recipe.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Classification loss; for a causal language model, the language-modelling loss of ``lm_loss``."""
    if getattr(model, "is_lm", False):
        return lm_loss(model, x, y)
    return F.cross_entropy(model(x), y)


def lm_targets(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Next-token targets of right-padded prompts: each position's following token, ``y`` after the last real
    token, 0 (ignored) on padding."""
    t = torch.zeros_like(x)
    t[:, :-1] = x[:, 1:]
    last = ((x != 0) * torch.arange(1, x.shape[1] + 1)).amax(1) - 1
    rows = (last >= 0).nonzero().squeeze(1)
    t[rows, last[rows]] = y[rows]
    return t


def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over every real position of ``x`` (the prompt's own tokens and ``y``)."""
    logits = model.sequence_logits(x)
    return F.cross_entropy(logits.flatten(0, 1), lm_targets(x, y).flatten(), ignore_index=0)


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    loss_fn: LossFn = cross_entropy,
    params: Iterable[nn.Parameter] | None = None,
    after_step: Callable[[], None] | None = None,
    seed: int = 0,
) -> nn.Module:
    """Train ``model`` on (x, y) for ``epochs`` with a seeded shuffle; ``params`` restricts what is trained."""
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    if not params or epochs <= 0:
        return model.eval()
    opt = _optimizer(optimizer, params, lr, weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, x[idx], y[idx])
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step()
        sched.step()
    return model.eval()


def _optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; known: adam, sgd")


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512, features: bool = False) -> torch.Tensor:
    """Logits (or penultimate features) of ``model`` on ``x``, batched, in eval mode."""
    model.eval()
    fn = model.forward_features if features else model
    return torch.cat([fn(chunk) for chunk in x.split(batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(model, x).argmax(1) == y).float().mean())


@torch.no_grad()
def recompute_bn(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> None:
    """Reset BatchNorm running statistics and re-estimate them on ``x`` (cumulative average)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for chunk in x.split(batch_size):
        model(chunk)
    model.eval()
