"""A model directory's files without building the model (no torch): its card, the sha256 of every recorded file,
and its weights as numpy arrays (safetensors' numpy reader) for scores that read only tensors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from model_pool.card import ModelCard
from model_pool.errors import BadInput, IntegrityError, TooLarge, first_line
from model_pool.guards import check_safetensors, load_json
from model_pool.hashing import sha256_file

WEIGHTS, CARD, TOKENIZER, ONNX_FILE = "model.safetensors", "model.json", "tokenizer.json", "model.onnx"
MAX_CARD_BYTES = 1 << 20


def read_card(path: str | Path) -> ModelCard:
    """Parse and validate ``path/model.json`` without touching the weights."""
    f = Path(path) / CARD
    if not f.is_file():
        raise BadInput(f"{path}: no {CARD} (not an mgmp model directory)")
    if f.stat().st_size > MAX_CARD_BYTES:
        raise BadInput(f"{f}: too large for a model card")
    return ModelCard.from_dict(load_json(f.read_bytes(), str(f)))


def main_file(card: ModelCard) -> str:
    """The file whose sha256 is ``card.sha256``: the ONNX graph, else the safetensors weights."""
    return ONNX_FILE if card.arch == "onnx" else WEIGHTS


def _plain_name(name: object, nested: bool) -> bool:
    """A file name inside the directory (a relative path without dot components when ``nested``)."""
    if not isinstance(name, str) or not name or "\\" in name or name.startswith("/") or (not nested and "/" in name):
        return False
    return all(part and not part.startswith(".") for part in name.split("/"))


def verify_files(path: str | Path, card: ModelCard) -> None:
    """Check every recorded file: a regular file inside ``path`` (reached through no link) whose sha256 matches
    the card. Names are plain file names; an ONNX model's external data may sit in subdirectories."""
    path, main = Path(path), main_file(card)
    recorded = dict(card.files) or ({main: card.sha256} if card.sha256 else {})
    bad = [n for n in recorded if not _plain_name(n, nested=card.arch == "onnx")]
    if bad:
        raise IntegrityError(f"{path}: recorded file name {bad[0]!r} is not a plain file name")
    if main not in recorded:
        raise IntegrityError(f"{path}: model.json records no sha256 for {main}")
    for name, digest in recorded.items():
        f, parts = path / name, name.split("/")
        if any(path.joinpath(*parts[:i]).is_symlink() for i in range(1, len(parts) + 1)) or not f.is_file():
            raise IntegrityError(f"{f}: missing or not a regular file")
        if sha256_file(f) != digest:
            raise IntegrityError(f"{f}: sha256 does not match model.json (file altered or corrupt)")


def weight_arrays(path: str | Path) -> dict[str, np.ndarray] | None:
    """The tensors of an mgmp model directory's ``model.safetensors`` as numpy arrays, its files verified first;
    None where only the built model knows its weights: an imported Hugging Face or ONNX model, a text model (a
    tied embedding is saved once), a dtype numpy lacks (bfloat16)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    if not (path / CARD).is_file():
        return None
    card = read_card(path)
    if main_file(card) != WEIGHTS or card.arch.startswith("hf:") or card.input.get("kind") != "image":
        return None
    verify_files(path, card)
    check_safetensors(path / WEIGHTS)
    try:
        return load_file(str(path / WEIGHTS))
    except TypeError:  # a dtype numpy lacks
        return None
    except (SafetensorError, OSError, ValueError) as e:
        raise IntegrityError(f"{path / WEIGHTS}: not a valid safetensors file ({first_line(e)})") from None


def base_model_claim(path: str | Path) -> list[str]:
    """The ``base_model`` names a Hugging Face model card (``README.md`` YAML front matter) claims, or the
    ``base_model`` an imported model's card recorded; [] when none. A claim, not evidence: checked by the caller."""
    path = Path(path)
    if (path / CARD).is_file():
        recorded = read_card(path).recipe.get("base_model", [])
        return [str(n) for n in recorded] if isinstance(recorded, list) else []
    f = path / "README.md"
    if not f.is_file():
        return []
    if f.stat().st_size > MAX_CARD_BYTES:
        raise TooLarge(f"{f}: over {MAX_CARD_BYTES} bytes")
    lines = f.read_text(errors="replace").splitlines()
    if not lines or lines[0].strip() != "---" or "---" not in (ends := [x.strip() for x in lines[1:]]):
        return []
    try:
        meta = yaml.safe_load("\n".join(lines[1:1 + ends.index("---")]))
    except yaml.YAMLError as e:
        raise BadInput(f"{f}: front matter is not valid YAML ({first_line(e)})") from None
    names = meta.get("base_model") if isinstance(meta, dict) else None
    names = [names] if isinstance(names, str) else names if isinstance(names, list) else []
    return [n for n in names if isinstance(n, str) and n]
