"""Continued training from the parent: all layers, a language model's top blocks, the last layer, a
re-initialised last layer, or a new head for another task (transfer)."""
from model_pool.archs import replace_head
from model_pool.errors import BadInput
from model_pool.params import Range
from model_pool.recipes import RECIPES, TRAIN_PARAMS, RecipeContext, check_head, reads


@RECIPES.register("finetune")
@reads(TRAIN_PARAMS)
def finetune(model, ctx: RecipeContext):
    """All layers trained further on the task."""
    model = ctx.start(model)
    check_head(model, ctx)
    return ctx.train(model)


@RECIPES.register("finetune_top")
@reads(TRAIN_PARAMS, layers=(int, Range(1, 10_000)))
def finetune_top(model, ctx: RecipeContext):
    """A language model's top ``layers`` transformer blocks and final norm trained further, the rest frozen."""
    model = ctx.start(model)
    check_head(model, ctx)
    blocks = getattr(getattr(getattr(model, "hf", None), "model", None), "layers", None)
    if blocks is None:
        raise BadInput("finetune_top trains a causal language model's top blocks; this model has none")
    top = list(blocks)[-int(ctx.p("layers", 2)):] + [model.hf.model.norm]
    return ctx.train(model, params=[p for m in top for p in m.parameters()])


@RECIPES.register("finetune_last")
@reads(TRAIN_PARAMS)
def finetune_last(model, ctx: RecipeContext):
    """Only the head trained further."""
    model = ctx.start(model)
    check_head(model, ctx)
    return ctx.train(model, params=model.head.parameters())


@RECIPES.register("retrain_last")
@reads(TRAIN_PARAMS)
def retrain_last(model, ctx: RecipeContext):
    """Head re-initialised, then only the head trained."""
    model = replace_head(ctx.start(model), ctx.data.num_classes)
    return ctx.train(model, params=model.head.parameters())


@RECIPES.register("transfer")
@reads(TRAIN_PARAMS, freeze_body=(bool, None))
def transfer(model, ctx: RecipeContext):
    """New head for the task's classes, then the whole model (or the head alone: ``freeze_body``)."""
    model = replace_head(ctx.start(model), ctx.data.num_classes)
    params = model.head.parameters() if ctx.p("freeze_body", False) else None
    return ctx.train(model, params=params)
