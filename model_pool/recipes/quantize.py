"""``quantize``: post-training weight quantization, stored dequantized (values on the grid).

``bits`` 8 or 4: symmetric per-output-channel fake quantization of conv/linear weights
(``torch.fake_quantize_per_channel_affine``); ``bits`` 16: every float tensor rounded to float16.
"""
import torch
from torch import nn

from model_pool.params import Choice
from model_pool.recipes import RECIPES, RecipeContext, reads


def quantize_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-channel (dim 0) quantize-dequantize of ``w`` to ``bits`` bits."""
    qmax = 2 ** (bits - 1) - 1
    scale = w.detach().abs().flatten(1).amax(1).clamp_min(1e-12) / qmax
    zero = torch.zeros(w.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale.float(), zero, 0, -qmax - 1, qmax)


@RECIPES.register("quantize")
@reads(bits=(int, Choice(4, 8, 16)))
@torch.no_grad()
def quantize(model, ctx: RecipeContext):
    model = ctx.start(model)
    bits = int(ctx.p("bits", 8))
    if bits == 16:
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())
        return model
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.copy_(quantize_weight(m.weight, bits))
    return model
