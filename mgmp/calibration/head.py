"""The MGMP provenance classifier's head f_p (SPEC §5: three fully connected layers with ReLU and dropout, trained
with BCE) over a pair's normalised score features alone: the design card's learned combination, a candidate for the
fused test beside the logistic fusion (``mgmp bench transfer --combiners``, ``mgmp calibrate --domains
--combiner``). DNA fragments are left out: each domain's fragments live in its own generator's input space (8x8
digits, 32x32 RGB, text), so they cannot be pooled across domains; DNA enters as its score column. Stored as plain
JSON numbers, as the logistic fusion."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mgmp.learned.fragments import ProvenanceClassifier

KIND = "mgmp-head"


class HeadFusion:
    """``fit(x, related)`` on (pairs, columns) features, every column oriented so that higher means related;
    ``predict_proba`` -> P(lineage). A missing value is filled with the column's least related fitted value. 64 hidden
    units rather than MGMPModule's 256: six features in, and the weights ship as JSON text."""

    def __init__(self, columns: list[str], hidden: int = 64, dropout: float = 0.2, epochs: int = 400,
                 lr: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0):
        self.columns, self.hidden, self.dropout = list(columns), hidden, dropout
        self.epochs, self.lr, self.weight_decay, self.seed = epochs, lr, weight_decay, seed
        self.fill = self.mean = self.scale = None
        self.net: ProvenanceClassifier | None = None

    def _inputs(self, x: np.ndarray) -> torch.Tensor:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        x = np.where(np.isfinite(x), x, self.fill)
        return torch.as_tensor((x - self.mean) / self.scale, dtype=torch.float32)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        empty = x.new_zeros(len(x), 0)  # no fragments: the head reads the pair features only
        return self.net(empty, empty, x)

    def fit(self, x: np.ndarray, related: np.ndarray) -> "HeadFusion":
        x, y = np.asarray(x, dtype=float), torch.as_tensor(np.asarray(related, dtype=bool), dtype=torch.float32)
        finite = np.where(np.isfinite(x), x, np.inf)
        self.fill = np.where(np.isfinite(finite.min(0)), finite.min(0), 0.0)
        filled = np.where(np.isfinite(x), x, self.fill)
        self.mean, self.scale = filled.mean(0), np.where(filled.std(0) > 0, filled.std(0), 1.0)
        torch.manual_seed(self.seed)
        self.net = ProvenanceClassifier(0, self.hidden, self.dropout, n_extra=x.shape[1])
        inputs = self._inputs(x)
        positives = float(y.sum())
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(y) - positives) / max(positives, 1.0)))
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.net.train()
        for _ in range(self.epochs):  # full batch: a few hundred pairs
            opt.zero_grad()
            loss_fn(self._logits(inputs), y).backward()
            opt.step()
        self.net.eval()
        return self

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return torch.sigmoid(self._logits(self._inputs(x))).double().numpy()

    def describe(self) -> dict[str, Any]:
        return {"kind": KIND, "columns": self.columns, "hidden": self.hidden, "dropout": self.dropout,
                "fill": self.fill.tolist(), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "state": {k: v.tolist() for k, v in self.net.state_dict().items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "HeadFusion":
        head = cls(d["columns"], d["hidden"], d["dropout"])
        head.fill, head.mean, head.scale = (np.asarray(d[k], dtype=float) for k in ("fill", "mean", "scale"))
        head.net = ProvenanceClassifier(0, head.hidden, head.dropout, n_extra=len(head.columns))
        head.net.load_state_dict({k: torch.tensor(v) for k, v in d["state"].items()})
        head.net.eval()
        return head
