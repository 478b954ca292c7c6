"""Modification recipes by relation name: each turns a parent (or nothing) into a new model.

A recipe is ``fn(model, ctx) -> nn.Module``. ``model`` is the previous step's output in a
combination such as ``transfer+prune`` (``None`` for the first step, which then starts from a copy
of the parent, or from scratch). ``ctx`` carries the task data, the loaded parents and the params.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from model_pool._registry import Registry
from model_pool.card import ModelCard
from model_pool.data.base import TaskData
from model_pool.errors import BadInput
from model_pool.train import fit

RECIPES: Registry = Registry("recipe")
TRAIN_KEYS = ("epochs", "lr", "batch_size", "weight_decay", "optimizer")


@dataclass
class RecipeContext:
    """Everything one job's recipe steps may use."""

    data: TaskData
    parents: list[nn.Module] = field(default_factory=list)
    parent_cards: list[ModelCard] = field(default_factory=list)
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    step: str = ""

    def p(self, key: str, default: Any = None) -> Any:
        """A param of the current step: ``params[step][key]`` first, then ``params[key]``."""
        own = self.params.get(self.step)
        if isinstance(own, dict) and key in own:
            return own[key]
        return self.params.get(key, default)

    def start(self, model: nn.Module | None) -> nn.Module:
        """The model a derived step works on: the previous step's, else a copy of the first parent."""
        if model is not None:
            return model
        if not self.parents:
            raise BadInput(f"recipe {self.step!r} needs a parent")
        return copy.deepcopy(self.parents[0])

    def train(self, model: nn.Module, **overrides) -> nn.Module:
        """Train on the task's training split with this step's training params."""
        kw = {k: self.p(k) for k in TRAIN_KEYS if self.p(k) is not None}
        kw.update(overrides)
        n = self.p("n_train")
        x, y = self.data.x_train, self.data.y_train
        if n:
            idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))[: int(n)]
            x, y = x[idx], y[idx]
        return fit(model, x, y, seed=self.seed, **kw)


Recipe = Callable[[nn.Module | None, RecipeContext], nn.Module]


def run_recipe(relation: str, ctx: RecipeContext) -> nn.Module:
    """Run a relation or a ``+``-joined combination of relations, in order."""
    model = None
    for i, step in enumerate(relation.split("+")):
        ctx.step = step
        torch.manual_seed(ctx.seed + 7919 * i)
        model = RECIPES.get(step)(model, ctx)
    return model.eval()


def check_head(model: nn.Module, ctx: RecipeContext) -> None:
    n = ctx.data.num_classes
    if model.head.out_features != n:
        raise BadInput(
            f"{ctx.step}: parent has {model.head.out_features} classes, task {ctx.data.name} has {n}; use transfer"
        )


from model_pool.recipes import (  # noqa: E402,F401
    adapter,
    adv_train,
    distill,
    finetune,
    merge,
    prune,
    quantize,
    scratch,
)

__all__ = ["RECIPES", "RecipeContext", "run_recipe"]
