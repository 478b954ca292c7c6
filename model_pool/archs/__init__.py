"""Architectures by name: ``create_model("small_cnn", num_classes=10, in_channels=1)``.

Contract every registered model follows (tests check it for each name):
- ``forward(x)`` returns logits (N, num_classes); images are float (N, C, H, W), text is int64
  token ids (N, L) with 0 as padding;
- ``forward_features(x)`` returns the penultimate features (N, num_features) and
  ``forward(x) == head(forward_features(x))`` with ``head`` an ``nn.Linear``;
- attributes ``num_features`` and ``input_kind`` ("image" or "text").
"""
from __future__ import annotations

from torch import nn

from model_pool._registry import Registry
from model_pool.archs.external import create_external, is_external

ARCHS: Registry = Registry("architecture")


def create_model(name: str, num_classes: int, **arch_kwargs) -> nn.Module:
    """Instantiate architecture ``name`` with a fresh ``num_classes``-way head (``FAMILY:NAME`` for
    torchvision / timm networks, see :mod:`model_pool.archs.external`)."""
    if is_external(name):
        return create_external(name, num_classes, **arch_kwargs)
    return ARCHS.get(name)(num_classes=num_classes, **arch_kwargs)


def list_models(pattern: str = "*") -> list[str]:
    return ARCHS.names(pattern)


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Give ``model`` a freshly initialised ``num_classes``-way head (in place)."""
    model.head = nn.Linear(model.num_features, num_classes)
    return model


def standalone_kwargs(arch_kwargs: dict, model: nn.Module) -> dict:
    """``arch_kwargs`` that rebuild ``model``'s architecture without its ``pretrained`` source
    (weights come from the model directory; HF encoders contribute their config's sizes)."""
    kw = {k: v for k, v in arch_kwargs.items() if k != "pretrained"}
    if "pretrained" in arch_kwargs and hasattr(model, "config_kwargs"):
        kw.update(model.config_kwargs())
    return kw


from model_pool.archs import causal as _causal  # noqa: E402,F401
from model_pool.archs import efficientnet_lite as _efficientnet_lite  # noqa: E402,F401
from model_pool.archs import text as _text  # noqa: E402,F401
from model_pool.archs import vision as _vision  # noqa: E402,F401

__all__ = ["ARCHS", "create_model", "list_models", "replace_head", "standalone_kwargs"]
