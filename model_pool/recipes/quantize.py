"""``quantize``: post-training weight quantization, stored dequantized (values on the grid).

``bits`` 8 or 4: symmetric fake quantization of conv/linear weights, one scale per output channel
(``torch.fake_quantize_per_channel_affine``) or, with ``group_size`` g, one per block of g consecutive inputs
of a channel (as GGUF's Q4/Q8 blocks of 32 and GPTQ/AWQ groups of 128 do); ``bits`` 16: every float tensor
rounded to float16.
"""
import torch
from torch import nn

from model_pool.errors import BadInput
from model_pool.params import Choice, Range
from model_pool.recipes import RECIPES, RecipeContext, reads


def quantize_weight(w: torch.Tensor, bits: int, group_size: int | None = None) -> torch.Tensor:
    """Symmetric quantize-dequantize of ``w`` to ``bits`` bits, per output channel (dim 0) or per group of
    ``group_size`` consecutive inputs of a channel."""
    rows = w.flatten(1)
    if group_size:
        if rows.shape[1] % group_size:
            raise BadInput(f"quantize: group_size {group_size} does not divide a weight's {rows.shape[1]} inputs")
        rows = rows.reshape(-1, group_size)
    qmax = 2 ** (bits - 1) - 1
    scale = rows.detach().abs().amax(1).clamp_min(1e-12) / qmax
    zero = torch.zeros(rows.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(rows, scale.float(), zero, 0, -qmax - 1, qmax).reshape(w.shape)


@RECIPES.register("quantize")
@reads(bits=(int, Choice(4, 8, 16)), group_size=(int | None, Range(1, 1_000_000)))
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
            m.weight.copy_(quantize_weight(m.weight, bits, ctx.p("group_size")))
    return model
