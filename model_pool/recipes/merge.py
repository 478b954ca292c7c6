"""``merge``: weighted average of two or more same-architecture parents (model soup)."""
import copy

import torch

from model_pool.errors import BadInput
from model_pool.recipes import RECIPES, RecipeContext
from model_pool.train import recompute_bn


@RECIPES.register("merge")
@torch.no_grad()
def merge(model, ctx: RecipeContext):
    """Average parameters and BN statistics; recompute BN statistics on task data when ``recompute_bn``."""
    if model is not None or len(ctx.parents) < 2:
        raise BadInput("merge is a first step and needs two or more parents")
    states = [p.state_dict() for p in ctx.parents]
    if any(s.keys() != states[0].keys() or any(s[k].shape != states[0][k].shape for k in s) for s in states):
        raise BadInput("merge needs parents with the same architecture and head")
    w = torch.tensor(ctx.p("weights") or [1.0] * len(states), dtype=torch.float32)
    w = w / w.sum()
    avg = {k: sum(wi * s[k].float() for wi, s in zip(w, states)).to(v.dtype) if v.is_floating_point() else v
           for k, v in states[0].items()}
    merged = copy.deepcopy(ctx.parents[0])
    merged.load_state_dict(avg)
    if ctx.p("recompute_bn", True):
        recompute_bn(merged, ctx.data.x_train)
    return merged

