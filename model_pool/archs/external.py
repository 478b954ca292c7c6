"""Architectures that mgmp did not define: ``torchvision:NAME`` and ``timm:NAME`` classifiers.

``create_model("torchvision:mobilenet_v2", 10)`` builds the foreign network (random init; weights come
from the model directory) and fits it to the contract of :mod:`model_pool.archs`: its final classifier
``nn.Linear`` (found by ``find_classifier``, or named with ``classifier=``) moves to ``head`` and is
replaced by an identity in ``net``, so ``forward_features(x) = net(x)`` is the classifier's input and
``forward(x) = head(forward_features(x))`` — exactly the foreign model's output, with a head every
recipe (transfer, distill, fine-tune last) and method (basin, closeness' references) can use.
State-dict keys are ``net.<foreign key>`` and ``head.weight`` / ``head.bias``.
"""
from __future__ import annotations

import importlib.util

import torch
from torch import nn

from model_pool.errors import BadInput

FAMILIES = ("torchvision", "timm")


def find_classifier(net: nn.Module, num_classes: int) -> str:
    """The name of the last ``nn.Linear`` with ``num_classes`` outputs (the classifier of every torchvision
    and timm classification model); BadInput when there is none."""
    names = [n for n, m in net.named_modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not names:
        raise BadInput(f"{type(net).__name__}: no final nn.Linear with {num_classes} outputs; "
                       "name the classifier module (--classifier)")
    return names[-1]


def _set_module(net: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, module)


def classifier_module(net: nn.Module, name: str) -> nn.Linear:
    """``net``'s module ``name``, which must be the nn.Linear classifier."""
    try:
        head = net.get_submodule(name)
    except AttributeError:
        raise BadInput(f"{type(net).__name__} has no module {name!r}") from None
    if not isinstance(head, nn.Linear):
        raise BadInput(f"{type(net).__name__}.{name} is a {type(head).__name__}, not the nn.Linear classifier")
    return head


class ExternalClassifier(nn.Module):
    """A foreign classification network split at its classifier: ``net`` (features) and ``head``."""

    def __init__(self, net: nn.Module, num_classes: int, classifier: str | None = None, input_kind: str = "image"):
        super().__init__()
        name = classifier or find_classifier(net, num_classes)
        head = classifier_module(net, name)
        _set_module(net, name, nn.Identity())
        self.net, self.head, self.classifier = net, head, name
        self.num_features, self.input_kind = head.in_features, input_kind

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def foreign_net(family: str, name: str, num_classes: int, **kwargs) -> nn.Module:
    """A randomly initialised ``family`` classification network ``name`` with ``num_classes`` outputs."""
    if family == "torchvision":
        from torchvision import models  # imported on use: it costs more than a second

        if name not in models.list_models():
            raise BadInput(f"torchvision has no model {name!r} (torchvision.models.list_models())")
        return models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    if family == "timm":
        if importlib.util.find_spec("timm") is None:
            raise BadInput("timm models need the timm extra: pip install 'mgmp[timm]'")
        import timm

        try:
            return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
        except RuntimeError as e:  # timm's "Unknown model"
            raise BadInput(f"timm: {e}") from None
    raise BadInput(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")


def create_external(arch: str, num_classes: int, classifier: str | None = None, input_kind: str = "image",
                    **kwargs) -> ExternalClassifier:
    """``FAMILY:NAME`` (``torchvision:resnet18``, ``timm:mobilenetv3_small_050``) as an ExternalClassifier."""
    family, _, name = arch.partition(":")
    return ExternalClassifier(foreign_net(family, name, num_classes, **kwargs), num_classes, classifier, input_kind)


def to_external_state(state: dict[str, torch.Tensor], classifier: str) -> dict[str, torch.Tensor]:
    """A foreign state dict renamed to ExternalClassifier's keys (``net.*``, the classifier as ``head.*``)."""
    prefix = classifier + "."
    return {("head." + k[len(prefix):]) if k.startswith(prefix) else "net." + k: v for k, v in state.items()}


def is_external(arch: str) -> bool:
    return arch.partition(":")[0] in FAMILIES and ":" in arch
