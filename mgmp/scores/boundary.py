"""Batched search for the distance to a model's decision boundary along fixed directions."""
from __future__ import annotations

from typing import Callable

import torch

LabelFn = Callable[[torch.Tensor], torch.Tensor]


def boundary_distance(label_fn: LabelFn, x: torch.Tensor, direction: torch.Tensor, d_max: float = 1.0,
                      steps: int = 16, iters: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest d in (0, d_max] with label(x + d·direction) != label(x), for all points at once.

    A coarse scan of ``steps`` equal steps finds the first flipped step, then ``iters`` bisection
    rounds narrow it: tolerance d_max / steps / 2**iters. Only labels are queried (black-box).
    Returns (d, label at x + d·direction); d = inf where no flip happens within d_max.
    """
    n = len(x)
    y0 = label_fn(x)
    grid = torch.linspace(0, d_max, steps + 1)[1:]
    shape = (1,) * (x.ndim - 1)
    xs = (x.unsqueeze(0) + grid.view(-1, 1, *shape) * direction.unsqueeze(0)).reshape(-1, *x.shape[1:])
    flipped = (label_fn(xs).view(steps, n) != y0).float()
    first = torch.where(flipped.any(0), flipped.argmax(0), torch.full((n,), steps))
    found = first < steps
    hi = torch.where(found, grid[first.clamp(max=steps - 1)], torch.full((n,), float("inf")))
    lo = torch.where(found & (first > 0), grid[(first - 1).clamp(min=0)], torch.zeros(n))
    idx = found.nonzero().squeeze(1)
    if len(idx):
        lo_i, hi_i, xi, di, yi = lo[idx], hi[idx], x[idx], direction[idx], y0[idx]
        for _ in range(iters):
            mid = (lo_i + hi_i) / 2
            flip = label_fn(xi + mid.view(-1, *shape) * di) != yi
            hi_i = torch.where(flip, mid, hi_i)
            lo_i = torch.where(flip, lo_i, mid)
        hi[idx] = hi_i
    y_far = y0.clone()
    if len(idx):
        y_far[idx] = label_fn(x[idx] + hi[idx].view(-1, *shape) * direction[idx])
    return hi, y_far
