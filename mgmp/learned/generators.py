"""DNA generators g: x -> z (N, z_dim). Any registered architecture serves, its head sized to |z|:
``resnet50`` (torchvision; ``pretrained`` = a local state-dict file), ``distilbert`` (transformers;
tiny config, or ``pretrained`` = a local directory), and small ones (``small_cnn``, ``bilstm``, ...)
for the embedded default."""
from __future__ import annotations

from torch import nn

from model_pool.archs import create_model, list_models


def create_generator(name: str, z_dim: int, **kwargs) -> nn.Module:
    """Build generator ``name`` with a ``z_dim``-wide output head."""
    return create_model(name, z_dim, **kwargs)


def list_generators(pattern: str = "*") -> list[str]:
    return list_models(pattern)
