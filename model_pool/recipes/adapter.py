"""``adapter``: LoRA (peft) on the parent's conv/linear layers, trained, then merged into the weights.

Grouped (depthwise) convolutions are left alone: peft cannot merge LoRA into them, and a low-rank update of
a per-channel filter means nothing."""
from torch import nn

from model_pool.params import Range
from model_pool.recipes import RECIPES, TRAIN_PARAMS, RecipeContext, check_head, reads


@RECIPES.register("adapter")
@reads(TRAIN_PARAMS, r=(int, Range(1, 1024)), alpha=(int, Range(1, 100_000)), train_head=(bool, None))
def adapter(model, ctx: RecipeContext):
    """Train rank-``r`` adapters (base weights frozen, head frozen unless ``train_head``) and merge them."""
    from peft import (  # imports transformers: only when LoRA is used
        LoraConfig,
        get_peft_model,
    )

    model = ctx.start(model)
    check_head(model, ctx)
    targets = [n for n, m in model.named_modules() if m is not model.head and
               (isinstance(m, nn.Linear) or isinstance(m, nn.Conv2d) and m.groups == 1)]  # a LM's head: hf.lm_head
    r = int(ctx.p("r", 4))
    config = LoraConfig(r=r, lora_alpha=int(ctx.p("alpha", 2 * r)), target_modules=targets,
                        modules_to_save=["head"] if ctx.p("train_head", False) else None)
    peft_model = get_peft_model(model, config)
    ctx.train(peft_model)
    return peft_model.merge_and_unload()
