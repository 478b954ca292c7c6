"""The in-memory form every dataset loader returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class TaskData:
    """A classification task held as tensors.

    Images: ``x_*`` float32 (N, C, H, W), already normalised as ``input['normalization']`` says.
    Text: ``x_*`` int64 (N, L) token ids, 0 = padding; ``input['tokenizer']`` names the tokenizer.
    ``y_*`` int64 (N,) in [0, num_classes).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input: dict[str, Any]
    classes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.input["kind"]

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> "TaskData":
        """A seeded random subset, for quick runs."""
        g = torch.Generator().manual_seed(seed)

        def pick(x, y, n):
            if n is None or n >= len(y):
                return x, y
            idx = torch.randperm(len(y), generator=g)[:n]
            return x[idx], y[idx]

        xtr, ytr = pick(self.x_train, self.y_train, n_train)
        xte, yte = pick(self.x_test, self.y_test, n_test)
        return TaskData(self.name, xtr, ytr, xte, yte, self.num_classes, dict(self.input), list(self.classes), dict(self.meta))
