"""Where a student's or a thief's queries come from, under a budget (``queries``): the teacher is asked about these
inputs only, and its answers are all the student learns from.

``query_data``:
- ``task``: the source's own training inputs (a documented control: there the source's labels equal the truth, so
  such a thief is an independent model by construction);
- ``surrogate``: inputs of another distribution in the same input space (Knockoff Nets): the dataset ``surrogate``
  (a registered dataset name, e.g. ``shapes-public``, ``shapes-textures``, ``digits``; another task of it with
  ``surrogate_task``), read at the task's image size and channels; its labels are never used;
- ``noise``: uniform random images in the input's range;
- ``jbda``: Jacobian-based dataset augmentation (Papernot et al., 2017): ``seed_queries`` task inputs, then rounds
  that train the substitute on the teacher's labels and add x + λ·sign(∇ₓ F_y(x)) for the teacher's label y, until
  the budget is spent. Images only.
"""
from __future__ import annotations

import torch
from torch import nn

from model_pool.data import list_datasets, load_dataset
from model_pool.errors import BadInput
from model_pool.params import Choice, Range
from model_pool.train import fit, predict

QUERY_PARAMS = {"query_data": (str, Choice("task", "surrogate", "noise", "jbda")),
                "surrogate": (str | None, Choice(*list_datasets())), "surrogate_task": (int | None, Range(0, 1_000_000)),
                "seed_queries": (int | None, Range(1, 1_000_000)), "jbda_step": (float, Range(0, 10, open_lo=True))}
DEFAULT_SEED_QUERIES, DEFAULT_JBDA_STEP, JBDA_ROUND_EPOCHS = 100, 0.1, 3


def _budget(ctx, default: int) -> int:
    n = ctx.p("queries")
    return int(n) if n else default


def _images_only(ctx, what: str) -> tuple[int, ...]:
    if ctx.data.kind != "image":
        raise BadInput(f"{ctx.step}: query_data={what} needs image inputs; text students take task or surrogate")
    return tuple(ctx.data.x_train.shape[1:])


def _input_range(ctx) -> tuple[float, float]:
    lo, hi = ctx.data.input.get("range", [float(ctx.data.x_train.min()), float(ctx.data.x_train.max())])
    return float(lo), float(hi)


def _surrogate(ctx, n: int) -> torch.Tensor:
    name = ctx.p("surrogate")
    if not name:
        raise BadInput(f"{ctx.step}: query_data=surrogate needs surrogate: DATASET")
    kw = {}
    if ctx.data.kind == "image":
        c, h, _ = ctx.data.x_train.shape[1:]
        kw = {"image_size": int(h), "channels": int(c)}
    data = load_dataset(name, task=ctx.p("surrogate_task"), **kw)
    x = torch.cat([data.x_train, data.x_test])
    if x.shape[1:] != ctx.data.x_train.shape[1:]:
        raise BadInput(f"{ctx.step}: surrogate {name} inputs are {tuple(x.shape[1:])}, the task's "
                       f"{tuple(ctx.data.x_train.shape[1:])}")
    if len(x) < n:
        raise BadInput(f"{ctx.step}: surrogate {name} has {len(x)} inputs, the budget is {n}")
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(ctx.seed))[:n]]


def _task_inputs(ctx, n: int) -> torch.Tensor:
    x = ctx.data.x_train
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(ctx.seed))[:n]]


def jbda(student: nn.Module, teacher: nn.Module, seed_x: torch.Tensor, budget: int, step: float,
         bounds: tuple[float, float], fit_kw: dict, seed: int) -> torch.Tensor:
    """Grow ``seed_x`` to ``budget`` inputs by Jacobian-based augmentation, training ``student`` on the way."""
    x = seed_x
    round_ = 0
    while len(x) < budget:
        labels = predict(teacher, x).argmax(1)
        fit(student, x, labels, **{**fit_kw, "epochs": JBDA_ROUND_EPOCHS}, seed=seed + round_)
        student.eval()
        xr = x.clone().requires_grad_(True)
        picked = student(xr).gather(1, labels[:, None]).sum()
        (grad,) = torch.autograd.grad(picked, xr)
        new = (x + step * grad.sign()).clamp(*bounds).detach()
        x = torch.cat([x, new[: budget - len(x)]])
        round_ += 1
    return x


def thief_queries(ctx, student: nn.Module, teacher: nn.Module, fit_kw: dict) -> torch.Tensor:
    """The inputs the teacher is queried on, as ``query_data`` says (see the module)."""
    kind = ctx.p("query_data", "task")
    n = _budget(ctx, len(ctx.data.x_train))
    if kind == "task":  # without a budget, every training input in its order (as before budgets existed)
        return _task_inputs(ctx, n) if ctx.p("queries") else ctx.data.x_train
    if kind == "surrogate":
        return _surrogate(ctx, n)
    shape = _images_only(ctx, kind)
    lo, hi = _input_range(ctx)
    if kind == "noise":
        g = torch.Generator().manual_seed(ctx.seed)
        return lo + (hi - lo) * torch.rand((n, *shape), generator=g)
    seed_x = _task_inputs(ctx, min(int(ctx.p("seed_queries") or DEFAULT_SEED_QUERIES), n))
    return jbda(student, teacher, seed_x, n, float(ctx.p("jbda_step", DEFAULT_JBDA_STEP)), (lo, hi), fit_kw, ctx.seed)

