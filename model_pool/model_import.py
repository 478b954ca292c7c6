"""``mgmp model import``: a model built elsewhere becomes an ordinary mgmp model directory (SPEC §11).

Families: ``torchvision:NAME`` and ``timm:NAME`` (a state dict as ``.safetensors`` or a ``weights_only``
``.pt``; see :mod:`model_pool.archs.external`), ``mgmp:ARCH`` (the built-in registry), ``hf`` (a local
Hugging Face classifier directory, copied with its tokenizer), ``onnx`` (an ``.onnx`` file,
black-box), and causal language models: ``hf`` on a ``*ForCausalLM`` directory or ``gguf`` on a GGUF file
(:mod:`model_pool.lm_import`), or ``peft`` on a LoRA adapter directory applied to an mgmp causal LM ``base``
(:mod:`model_pool.peft_import`). The input space (``image:C,H,W`` or ``text``), the normalisation and the data reference
are recorded in ``model.json``, so that no later command needs ``--data``.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_pool.archs import create_model
from model_pool.archs.external import FAMILIES, create_external, to_external_state
from model_pool.atomic import write_dir
from model_pool.card import ModelCard
from model_pool.data import load_dataset
from model_pool.data.references import data_kwargs
from model_pool.errors import BadInput, IntegrityError, MgmpError, first_line
from model_pool.hashing import sha256_file
from model_pool.hf import (
    HF_CONFIG,
    check_contract,
    hf_kind,
    image_shape,
    load_hf_classifier,
    preprocessor_normalization,
    read_config,
    text_input,
)
from model_pool.io import read_state_dict, save_model_dir
from model_pool.limits import check_limit
from model_pool.lm_import import import_causal_lm, is_causal_config
from model_pool.model_files import CARD, ONNX_FILE, TOKENIZER, WEIGHTS, base_model_claim
from model_pool.onnx_model import OnnxModel, external_data_files
from model_pool.peft_import import import_peft_adapter

IMPORT_FAMILIES = (*FAMILIES, "mgmp", "hf", "onnx", "gguf", "peft")


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
    check_limit("num_classes", num_classes, "--num-classes")
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


@dataclass
class _Request:
    """One ``mgmp model import``: what the user named on the command line."""

    src: Path
    out: Path
    family: str
    arch: str
    num_classes: int | None
    input_spec: str | None
    normalize: str | None
    data: str | None
    classifier: str | None
    task: str | None

    def card(self, arch: str, num_classes: int, spec: dict, **kwargs: Any) -> ModelCard:
        recipe = {"imported_from": str(self.src.resolve()), "family": self.family}
        return ModelCard(arch, num_classes, spec, task=self.task, relation="external", recipe=recipe, **kwargs)


def import_model_dir(src: str | Path, source: str, out: str | Path, num_classes: int | None = None,
                     input_spec: str | None = None, normalize: str | None = None, data: str | None = None,
                     classifier: str | None = None, task: str | None = None,
                     base: str | Path | None = None) -> ModelCard:
    """Write ``src`` (weights of ``source`` = ``FAMILY[:ARCH]``) as the mgmp model directory ``out``. ``task``
    names the label space: models with one task name share their classes, whatever data files they had.
    ``base`` (``--from peft`` only) is the mgmp causal LM directory a LoRA adapter ``src`` applies to."""
    family, _, arch = source.partition(":")
    if family not in IMPORT_FAMILIES:
        raise BadInput(f"--from {source!r}: unknown family; known: {', '.join(IMPORT_FAMILIES)}")
    if family == "peft" and (base is None or arch):
        raise BadInput("--from peft needs --base DIR (the mgmp causal_lm model the adapter applies to) and no :ARCH")
    if family != "peft" and base is not None:
        raise BadInput(f"--base is read by --from peft only (a LoRA adapter's base), not --from {source}")
    src, out = Path(src), Path(out)
    if not src.exists():
        raise BadInput(f"{src}: no such file or directory")
    if out.exists():
        raise BadInput(f"{out} already exists")
    if family == "peft":
        return import_peft_adapter(src, Path(base), out, data)
    req = _Request(src, out, family, arch, num_classes, input_spec, normalize, data, classifier, task)
    if family == "gguf" or (family == "hf" and (src / HF_CONFIG).is_file() and is_causal_config(read_config(src))):
        recipe = {"imported_from": str(src.resolve()), "family": family}
        return import_causal_lm(src, out, family == "gguf", data, recipe)
    if family == "hf":
        return _import_hf(req)
    if family == "onnx":
        return _import_onnx(req)
    return _import_state_dict(req)


def _image_or_text(req: _Request, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``--input`` space (or ``spec``), images with their normalisation (identity unless ``--normalize``)."""
    spec = spec or parse_input(req.input_spec or "")
    if spec["kind"] == "image":
        channels = spec["shape"][0]
        norm = parse_normalize(req.normalize, channels)
        spec["normalization"] = norm or spec.get("normalization") or {"mean": [0.0] * channels, "std": [1.0] * channels}
    return spec


def _import_state_dict(req: _Request) -> ModelCard:
    """torchvision / timm / mgmp: the state dict loaded into the architecture and saved as safetensors."""
    if not req.arch or req.num_classes is None or req.input_spec is None:
        raise BadInput(f"--from {req.family}:ARCH needs the architecture, --num-classes and --input")
    spec = _image_or_text(req)
    model, card_arch, kwargs = _build(req.family, req.arch, req.num_classes, req.src, req.classifier)
    card = req.card(card_arch, req.num_classes, spec, arch_kwargs=kwargs)
    if req.data:
        _check_data(model, req.data, spec, req.num_classes)
        card.recipe |= {"dataset": req.data, "data": data_kwargs(spec)}
    return save_model_dir(model, card, req.out)


def _hf_input(req: _Request, config: Any) -> dict[str, Any]:
    """The input space of an HF classifier: its config (text or image, size), or ``--input`` where given."""
    given = parse_input(req.input_spec) if req.input_spec else None
    kind = hf_kind(config) or (given or {}).get("kind")
    if kind is None:
        raise BadInput(f"{req.src / HF_CONFIG}: names no *ForSequenceClassification / *ForImageClassification "
                       "architecture; pass --input text or image:C,H,W")
    if given and given["kind"] != kind:
        raise BadInput(f"--input {req.input_spec}: {req.src} holds a {kind} classifier")
    if kind == "text":
        return text_input(req.src, config, TOKENIZER)
    shape = (given or {}).get("shape") or image_shape(config)
    if shape is None:
        raise BadInput(f"{req.src / HF_CONFIG}: no image_size; pass --input image:C,H,W")
    return _image_or_text(req, {"kind": "image", "shape": shape,
                                "normalization": preprocessor_normalization(req.src, shape[0])})


def _import_hf(req: _Request) -> ModelCard:
    """A local HF classifier directory: config.json, model.safetensors (and tokenizer.json) copied, loaded by transformers."""
    if not (req.src / HF_CONFIG).is_file():
        raise BadInput(f"{req.src}: not a Hugging Face directory (no {HF_CONFIG})")
    if (req.src / f"{WEIGHTS}.index.json").is_file():
        raise BadInput(f"{req.src}: sharded checkpoints ({WEIGHTS}.index.json) are not supported; save one {WEIGHTS}")
    if not (req.src / WEIGHTS).is_file():
        raise IntegrityError(f"{req.src}: no {WEIGHTS} (pickled .bin weights are refused; convert to safetensors)")
    config = read_config(req.src)
    if req.arch and req.arch != config.model_type:
        raise BadInput(f"--from hf:{req.arch}: {req.src} holds a {config.model_type!r} model")
    num_classes = int(config.num_labels)
    if req.num_classes is not None and req.num_classes != num_classes:
        raise BadInput(f"--num-classes {req.num_classes}: {req.src / HF_CONFIG} has {num_classes} labels")
    spec = _hf_input(req, config)
    names = [HF_CONFIG, WEIGHTS] + ([TOKENIZER] if spec.get("tokenizer") else [])

    def fill(tmp: Path) -> tuple[nn.Module, ModelCard]:
        for name in names:
            shutil.copyfile(req.src / name, tmp / name)
        model = load_hf_classifier(tmp, spec["kind"], req.classifier)
        check_contract(model, _probe(spec, getattr(config, "vocab_size", None)))
        card = req.card(f"hf:{config.model_type}", num_classes, spec, arch_kwargs={"classifier": model.classifier})
        if claimed := base_model_claim(req.src):
            card.recipe["base_model"] = claimed
        return model, card

    return _write_dir(req, fill, WEIGHTS)


def _import_onnx(req: _Request) -> ModelCard:
    """An ``.onnx`` file and its external data (checked to stay in its directory) copied, run by onnxruntime."""
    if req.num_classes is None or req.input_spec is None:
        raise BadInput("--from onnx needs --num-classes and --input")
    if not req.src.is_file():
        raise BadInput(f"{req.src}: not a file (--from onnx takes an .onnx file)")
    locations = external_data_files(req.src)  # before anything reads the data
    spec = _image_or_text(req)

    def fill(tmp: Path) -> tuple[nn.Module, ModelCard]:
        shutil.copyfile(req.src, tmp / ONNX_FILE)
        for loc in locations:
            (tmp / loc).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(req.src.parent / loc, tmp / loc)
        if external_data_files(tmp / ONNX_FILE) != locations:
            raise IntegrityError(f"{req.src}: changed while it was imported")
        model = OnnxModel(tmp / ONNX_FILE, req.num_classes, spec["kind"])
        model(_probe(spec))  # onnxruntime runs it and the outputs have num_classes columns
        return model, req.card("onnx", req.num_classes, spec)

    return _write_dir(req, fill, ONNX_FILE)


def _probe(spec: dict[str, Any], vocab_size: int | None = None) -> torch.Tensor:
    """Two seeded inputs of the model's input space (token ids >= 1, or pixels in [0, 1))."""
    g = torch.Generator().manual_seed(0)
    if spec["kind"] == "text":
        return torch.randint(1, max(2, min(vocab_size or 2, 1000)), (2, min(8, spec.get("max_length") or 8)), generator=g)
    return torch.rand(2, *spec["shape"], generator=g)


def _named_as_source(fill: Callable[[Path], tuple[nn.Module, ModelCard]], tmp: Path,
                     req: _Request) -> tuple[nn.Module, ModelCard]:
    """``fill(tmp)``, its one-line errors naming the user's files rather than their temporary copies."""
    try:
        return fill(tmp)
    except MgmpError as e:
        src_dir = req.src if req.src.is_dir() else req.src.parent
        msg = str(e).replace(str(tmp / ONNX_FILE), str(req.src)).replace(str(tmp), str(src_dir))
        raise type(e)(msg) from None


def _write_dir(req: _Request, fill: Callable[[Path], tuple[nn.Module, ModelCard]], main: str) -> ModelCard:
    """``fill`` a temp dir beside ``req.out`` (its files; the model they load and its card), check ``--data``,
    record every file's sha256 in model.json, then rename the dir into place (atomic, like save_model_dir)."""
    with write_dir(req.out) as tmp:
        model, card = _named_as_source(fill, tmp, req)
        if req.data:
            local = card.input | ({"tokenizer": str(tmp / TOKENIZER)} if card.input.get("tokenizer") else {})
            _check_data(model, req.data, local, card.num_classes)
            card.recipe |= {"dataset": req.data, "data": data_kwargs(card.input)}
        files = sorted(f for f in tmp.rglob("*") if f.is_file())
        card.files = {f.relative_to(tmp).as_posix(): sha256_file(f) for f in files}
        card.sha256 = card.files[main]
        (tmp / CARD).write_text(card.to_json())
    return card

