"""EfficientNet-Lite0/1/2 (package ``efficientnet-lite-pytorch``), ImageNet-pretrained from ``real:NAME``.

Inputs are images in [0, 1] of any size (at least 32 pixels makes sense: five stride-2 stages), RGB or grey
(``in_channels=1``: the channel is repeated); the model normalises them with ImageNet's mean and std.
Features are the pooled output of ``extract_features`` after the package's dropout (and its drop-connect
in training); the ImageNet ``_fc`` is replaced by the mgmp ``head``. TensorFlow's 'SAME' padding is computed for each input, ahead of plain
``nn.Conv2d`` layers, so LoRA, pruning and quantization see ordinary convolutions.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model_pool.archs import ARCHS
from model_pool.archs.vision import Classifier
from model_pool.errors import BadInput
from model_pool.guards import read_state_dict
from model_pool.real import resolve

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BN_MOMENTUM = 0.1  # PyTorch's default


class _SamePad(nn.Module):
    """TensorFlow 'SAME' padding for this input's size, then a plain convolution (``conv``, which LoRA may wrap:
    its geometry is kept here)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv
        self.geometry = list(zip(conv.kernel_size, conv.stride))[::-1]  # (kernel, stride): width first, as F.pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, (k, s) in zip(reversed(x.shape[-2:]), self.geometry):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return self.conv(F.pad(x, pads))


def _plain_convs(net: nn.Module) -> None:
    """Replace the package's padding convolutions by ``nn.Conv2d`` (1x1, stride 1) or ``_SamePad`` (the others),
    keeping their parameters."""
    for name, m in list(net.named_modules()):
        if isinstance(m, nn.Conv2d) and type(m) is not nn.Conv2d:
            conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, groups=m.groups,
                             bias=m.bias is not None)
            conv.weight, conv.bias = m.weight, m.bias
            no_pad = conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            parent, _, attr = name.rpartition(".")
            setattr(net.get_submodule(parent), attr, conv if no_pad else _SamePad(conv))


class _LiteBody(nn.Module):
    """[0, 1] images -> ImageNet normalisation -> ``extract_features`` -> global average pool -> dropout."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        return self.net._dropout(self.net._avg_pooling(self.net.extract_features(x)).flatten(1))


def _check_fits(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], what: str) -> None:
    """One ``BadInput`` line counting the tensors ``state`` lacks, adds or shapes otherwise than ``own``."""
    problems = {"missing": [k for k in own if k not in state], "unexpected": [k for k in state if k not in own],
                "of another shape": [k for k in own if k in state and state[k].shape != own[k].shape]}
    found = [f"{len(keys)} {kind} (e.g. {keys[0]})" for kind, keys in problems.items() if keys]
    if found:
        raise BadInput(f"{what}: {', '.join(found)}")


def _lite(variant: int, num_classes: int, pretrained: str | None, dropout: float, width: float | None,
          depth: float | None, in_channels: int) -> Classifier:
    """EfficientNet-Lite``variant`` as an mgmp ``Classifier``; see the module docstring."""
    name = f"efficientnet_lite{variant}"
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise BadInput(f"{name} needs the package efficientnet-lite-pytorch: pip install 'mgmp[real]'") from None
    if in_channels not in (1, 3):
        raise BadInput(f"{name}: in_channels must be 1 (grey, repeated) or 3 (RGB), got {in_channels}")
    scale = {k: v for k, v in (("width_coefficient", width), ("depth_coefficient", depth)) if v is not None}
    net = EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=None, dropout_rate=dropout, **scale)
    if pretrained:
        state = read_state_dict(resolve(pretrained))
        sized = f" (width {width}, depth {depth})" if scale else ""
        _check_fits(net.state_dict(), state, f"{pretrained} does not fit {name}{sized}")
        net.load_state_dict(state, strict=True)
    for bn in net.modules():  # the package's TF-style momentum (0.01) leaves short fine-tunes with ImageNet's
        if isinstance(bn, nn.BatchNorm2d):  # statistics: 0.375 vs 0.65 test accuracy after 3 epochs on 64 px digits
            bn.momentum = BN_MOMENTUM
    num_features = net._fc.in_features
    net._fc = nn.Identity()
    _plain_convs(net)
    return Classifier(_LiteBody(net), num_features, num_classes)


def _register(variant: int) -> None:
    @ARCHS.register(f"efficientnet_lite{variant}")
    def build(num_classes: int, pretrained: str | None = None, dropout: float = 0.2, width: float | None = None,
              depth: float | None = None, in_channels: int = 3, image_size: int | None = None) -> Classifier:
        """EfficientNet-Lite; ``pretrained``: ``real:NAME`` or a ``.pth`` state dict in the package's format;
        ``width``/``depth`` override its coefficients; ``image_size`` is accepted and unused (any size runs)."""
        return _lite(variant, num_classes, pretrained, dropout, width, depth, in_channels)


for _variant in (0, 1, 2):
    _register(_variant)
