"""Batched gradient attacks shared by adversarial training and boundary-based scores."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def input_grad_sign(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sign(d CE(model(x), y) / dx), for all points at once."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return grad.sign()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
        bounds: tuple[float, float] | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """L-inf PGD with a random start (Madry et al.): adversarial examples within ``eps`` of ``x``."""
    delta = (torch.rand(x.shape, generator=generator) * 2 - 1) * eps
    adv = x + delta
    for _ in range(steps):
        adv = adv + alpha * input_grad_sign(model, adv, y)
        adv = x + (adv - x).clamp(-eps, eps)
        if bounds is not None:
            adv = adv.clamp(*bounds)
    return adv.detach()
