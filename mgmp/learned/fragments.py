"""From model outputs to DNA fragments: output views (SPEC §5 y(x)) and DNA assembly (o = asm(z, y))."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model_pool.errors import BadInput

VIEWS = ("logits", "probs", "features")
ASSEMBLIES = ("add", "concat", "mlp")


class OutputView(nn.Module):
    """y(x) as logits, softmax probabilities or penultimate features, projected to |z| where the
    width differs (one learned projection per input width, shared by models of that width)."""

    def __init__(self, kind: str, dims: list[int], z_dim: int):
        super().__init__()
        if kind not in VIEWS:
            raise BadInput(f"unknown output view {kind!r}; known: {', '.join(VIEWS)}")
        self.kind, self.z_dim = kind, z_dim
        self.proj = nn.ModuleDict({str(d): nn.Linear(d, z_dim) for d in sorted(set(dims)) if d != z_dim})

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "probs":
            y = F.softmax(y, dim=1)
        key = str(y.shape[1])
        if key in self.proj:
            return self.proj[key](y)
        if y.shape[1] != self.z_dim:
            raise BadInput(f"no projection for outputs of width {y.shape[1]} (known: {sorted(self.proj)})")
        return y


class Assembly(nn.Module):
    """DNA fragment o from generator output z and projected model output y, both (B, z_dim):
    ``add`` o = z + y (paper), ``concat`` o = [z, y], ``mlp`` o = MLP([z, y])."""

    def __init__(self, kind: str, z_dim: int):
        super().__init__()
        if kind not in ASSEMBLIES:
            raise BadInput(f"unknown assembly {kind!r}; known: {', '.join(ASSEMBLIES)}")
        self.kind = kind
        self.out_dim = 2 * z_dim if kind == "concat" else z_dim
        self.mlp = nn.Sequential(nn.Linear(2 * z_dim, z_dim), nn.ReLU(), nn.Linear(z_dim, z_dim)) if kind == "mlp" else None

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "add":
            return z + y
        cat = torch.cat([z, y], dim=1)
        return cat if self.mlp is None else self.mlp(cat)


class ProvenanceClassifier(nn.Module):
    """f_p: three fully connected layers with ReLU and dropout over o^c = [o^s, o^t] (+ pair-level
    extra features such as closeness, Zest distance, basin barrier); returns one logit per fragment.

    ``pair="concat"`` is the paper's o^c; ``pair="compare"`` also feeds o^s * o^t and |o^s - o^t|, so
    that f_p can test agreement with the source directly (a siamese-style option, not in the paper)."""

    def __init__(self, fragment_dim: int, hidden: int = 256, dropout: float = 0.2, n_extra: int = 0,
                 pair: str = "concat"):
        super().__init__()
        if pair not in ("concat", "compare"):
            raise BadInput(f"pair must be concat or compare, got {pair!r}")
        self.n_extra, self.pair = n_extra, pair
        width = (2 if pair == "concat" else 4) * fragment_dim + n_extra
        self.net = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden // 2, 1),
        )

    def forward(self, o_s: torch.Tensor, o_x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        parts = [o_s, o_x] if self.pair == "concat" else [o_s, o_x, o_s * o_x, (o_s - o_x).abs()]
        if self.n_extra:
            if extra is None or extra.shape[-1] != self.n_extra:
                raise BadInput(f"classifier expects {self.n_extra} extra pair features")
            parts.append(extra.expand(o_s.shape[0], -1))
        return self.net(torch.cat(parts, dim=1)).squeeze(1)
