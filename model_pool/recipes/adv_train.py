"""``adv_train``: PGD adversarial training from the parent (Madry et al.)."""
import torch
import torch.nn.functional as F

from model_pool.attacks import pgd
from model_pool.params import Range
from model_pool.recipes import RECIPES, TRAIN_PARAMS, RecipeContext, check_head, reads


@RECIPES.register("adv_train")
@reads(TRAIN_PARAMS, eps=(float, Range(0, 1000)), steps=(int, Range(1, 1000)), clean_weight=(float, Range(0, 1)))
def adv_train(model, ctx: RecipeContext):
    """Train on PGD examples (``eps``, ``steps``, step ``eps/4``), mixed with clean ones by ``clean_weight``."""
    model = ctx.start(model)
    check_head(model, ctx)
    eps, steps, clean_w = float(ctx.p("eps", 0.1)), int(ctx.p("steps", 5)), float(ctx.p("clean_weight", 0.5))
    bounds = tuple(ctx.data.input["range"]) if "range" in ctx.data.input else None
    g = torch.Generator().manual_seed(ctx.seed)

    def loss(m, x, y):
        m.eval()
        adv = pgd(m, x, y, eps, eps / 4, steps, bounds, g)
        m.train()
        return (1 - clean_w) * F.cross_entropy(m(adv), y) + clean_w * F.cross_entropy(m(x), y)

    return ctx.train(model, loss_fn=loss)
