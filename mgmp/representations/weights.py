"""Weight-space representations: the weight matrices a model inherits from its parent, their cosine,
and a count sketch of them whose hashes are seeded by (name, shape), so that inner products of
sketches estimate the cosine (the DNA index's ``weights`` kind). The cosine also runs on a model
directory's arrays alone (:func:`model_pool.model_files.weight_arrays`): no model built, no torch."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn


def weight_names(model: nn.Module) -> list[str]:
    """The names of the model's weight matrices (float, ≥ 2 dims), in state-dict order."""
    return [k for k, v in model.state_dict().items() if v.is_floating_point() and v.dim() >= 2]


def weight_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weight matrices (float, ≥ 2 dims) by parameter name, as stored (no copy)."""
    return {k: v.detach() for k, v in model.state_dict().items() if v.is_floating_point() and v.dim() >= 2}


def weight_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weight matrices (float, ≥ 2 dims) by parameter name, as float64."""
    return {k: v.double() for k, v in weight_state(model).items()}


def weight_matrices(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The weight matrices (float, ≥ 2 dims) among a state dict's arrays, as float64."""
    return {k: v.astype(np.float64, copy=False) for k, v in arrays.items() if v.dtype.kind == "f" and v.ndim >= 2}


def matrices_cosine(wa: Mapping[str, np.ndarray], wb: Mapping[str, np.ndarray]) -> tuple[float, int]:
    """Cosine of two sets of weight matrices aligned by (name, shape), and how many aligned: a matrix without a
    partner counts in its model's norm only (orthogonal)."""
    shared = [k for k in wa if k in wb and wa[k].shape == wb[k].shape]
    dot = sum(float(np.vdot(wa[k], wb[k])) for k in shared)
    norm = np.sqrt(sum(float(np.vdot(v, v)) for v in wa.values()) * sum(float(np.vdot(v, v)) for v in wb.values()))
    return (dot / norm if norm > 0 else 0.0), len(shared)


def weight_cosine(a: nn.Module, b: nn.Module) -> tuple[float, int]:
    """Cosine of the two models' weight vectors aligned by (name, shape), and how many tensors aligned."""
    return matrices_cosine(*({k: v.cpu().numpy() for k, v in weight_tensors(m).items()} for m in (a, b)))


def _tensor_seed(name: str, shape: tuple[int, ...], seed: int) -> int:
    digest = hashlib.sha256(f"{seed}:{name}:{tuple(shape)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def weight_sketch(model: nn.Module, dim: int = 256, seed: int = 0) -> np.ndarray:
    """L2-normalised count sketch of the model's weight matrices (inner product ≈ ``weight_cosine``)."""
    import torch

    v = torch.zeros(dim, dtype=torch.float64)
    for name, w in weight_tensors(model).items():
        g = torch.Generator().manual_seed(_tensor_seed(name, w.shape, seed))
        flat = w.flatten()
        bucket = torch.randint(dim, flat.shape, generator=g)
        sign = torch.randint(2, flat.shape, generator=g, dtype=torch.float64).mul_(2).sub_(1)
        v.index_add_(0, bucket, flat * sign)
    return (v / v.norm().clamp_min(1e-12)).float().numpy()


def weight_distance(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> tuple[float, int]:
    """|a − b|² / |a|² over the weight matrices aligned by (name, shape), and how many aligned (nan, 0: none):
    a distance from ``a`` that compares across models aligned with ``a`` on the same tensors."""
    shared = [k for k in a if k in b and a[k].shape == b[k].shape]
    g = gram([a, b], shared) if shared else np.zeros((2, 2))
    return (float((g[0, 0] + g[1, 1] - 2 * g[0, 1]) / g[0, 0]) if g[0, 0] > 0 else float("nan")), len(shared)


NEAR_COPY = 0.02  # a model's own change under this share of a suspect's squared distance to its parent shows nothing


def explains_as_well(to_ancestor: float, to_model: float, tolerance: float = NEAR_COPY) -> bool:
    """Does an ancestor explain a suspect as well as the model derived from it? Yes when the suspect's squared weight
    distance to the ancestor exceeds its distance to the model by at most ``tolerance`` of it: the model's own change
    (an fp16 or int8 copy's rounding, a tiny fine-tune) is not visible in the suspect, so parsimony names the
    ancestor (shared by ``mgmp query``'s verdict ranking and ``mgmp forest``)."""
    return to_ancestor - to_model <= tolerance * to_ancestor


MIN_ZEROS = 0.05  # a model with fewer exact zeros among its weight entries shows no pruning mask to read
MASK_MATCH = 0.999  # a magnitude pruning's zeros are exactly its start's smallest weights (up to ties)


def zeros_selected(suspect: Mapping[str, torch.Tensor], model: Mapping[str, torch.Tensor],
                   min_zeros: float = MIN_ZEROS) -> float | None:
    """The least share, over the matrices aligned by name and shape, of the suspect's exact zeros in a matrix that
    are among as many of ``model``'s smallest-magnitude entries there; None when under ``min_zeros`` of the
    suspect's aligned entries are zero. 1 for the model a magnitude pruning started from, global or per layer (a
    global threshold keeps the smallest entries of every matrix), and for no other: a sibling or a child of that
    start orders its weights differently, in some matrix if not in all (a last-layer fine-tune of the start)."""
    shared = [k for k, w in suspect.items() if k in model and model[k].shape == w.shape]
    zeros = {k: int((suspect[k] == 0).sum()) for k in shared}
    total, zeroed = sum(suspect[k].numel() for k in shared), sum(zeros.values())
    if not total or zeroed < min_zeros * total:
        return None
    return min(int((suspect[k].flatten()[model[k].abs().flatten().topk(n, largest=False).indices] == 0).sum()) / n
               for k, n in zeros.items() if n)


def pruned_from(zeros: float | None) -> bool:
    """Do the suspect's zeros (:func:`zeros_selected`) show that it was magnitude-pruned from that model?"""
    return zeros is not None and zeros >= MASK_MATCH


def gram(states: list[Mapping[str, torch.Tensor]], keys: list[str]) -> np.ndarray:
    """Inner products of the models' weights over ``keys`` (float64, one tensor at a time: nothing of a 135 M
    model is held twice)."""
    import torch

    g = torch.zeros(len(states), len(states), dtype=torch.float64)
    for k in keys:
        v = torch.stack([s[k].detach().flatten() for s in states]).double()
        g += v @ v.T
    return g.numpy()
