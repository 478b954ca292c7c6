"""Weight-space representations: the weight matrices a model inherits from its parent, their cosine,
and a count sketch of them whose hashes are seeded by (name, shape), so that inner products of
sketches estimate the cosine (the DNA index's ``weights`` kind)."""
from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn


def weight_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weight matrices (float, ≥ 2 dims) by parameter name, as float64."""
    return {k: v.detach().double() for k, v in model.state_dict().items() if v.is_floating_point() and v.dim() >= 2}


def weight_cosine(a: nn.Module, b: nn.Module) -> tuple[float, int]:
    """Cosine of the two models' weight vectors aligned by (name, shape), and how many tensors aligned."""
    wa, wb = weight_tensors(a), weight_tensors(b)
    shared = [k for k in wa if k in wb and wa[k].shape == wb[k].shape]
    dot = sum(float((wa[k] * wb[k]).sum()) for k in shared)
    norm = np.sqrt(sum(float(v.square().sum()) for v in wa.values()) * sum(float(v.square().sum()) for v in wb.values()))
    return (dot / norm if norm > 0 else 0.0), len(shared)


def _tensor_seed(name: str, shape: torch.Size, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}:{name}:{tuple(shape)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@torch.no_grad()
def weight_sketch(model: nn.Module, dim: int = 256, seed: int = 0) -> np.ndarray:
    """L2-normalised count sketch of the model's weight matrices (inner product ≈ ``weight_cosine``)."""
    v = torch.zeros(dim, dtype=torch.float64)
    for name, w in weight_tensors(model).items():
        g = torch.Generator().manual_seed(_tensor_seed(name, w.shape, seed))
        flat = w.flatten()
        bucket = torch.randint(dim, flat.shape, generator=g)
        sign = torch.randint(2, flat.shape, generator=g, dtype=torch.float64).mul_(2).sub_(1)
        v.index_add_(0, bucket, flat * sign)
    return (v / v.norm().clamp_min(1e-12)).float().numpy()
