"""Save and load model directories: ``model.safetensors`` + ``model.json``, sha256 verified. Imported models
(``mgmp model import``) keep their own files instead: a Hugging Face directory's ``config.json`` +
``model.safetensors`` (arch ``hf:MODEL_TYPE``) or ``model.onnx`` + its external data (arch ``onnx``).

Untrusted input never reaches pickle: weights come from safetensors, HF directories load with
``use_safetensors=True``, and ``.pt`` state dicts only through ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from safetensors.torch import save_model
from torch import nn

from model_pool.archs import create_model
from model_pool.atomic import write_dir
from model_pool.card import ModelCard
from model_pool.errors import BadInput, IntegrityError, first_line
from model_pool.guards import check_model_bytes, load_state_dict_safetensors, read_state_dict
from model_pool.hashing import sha256_file
from model_pool.hf import load_hf_classifier, load_hf_dir
from model_pool.model_files import CARD, TOKENIZER, WEIGHTS, read_card, verify_files
from model_pool.onnx_model import load_onnx_dir


def save_model_dir(model: nn.Module, card: ModelCard, path: str | Path, tokenizer=None) -> ModelCard:
    """Write ``model`` to directory ``path`` atomically (temp dir + rename); returns the card with sha256."""
    path = Path(path)
    if path.exists():
        raise BadInput(f"{path} already exists")
    if is_foreign(card.arch):
        raise BadInput(f"{path}: a model derived from an imported {card.arch} model cannot be saved "
                       "(mgmp saves its own and torchvision/timm architectures only)")
    with write_dir(path) as tmp:
        save_model(model, str(tmp / WEIGHTS))
        card.sha256 = sha256_file(tmp / WEIGHTS)
        card.files = {WEIGHTS: card.sha256}
        if tokenizer is not None:
            tokenizer.save(str(tmp / TOKENIZER))
            card.files[TOKENIZER] = sha256_file(tmp / TOKENIZER)
        (tmp / CARD).write_text(card.to_json())
    return card


def load_model_dir(path: str | Path, verify: bool = True) -> tuple[nn.Module, ModelCard]:
    """Rebuild the model of an mgmp model directory in eval mode, after checking its sha256."""
    path = Path(path)
    if (path / CARD).is_file():
        card = read_card(path)
        if verify:
            verify_files(path, card)
        model = _load_foreign(path, card) if is_foreign(card.arch) else _load_native(path, card)
        return model.eval(), _local_paths(path, card)
    if (path / "config.json").is_file():
        return load_hf_dir(path)
    raise BadInput(f"{path}: neither an mgmp model directory (model.json) nor a Hugging Face directory (config.json)")


def is_foreign(arch: str) -> bool:
    """Models run by another framework from their own files: ``hf:MODEL_TYPE`` (transformers) and ``onnx``."""
    return arch == "onnx" or arch.startswith("hf:")


def _load_native(path: Path, card: ModelCard) -> nn.Module:
    model = _build(card)
    state = load_state_dict_safetensors(path / WEIGHTS)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise IntegrityError(f"{path}: weights do not fit arch {card.arch!r} ({first_line(e)})") from None
    return model


def _load_foreign(path: Path, card: ModelCard) -> nn.Module:
    """An imported ONNX model (onnxruntime) or Hugging Face classifier (transformers, offline)."""
    if card.arch == "onnx":
        return load_onnx_dir(path, card)
    model = load_hf_classifier(path, card.input["kind"], card.arch_kwargs.get("classifier"))
    if f"hf:{model.hf.config.model_type}" != card.arch:
        raise IntegrityError(f"{path}: config.json holds a {model.hf.config.model_type!r} model, model.json says {card.arch!r}")
    return model


def _local_paths(path: Path, card: ModelCard) -> ModelCard:
    """Tokenizers recorded relative to the directory (a file of ``card.files``) as paths usable from anywhere."""
    for spec in (card.input, card.recipe.get("data")):
        name = spec.get("tokenizer") if isinstance(spec, dict) else None
        if isinstance(name, str) and name in card.files:
            spec["tokenizer"] = str(path.resolve() / name)
    return card


def load_state_dict_file(file: str | Path, card: ModelCard) -> nn.Module:
    """Load a state-dict file (see ``read_state_dict``) into ``card.arch``."""
    state = read_state_dict(file)
    model = _build(card)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BadInput(f"{file}: weights do not fit arch {card.arch!r} ({first_line(e)})") from None
    return model.eval()


def _build(card: ModelCard) -> nn.Module:
    """The card's architecture, freshly initialised; sizes beyond ``tensor_bytes`` refused before allocating."""
    try:
        _check_size(card.arch, card.num_classes, json.dumps(card.arch_kwargs, sort_keys=True))
        return create_model(card.arch, card.num_classes, **card.arch_kwargs)
    except TypeError as e:
        raise BadInput(f"arch {card.arch!r}: bad arch_kwargs ({e})") from None


@functools.lru_cache(maxsize=256)
def _check_size(arch: str, num_classes: int, arch_kwargs: str) -> None:
    """``check_model_bytes`` once per configuration: a pool loads the same few architectures many times."""
    check_model_bytes(lambda: create_model(arch, num_classes, **json.loads(arch_kwargs)), f"arch {arch!r}")
