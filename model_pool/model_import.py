"""``mgmp model import``: a model built elsewhere becomes an ordinary mgmp model directory (SPEC §11).

Families: ``torchvision:NAME`` and ``timm:NAME`` (a state dict as ``.safetensors`` or a ``weights_only``
``.pt``; see :mod:`model_pool.archs.external`), ``mgmp:ARCH`` (the built-in registry), ``hf`` (a local
Hugging Face classifier directory, copied with its tokenizer) and ``onnx`` (an ``.onnx`` file,
black-box). The input space (``image:C,H,W`` or ``text``), the normalisation and the data reference
are recorded in ``model.json``, so that no later command needs ``--data``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_pool.archs import create_model
from model_pool.archs.external import FAMILIES, create_external, to_external_state
from model_pool.card import ModelCard
from model_pool.data import load_dataset
from model_pool.data.references import data_kwargs
from model_pool.errors import BadInput, first_line
from model_pool.io import read_state_dict, save_model_dir

IMPORT_FAMILIES = (*FAMILIES, "mgmp", "hf", "onnx")


def parse_input(spec: str) -> dict[str, Any]:
    """``image:3,32,32`` -> {"kind": "image", "shape": [3, 32, 32]}; ``text`` -> {"kind": "text"}."""
    kind, _, dims = spec.partition(":")
    if kind == "text" and not dims:
        return {"kind": "text"}
    try:
        shape = [int(d) for d in dims.split(",")]
    except ValueError:
        shape = []
    if kind != "image" or len(shape) != 3 or min(shape) < 1:
        raise BadInput(f"--input {spec!r}: expected image:C,H,W (e.g. image:3,32,32) or text")
    return {"kind": "image", "shape": shape}


def parse_normalize(spec: str | None, channels: int) -> dict[str, list[float]] | None:
    """``0.5,0.5,0.5/0.25,0.25,0.25`` -> {"mean": [...], "std": [...]} (one value per channel, std > 0)."""
    if spec is None:
        return None
    try:
        mean, std = ([float(v) for v in part.split(",")] for part in spec.split("/"))
    except ValueError:
        raise BadInput(f"--normalize {spec!r}: expected MEAN/STD, e.g. 0.485,0.456,0.406/0.229,0.224,0.225") from None
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise BadInput(f"--normalize {spec!r}: needs {channels} means and {channels} positive stds")
    return {"mean": mean, "std": std}


def _build(family: str, arch: str, num_classes: int, weights: Path, classifier: str | None) -> tuple[nn.Module, str, dict]:
    """The model with its weights, its card ``arch`` and ``arch_kwargs``."""
    state = read_state_dict(weights)
    if family in FAMILIES:
        model = create_external(f"{family}:{arch}", num_classes, classifier)
        state = to_external_state(state, model.classifier)
        card_arch, kwargs = f"{family}:{arch}", {"classifier": model.classifier}
    else:
        model, card_arch, kwargs = create_model(arch, num_classes), arch, {}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BadInput(f"{weights}: weights do not fit {card_arch} with {num_classes} classes ({first_line(e)})") from None
    return model.eval(), card_arch, kwargs


def _check_data(model: nn.Module, data_ref: str, input_spec: dict, num_classes: int) -> None:
    """The data reference loads in the recorded input space, fits the classes, and the model takes it."""
    data = load_dataset(data_ref, **data_kwargs(input_spec), num_classes=num_classes)
    if data.num_classes > num_classes or int(data.y_train.max()) >= num_classes:
        raise BadInput(f"{data_ref}: {data.num_classes} classes, the model has {num_classes}")
    try:
        with torch.no_grad():
            out = model(data.x_test[:2])
    except RuntimeError as e:
        raise BadInput(f"{data_ref}: the model cannot take these inputs ({first_line(e, 120)})") from None
    if out.shape != (len(data.x_test[:2]), num_classes):
        raise BadInput(f"the model returns outputs of shape {list(out.shape[1:])}, expected [{num_classes}]")


def import_model_dir(src: str | Path, source: str, out: str | Path, num_classes: int | None = None,
                     input_spec: str | None = None, normalize: str | None = None, data: str | None = None,
                     classifier: str | None = None, task: str | None = None) -> ModelCard:
    """Write ``src`` (weights of ``source`` = ``FAMILY[:ARCH]``) as the mgmp model directory ``out``. ``task``
    names the label space: models with one task name share their classes, whatever data files they had."""
    family, _, arch = source.partition(":")
    if family not in IMPORT_FAMILIES:
        raise BadInput(f"--from {source!r}: unknown family; known: {', '.join(IMPORT_FAMILIES)}")
    src, out = Path(src), Path(out)
    if not src.exists():
        raise BadInput(f"{src}: no such file or directory")
    if family in ("hf", "onnx"):
        raise BadInput(f"--from {family}: not available yet in this version (torchvision, timm and mgmp are)")
    if not arch or num_classes is None or input_spec is None:
        raise BadInput(f"--from {family}:ARCH needs the architecture, --num-classes and --input")
    spec = parse_input(input_spec)
    norm = parse_normalize(normalize, spec["shape"][0]) if spec["kind"] == "image" else None
    spec["normalization"] = norm or {"mean": [0.0] * spec["shape"][0], "std": [1.0] * spec["shape"][0]}
    model, card_arch, kwargs = _build(family, arch, num_classes, src, classifier)
    recipe: dict[str, Any] = {"imported_from": str(src.resolve()), "family": family}
    if data:
        _check_data(model, data, spec, num_classes)
        recipe |= {"dataset": data, "data": data_kwargs(spec)}
    card = ModelCard(card_arch, num_classes, spec, kwargs, task=task, relation="external", recipe=recipe)
    return save_model_dir(model, card, out)
