"""A model's files read as data, lazily, for fingerprinting: its weight tensors one at a time (safetensors slices,
or a state dict through ``torch.load(weights_only=True)``), its config and its tokenizer's vocabulary. No model is
built and no code from the files runs.

Accepted: an mgmp model directory (sha256 of its files checked against its card), a Hugging Face directory
(``*.safetensors``, sharded or not, with ``config.json`` and ``tokenizer.json``/``vocab.txt``), a single
``.safetensors``/``.pt``/``.pth``/``.bin`` state dict, a causal LM's ``.gguf`` file (dequantised whole by
transformers' GGUF reader, which names the tensors as the model's Hugging Face files do), or ``real:NAME`` (a
packaged public root).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from model_pool.errors import BadInput, IntegrityError, first_line
from model_pool.guards import check_safetensors, load_json
from model_pool.model_files import CARD, TOKENIZER, base_model_claim, read_card, verify_files
from model_pool.real import PREFIX, resolve

STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin")
CONFIG_KEYS = ("model_type", "architectures", "hidden_size", "num_hidden_layers", "num_attention_heads",
               "intermediate_size", "vocab_size", "max_position_embeddings")  # what says "this architecture"
MAX_SIDE_FILE = 64 << 20  # config.json / tokenizer.json / vocab.txt larger than this are not read


@dataclass
class TensorEntry:
    """One float tensor of ≥ 2 dimensions: its name, shape, and how to read it (rows ``start::step`` only)."""

    name: str
    shape: tuple[int, ...]
    read_rows: Callable[[int], np.ndarray]  # step -> rows 0, step, 2*step, ... as float32


@dataclass
class ModelFiles:
    """What a fingerprint reads of one model."""

    tensors: list[TensorEntry]
    config: dict
    vocab: list[str] | None
    claims: list[str]


def open_model(ref: str) -> ModelFiles:
    """The weights, config, vocabulary and ``base_model`` claims of the model at ``ref`` (see the module)."""
    path = Path(resolve(ref)) if ref.startswith(PREFIX) else Path(ref)
    if not path.exists():
        raise BadInput(f"{ref}: no such file or directory")
    if path.is_file() and path.suffix == ".gguf":
        return _gguf_model(path)
    if path.is_file():
        return ModelFiles(_file_tensors(path), {}, None, [])
    config: dict = {}
    if (path / CARD).is_file():
        card = read_card(path)
        verify_files(path, card)
        weights = [path / name for name in sorted(card.files) if _weight_file(name)]
        config = {"arch": card.arch, "num_classes": card.num_classes}
    else:
        weights = sorted(path.glob("*.safetensors")) or sorted(f for f in path.iterdir() if _weight_file(f.name))
    if not weights:
        raise BadInput(f"{ref}: no weights found (.safetensors or a state dict)")
    tensors = [t for f in weights for t in _file_tensors(f)]
    config |= _hf_config(path)
    return ModelFiles(tensors, config, _vocabulary(path), base_model_claim(path))


def _gguf_model(path: Path) -> ModelFiles:
    """A GGUF file's dequantised matrices (a tied embedding once), its architecture and its embedded vocabulary."""
    from model_pool.archs.causal import load_pretrained_lm, plain_config
    from model_pool.data.tokenize import load_tokenizer

    hf = load_pretrained_lm(str(path))
    seen, tensors = set(), []
    for name, t in hf.state_dict().items():
        if t.dim() >= 2 and t.is_floating_point() and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            tensors.append(TensorEntry(name, tuple(t.shape), lambda step, t=t: t[::step].numpy()))
    config = {k: v for k, v in plain_config(hf.config).items() if k in CONFIG_KEYS}
    vocab = load_tokenizer(path).get_vocab()
    return ModelFiles(tensors, config, sorted(vocab, key=vocab.get), [])


def _weight_file(name: str) -> bool:
    return name.endswith(".safetensors") or name.endswith(STATE_DICT_SUFFIXES)


def _file_tensors(file: Path) -> list[TensorEntry]:
    if file.suffix == ".safetensors":
        return _safetensors_tensors(file)
    if file.suffix in STATE_DICT_SUFFIXES:
        return _state_dict_tensors(file)
    raise BadInput(f"{file}: not a weights file (.safetensors, .pt, .pth or .bin)")


def _safetensors_tensors(file: Path) -> list[TensorEntry]:
    """The file's float tensors, each read lazily through ``safe_open`` slices (bfloat16 through torch, which
    numpy lacks); the header is checked first."""
    from safetensors import SafetensorError, safe_open

    check_safetensors(file)
    try:
        with safe_open(str(file), framework="numpy") as f:
            slices = {name: f.get_slice(name) for name in f.keys()}
            specs = {n: (tuple(s.get_shape()), s.get_dtype()) for n, s in slices.items()}
    except (SafetensorError, OSError, ValueError) as e:
        raise IntegrityError(f"{file}: not a valid safetensors file ({first_line(e)})") from None

    def reader(name: str, dtype: str) -> Callable[[int], np.ndarray]:
        def read(step: int) -> np.ndarray:
            if dtype == "BF16":
                import torch  # numpy has no bfloat16

                with safe_open(str(file), framework="pt") as f:
                    return f.get_slice(name)[::step].to(torch.float32).numpy()
            with safe_open(str(file), framework="numpy") as f:
                return np.asarray(f.get_slice(name)[::step], dtype=np.float32)
        return read

    return [TensorEntry(n, shape, reader(n, dtype)) for n, (shape, dtype) in specs.items()
            if len(shape) >= 2 and dtype in ("F64", "F32", "F16", "BF16")]


def _state_dict_tensors(file: Path) -> list[TensorEntry]:
    """A pickled state dict read with ``torch.load(weights_only=True)`` (whole: pickles have no lazy reader)."""
    from model_pool.guards import read_state_dict

    state = read_state_dict(file)
    return [TensorEntry(n, tuple(t.shape), lambda step, t=t: t[::step].float().numpy())
            for n, t in state.items() if t.dim() >= 2 and t.is_floating_point()]


def _side_file(path: Path) -> bytes | None:
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_SIDE_FILE:
        raise BadInput(f"{path}: over {MAX_SIDE_FILE >> 20} MiB")
    return path.read_bytes()


def _hf_config(path: Path) -> dict:
    raw = _side_file(path / "config.json")
    config = load_json(raw, str(path / "config.json")) if raw is not None else {}
    return {k: config[k] for k in CONFIG_KEYS if isinstance(config, dict) and k in config}


def _vocabulary(path: Path) -> list[str] | None:
    """The tokenizer's tokens: ``tokenizer.json``'s model vocabulary (a dict, or Unigram's [token, score] list),
    else ``vocab.txt`` (one token a line); None when the model has no tokenizer."""
    raw = _side_file(path / TOKENIZER)
    if raw is not None:
        try:
            vocab = json.loads(raw).get("model", {}).get("vocab")
        except (ValueError, AttributeError):
            raise BadInput(f"{path / TOKENIZER}: not a tokenizer.json") from None
        if isinstance(vocab, dict):
            return list(vocab)
        if isinstance(vocab, list):
            return [v[0] if isinstance(v, list) else str(v) for v in vocab]
    raw = _side_file(path / "vocab.txt")
    return raw.decode("utf-8", "replace").splitlines() if raw is not None else None

