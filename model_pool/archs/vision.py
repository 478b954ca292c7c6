"""Image classifiers: small CNN, MLP, ResNet-18/50 (torchvision), small-input AlexNet, tiny ViT.

Each splits into a body (``forward_features``) and a linear ``head``; see ``model_pool.archs``.
Builders accept ``in_channels`` and ``image_size`` alike, so one set of data kwargs fits every one.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from model_pool.archs import ARCHS

if TYPE_CHECKING:
    import torchvision  # imported on use below: importing it costs more than a second


class Classifier(nn.Module):
    """A body producing features and a linear head: the shape every mgmp model has."""

    input_kind = "image"

    def __init__(self, body: nn.Module, num_features: int, num_classes: int):
        super().__init__()
        self.body = body
        self.num_features = num_features
        self.head = nn.Linear(num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, num_features)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes)."""
        return self.head(self.forward_features(x))


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    """3x3 conv (no bias: BatchNorm follows), BatchNorm, ReLU."""
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@ARCHS.register("small_cnn")
def small_cnn(num_classes: int, in_channels: int = 3, image_size: int = 32, width: int = 32) -> Classifier:
    """Three conv-BN-ReLU layers, one 2x pooling, global average pooling; fast on 8x8 to 32x32 inputs."""
    body = nn.Sequential(*_conv_bn(in_channels, width), *_conv_bn(width, width), nn.MaxPool2d(2),
                         *_conv_bn(width, 2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Classifier(body, 2 * width, num_classes)


@ARCHS.register("cnn4")
def cnn4(num_classes: int, in_channels: int = 3, image_size: int = 32, width: int = 32) -> Classifier:
    """Four conv-BN-ReLU stages, each followed by 2x max-pooling (widths w, 2w, 3w, 4w), global average pooling:
    a receptive field that covers a 32x32 image, for tasks where small_cnn's does not (the shapes task)."""
    widths = [in_channels, width, 2 * width, 3 * width, 4 * width]
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:]):
        layers += [*_conv_bn(a, b), nn.MaxPool2d(2, ceil_mode=True)]  # ceil: an 8x8 input still has a 1x1 map
    return Classifier(nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()), 4 * width, num_classes)


@ARCHS.register("mlp")
def mlp(num_classes: int, in_channels: int = 3, image_size: int = 32, hidden: Sequence[int] = (128, 64)) -> Classifier:
    """Flatten, then fully connected ReLU layers of sizes ``hidden`` (none: a linear model on pixels)."""
    sizes = [in_channels * image_size * image_size, *hidden]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    return Classifier(nn.Sequential(*layers), sizes[-1], num_classes)


def _load_matching(net: nn.Module, path: str) -> None:
    """Copy the tensors of the local state-dict file ``path`` whose names and shapes match ``net``'s.

    ``fc`` and a reshaped ``conv1`` are skipped by design; anything else left out is warned about."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = net.state_dict()
    keep = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape and not k.startswith("fc.")}
    net.load_state_dict(keep, strict=False)
    expected = ("fc.", "conv1.")
    left = sorted(k for k in own.keys() | state.keys()
                  if k not in keep and not k.startswith(expected) and not k.endswith("num_batches_tracked"))
    if left:
        warnings.warn(f"{path}: {len(left)} tensors not loaded (missing, unexpected or reshaped), e.g. {left[:4]}")


def _resnet(factory: Callable[..., torchvision.models.ResNet], num_classes: int, in_channels: int,
            small_input: bool, pretrained: str | None) -> Classifier:
    """A torchvision ResNet body with a separate head; see ``resnet18``."""
    net = factory(weights=None)
    if small_input or in_channels != 3:
        stride, k = (1, 3) if small_input else (2, 7)
        net.conv1 = nn.Conv2d(in_channels, 64, k, stride, k // 2, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
    if small_input:
        net.maxpool = nn.Identity()
    if pretrained:
        _load_matching(net, pretrained)
    num_features = net.fc.in_features
    net.fc = nn.Identity()
    return Classifier(net, num_features, num_classes)


@ARCHS.register("resnet18")
def resnet18(num_classes: int, in_channels: int = 3, image_size: int = 32, small_input: bool = True,
             pretrained: str | None = None) -> Classifier:
    """torchvision ResNet-18; ``small_input``: 3x3 stride-1 stem, no max-pool (CIFAR-style);
    ``pretrained``: a local torchvision state-dict file (``weights_only=True``), never downloaded."""
    import torchvision

    return _resnet(torchvision.models.resnet18, num_classes, in_channels, small_input, pretrained)


@ARCHS.register("resnet50")
def resnet50(num_classes: int, in_channels: int = 3, image_size: int = 32, small_input: bool = True,
             pretrained: str | None = None) -> Classifier:
    """torchvision ResNet-50, options as ``resnet18``."""
    import torchvision

    return _resnet(torchvision.models.resnet50, num_classes, in_channels, small_input, pretrained)


@ARCHS.register("alexnet")
def alexnet(num_classes: int, in_channels: int = 3, image_size: int = 32, width_mult: float = 0.25,
            dropout: float = 0.5) -> Classifier:
    """AlexNet's five-conv / two-FC pattern for small inputs (3x3 kernels, two pools), widths scaled."""
    c = [max(8, int(w * width_mult)) for w in (64, 192, 384, 256, 256)]
    fc = max(32, int(4096 * width_mult / 4))
    body = nn.Sequential(
        nn.Conv2d(in_channels, c[0], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(c[0], c[1], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Dropout(dropout), nn.Linear(c[4] * 4, fc), nn.ReLU(inplace=True),
        nn.Dropout(dropout), nn.Linear(fc, fc), nn.ReLU(inplace=True),
    )
    return Classifier(body, fc, num_classes)


class _ViTBody(nn.Module):
    """torchvision's VisionTransformer without its head: class-token output after the final norm."""

    def __init__(self, vit: torchvision.models.VisionTransformer):
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.vit._process_input(x)
        cls = self.vit.class_token.expand(x.shape[0], -1, -1)
        return self.vit.encoder(torch.cat([cls, tokens], dim=1))[:, 0]


@ARCHS.register("vit_tiny")
def vit_tiny(num_classes: int, in_channels: int = 3, image_size: int = 32, patch_size: int = 4, num_layers: int = 2,
             num_heads: int = 2, hidden_dim: int = 64, mlp_dim: int = 128) -> Classifier:
    """A two-layer ViT (torchvision's implementation) for small images; ``patch_size`` divides ``image_size``."""
    if image_size % patch_size:
        raise ValueError(f"vit_tiny: patch_size {patch_size} does not divide image_size {image_size}")
    import torchvision

    vit = torchvision.models.VisionTransformer(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim)
    vit.conv_proj = nn.Conv2d(in_channels, hidden_dim, patch_size, patch_size)
    fan_in = in_channels * patch_size * patch_size
    nn.init.trunc_normal_(vit.conv_proj.weight, std=math.sqrt(1 / fan_in))  # as torchvision initialises it
    nn.init.zeros_(vit.conv_proj.bias)
    vit.heads = nn.Identity()
    return Classifier(_ViTBody(vit), hidden_dim, num_classes)
