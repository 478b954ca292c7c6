"""Modification recipes by relation name: each turns a parent (or nothing) into a new model.

A recipe is ``fn(model, ctx) -> nn.Module``. ``model`` is the previous step's output in a
combination such as ``transfer+prune`` (``None`` for the first step, which then starts from a copy
of the parent, or from scratch). ``ctx`` carries the task data, the loaded parents and the params.
Each recipe declares the params it reads with :func:`reads` (type and spec); a plan's params are
checked when the plan is parsed, and the values a step reads again when it runs.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn

from model_pool._registry import Registry
from model_pool.card import ModelCard
from model_pool.data.base import TaskData
from model_pool.errors import BadInput
from model_pool.params import Choice, Range, check_names, check_params
from model_pool.train import fit

RECIPES: Registry = Registry("recipe")
# name -> (type, spec) of the params ``fit`` takes (None: fit's default)
FIT_PARAMS = {"epochs": (int | None, Range(0, 10_000)), "lr": (float | None, Range(0, 10, open_lo=True)),
              "batch_size": (int | None, Range(1, 1_000_000)), "weight_decay": (float | None, Range(0, 1)),
              "optimizer": (str | None, Choice("adam", "sgd"))}
TRAIN_KEYS = tuple(FIT_PARAMS)
TRAIN_PARAMS = {**FIT_PARAMS, "n_train": (int | None, Range(1, 1_000_000))}  # what ``RecipeContext.train`` reads


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


def reads(*groups: dict, **params: tuple) -> Callable[[Recipe], Recipe]:
    """Declare the params a recipe reads: groups such as ``TRAIN_PARAMS`` and ``name=(type, spec or None)``."""
    declared = {k: v for g in (*groups, params) for k, v in g.items()}

    def mark(fn: Recipe) -> Recipe:
        fn.param_types = {k: t for k, (t, _) in declared.items()}
        fn.param_specs = {k: s for k, (_, s) in declared.items() if s is not None}
        return fn

    return mark


def check_recipe_params(owner: str, relation: str, params: dict[str, Any], names: Iterable[str] | None = None) -> None:
    """``BadInput`` unless the values the steps of ``relation`` read from ``params`` have their declared types
    and specs (a mapping under a step's name holds that step's own, as ``RecipeContext.p`` reads them).
    ``names``: keys some step must read (a plan's own params); None where unread params pass (run time)."""
    steps = relation.split("+")
    types, specs = {}, {}
    for step in steps:
        types |= RECIPES.get(step).param_types
        specs |= RECIPES.get(step).param_specs
    if names is not None:
        check_names(owner, types, [n for n in names if n not in steps])
    check_params(owner, types, {k: v for k, v in params.items() if k in types}, specs)
    for step in steps:
        own, fn = params.get(step), RECIPES.get(step)
        if names is not None and step in params and not isinstance(own, dict):
            raise BadInput(f"{owner}: {step}: a step's own params must be a mapping, got {type(own).__name__}")
        if isinstance(own, dict):
            own = own if names is not None else {k: v for k, v in own.items() if k in fn.param_types}
            check_params(f"{owner}: {step}", fn.param_types, own, fn.param_specs)


def run_recipe(relation: str, ctx: RecipeContext) -> nn.Module:
    """Run a relation or a ``+``-joined combination of relations, in order."""
    check_recipe_params(f"recipe {relation}", relation, ctx.params)
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

__all__ = ["RECIPES", "RecipeContext", "check_recipe_params", "run_recipe"]
