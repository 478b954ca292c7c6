"""``adapter``: LoRA (peft) on the parent's conv/linear layers, trained, then merged into the weights."""
from torch import nn

from model_pool.recipes import RECIPES, RecipeContext, check_head


@RECIPES.register("adapter")
def adapter(model, ctx: RecipeContext):
    """Train rank-``r`` adapters (base weights frozen, head frozen unless ``train_head``) and merge them."""
    from peft import (  # imports transformers: only when LoRA is used
        LoraConfig,
        get_peft_model,
    )

    model = ctx.start(model)
    check_head(model, ctx)
    targets = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and n != "head"]
    r = int(ctx.p("r", 4))
    config = LoraConfig(r=r, lora_alpha=int(ctx.p("alpha", 2 * r)), target_modules=targets,
                        modules_to_save=["head"] if ctx.p("train_head", False) else None)
    peft_model = get_peft_model(model, config)
    ctx.train(peft_model)
    return peft_model.merge_and_unload()
