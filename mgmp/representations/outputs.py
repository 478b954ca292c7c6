"""Black-box outputs of a model, with one clear error for models that cannot take the inputs or
return non-finite values: every method that only queries a model goes through ``query``."""
from __future__ import annotations

import torch
from torch import nn

from model_pool.errors import BadInput, first_line

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s weights are (CPU for a model without parameters, e.g. an endpoint)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@torch.no_grad()
def query(model: nn.Module, x: torch.Tensor, batch_size: int = 256, probs: bool = False,
          precision: str = "float32") -> torch.Tensor:
    """Black-box outputs of ``model`` on ``x`` (logits, or softmax ``probs``, on the CPU), with clear
    errors on bad models. ``batch_size``: 256 inputs per forward, near the best CPU throughput of the real-size
    models measured (closeness on EfficientNet-Lite0 at 64 px: 1.67x its forward floor with 4,096, 1.10x with 256). Inputs go to the model's device; ``precision`` "bfloat16" / "float16" runs the
    forwards under autocast (query-only methods, where a benchmark shows the decisions unchanged)."""
    device = model_device(model)
    dtype = PRECISIONS[precision]
    try:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = torch.cat([model(chunk.to(device)).cpu() for chunk in x.split(batch_size)])
    except RuntimeError as e:
        raise BadInput(f"the model cannot take inputs of shape {list(x.shape[1:])} "
                        f"({first_line(e, 120)})") from None
    if out.ndim != 2:
        raise BadInput(f"the model returns outputs of shape {list(out.shape[1:])}, expected class scores")
    if dtype is not None:
        out = out.float()
    if not torch.isfinite(out).all():
        raise BadInput("the model's outputs contain NaN or inf")
    return out.softmax(1) if probs else out


def labels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return query(model, x).argmax(1)


class QueryCounter:
    """Counts the inputs a model is asked about while the block runs (``with QueryCounter(model) as c``),
    and refuses past ``max_queries``: every score reports what it cost in suspect queries."""

    def __init__(self, model: nn.Module, max_queries: int | None = None):
        self.model, self.max_queries, self.n = model, max_queries, 0
        self._handle = None

    def _count(self, module: nn.Module, args: tuple) -> None:
        rows = len(args[0]) if args and hasattr(args[0], "__len__") else 1
        if self.max_queries is not None and self.n + rows > self.max_queries:
            raise BadInput(f"the suspect query budget of {self.max_queries} inputs is spent (--max-queries)")
        self.n += rows

    def __enter__(self) -> "QueryCounter":
        self._handle = self.model.register_forward_pre_hook(self._count)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()
