"""Black-box outputs of a model, with one clear error for models that cannot take the inputs or
return non-finite values: every method that only queries a model goes through ``query``."""
from __future__ import annotations

import torch
from torch import nn

from model_pool.errors import BadInput, first_line


@torch.no_grad()
def query(model: nn.Module, x: torch.Tensor, batch_size: int = 4096, probs: bool = False) -> torch.Tensor:
    """Black-box outputs of ``model`` on ``x`` (logits, or softmax ``probs``), with clear errors on bad models."""
    try:
        out = torch.cat([model(chunk) for chunk in x.split(batch_size)])
    except RuntimeError as e:
        raise BadInput(f"the model cannot take inputs of shape {list(x.shape[1:])} "
                        f"({first_line(e, 120)})") from None
    if out.ndim != 2:
        raise BadInput(f"the model returns outputs of shape {list(out.shape[1:])}, expected class scores")
    if not torch.isfinite(out).all():
        raise BadInput("the model's outputs contain NaN or inf")
    return out.softmax(1) if probs else out


def labels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return query(model, x).argmax(1)
