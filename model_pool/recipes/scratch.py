"""``scratch``: a root trained from random init; with another seed it is a hard negative."""
from model_pool.archs import create_model
from model_pool.errors import BadInput
from model_pool.recipes import RECIPES, TRAIN_PARAMS, RecipeContext, reads


@RECIPES.register("scratch")
@reads(TRAIN_PARAMS)
def scratch(model, ctx: RecipeContext):
    if model is not None:
        raise BadInput("scratch must be the first step")
    if not ctx.arch:
        raise BadInput("scratch needs an arch")
    return ctx.train(create_model(ctx.arch, ctx.data.num_classes, **ctx.arch_kwargs))
