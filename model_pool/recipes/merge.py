"""``merge``: weighted average of two or more same-architecture parents (model soup)."""
import copy

import torch

from model_pool.errors import BadInput
from model_pool.params import Range
from model_pool.recipes import RECIPES, RecipeContext, reads
from model_pool.train import recompute_bn


@RECIPES.register("merge")
@reads(weights=(list[float] | None, Range(0, 1e6)), recompute_bn=(bool, None))
@torch.no_grad()
def merge(model, ctx: RecipeContext):
    """Average parameters and BN statistics; recompute BN statistics on task data when ``recompute_bn``."""
    if model is not None or len(ctx.parents) < 2:
        raise BadInput("merge is a first step and needs two or more parents")
    states = [p.state_dict() for p in ctx.parents]
    if any(s.keys() != states[0].keys() or any(s[k].shape != states[0][k].shape for k in s) for s in states):
        raise BadInput("merge needs parents with the same architecture and head")
    weights = ctx.p("weights")
    w = torch.tensor([1.0] * len(states) if weights is None else weights, dtype=torch.float32)
    if len(w) != len(states) or not w.sum() > 0:
        raise BadInput(f"merge: weights needs one weight per parent ({len(states)}), not all zero; got {w.tolist()}")
    w = w / w.sum()
    avg = {k: sum(wi * s[k].float() for wi, s in zip(w, states)).to(v.dtype) if v.is_floating_point() else v
           for k, v in states[0].items()}
    merged = copy.deepcopy(ctx.parents[0])
    merged.load_state_dict(avg)
    if ctx.p("recompute_bn", True):
        recompute_bn(merged, ctx.data.x_train)
    return merged

