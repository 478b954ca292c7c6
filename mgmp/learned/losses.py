"""MGMP losses (SPEC §5): L_S (eq. 5), L_I (eq. 6), generator weight penalty (eq. 7), BCE (eq. 8).

Shapes: fragments ``o_s, o_t, o_n`` are float (B, D), one row per input x_i; ``o_t`` from the
homologous model, ``o_n`` from the non-homologous one. ``reduction="sum"`` is the paper's Σ;
``"mean"`` divides by the number of terms (same optimum, learning rate independent of B).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model_pool.errors import BadInput


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All-pairs cosine similarity (B, B)."""
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return x.sum()
    if reduction == "mean":
        return x.mean()
    raise BadInput(f"unknown reduction {reduction!r}; known: sum, mean")


def loss_s(o_s: torch.Tensor, o_t: torch.Tensor, o_n: torch.Tensor, tau: float = 0.1, reduction: str = "mean",
           form: str = "paper") -> torch.Tensor:
    """Eq. 5: -Σ_i log( exp(sim(o^s_i,o^t_i)/τ) / Σ_k exp(sim(o^s_i,ō^t_k)/τ) ).

    ``form="paper"``: the denominator holds only the non-homologous fragments, as written.
    ``form="infonce"``: the standard InfoNCE form, the positive added to the denominator
    (bounded below by 0; the paper's form is unbounded below).
    """
    pos = (F.normalize(o_s, dim=1) * F.normalize(o_t, dim=1)).sum(1) / tau
    neg = _cos(o_s, o_n) / tau
    if form == "paper":
        denom = torch.logsumexp(neg, dim=1)
    elif form == "infonce":
        denom = torch.logsumexp(torch.cat([pos[:, None], neg], dim=1), dim=1)
    else:
        raise BadInput(f"unknown L_S form {form!r}; known: paper, infonce")
    return _reduce(denom - pos, reduction)


def loss_i(o_s: torch.Tensor, o_t: torch.Tensor, o_n: torch.Tensor, tau: float = 0.1, reduction: str = "mean",
           form: str = "paper") -> torch.Tensor:
    """Eq. 6: -Σ_i Σ_{k≠i} log( exp(sim(o^s_i,o^s_k)/τ) + exp(sim(o^t_i,o^t_k)/τ) + exp(sim(ō^t_i,ō^t_k)/τ) ).

    As written, minimising it raises the similarity of fragments of *different* inputs within each
    model. ``form="repel"`` flips the sign (pushes them apart, a uniformity term) for comparison.
    """
    b = o_s.shape[0]
    stacked = torch.stack([_cos(o, o) for o in (o_s, o_t, o_n)]) / tau  # (3, B, B)
    terms = torch.logsumexp(stacked, dim=0)
    off = terms[~torch.eye(b, dtype=torch.bool, device=terms.device)]
    if form == "paper":
        return _reduce(-off, reduction)
    if form == "repel":
        return _reduce(off, reduction)
    raise BadInput(f"unknown L_I form {form!r}; known: paper, repel")


def weight_penalty(module: nn.Module | None) -> torch.Tensor:
    """Eq. 7's ‖w_g‖²: the squared L2 norm of all trainable generator weights."""
    if module is None:
        return torch.zeros(())
    params = [p for p in module.parameters() if p.requires_grad]
    return sum((p**2).sum() for p in params) if params else torch.zeros(())


def loss_bce(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Eq. 8: binary cross-entropy of the provenance classifier's fragment logits (label 1 = homologous)."""
    return F.binary_cross_entropy_with_logits(logits, labels.float(), reduction=reduction)
