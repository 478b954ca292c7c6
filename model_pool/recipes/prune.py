"""``prune``: global magnitude (L1) pruning of conv/linear weights, then fine-tuning with the mask."""
from torch import nn
from torch.nn.utils import prune as tprune

from model_pool.params import Range
from model_pool.recipes import RECIPES, TRAIN_PARAMS, RecipeContext, check_head, reads


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@RECIPES.register("prune")
@reads(TRAIN_PARAMS, amount=(float, Range(0, 1)))
def prune(model, ctx: RecipeContext):
    """Zero the ``amount`` fraction of smallest weights across layers, fine-tune, make it permanent."""
    model = ctx.start(model)
    check_head(model, ctx)
    targets = prunable(model)
    tprune.global_unstructured(targets, pruning_method=tprune.L1Unstructured, amount=float(ctx.p("amount", 0.5)))
    model = ctx.train(model)
    for module, name in targets:
        tprune.remove(module, name)
    return model
