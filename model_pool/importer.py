"""Bring a user's model into a pool: an mgmp directory, a local HF directory, or a ``.pt`` state dict."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from model_pool.atomic import write_dir, write_file
from model_pool.card import RELATIONS, ModelCard
from model_pool.errors import BadInput
from model_pool.hashing import sha256_file
from model_pool.io import load_model_dir, load_state_dict_file, save_model_dir
from model_pool.model_files import CARD, main_file, read_card
from model_pool.registry import PoolRegistry, check_id


def import_model(pool_dir: str | Path, src: str | Path, *, model_id: str | None = None, parents: list[str] | None = None,
                 relation: str | None = None, arch: str | None = None, arch_kwargs: dict | None = None,
                 num_classes: int | None = None, input_spec: dict | None = None, tags: dict | None = None) -> str:
    """Copy ``src`` into ``pool_dir/models/<id>`` (verified, atomically) and register it; returns the id."""
    src = Path(src)
    reg = PoolRegistry(pool_dir)
    try:
        model_id = check_id(model_id or src.stem)
        if reg.has(model_id):
            raise BadInput(f"model {model_id!r} is already registered in {pool_dir}")
        if relation is not None and not all(r in RELATIONS for r in relation.split("+")):
            raise BadInput(f"unknown relation {relation!r}; known: {', '.join(RELATIONS)}")
        for p in parents or []:
            reg.get(p)
        dest = reg.model_dir(model_id)
        if src.is_file():
            if not arch or not num_classes or not input_spec:
                raise BadInput(f"{src}: a state-dict file needs --arch, --num-classes and --input")
            card = ModelCard(arch=arch, arch_kwargs=arch_kwargs or {}, num_classes=num_classes, input=input_spec,
                             relation=relation or "external")
            card = ModelCard.from_dict(json.loads(card.to_json()))
            model = load_state_dict_file(src, card)
            save_model_dir(model, card, dest)
        elif src.is_dir():
            _, card = load_model_dir(src)  # verifies every recorded file
            _copy_dir(src, dest, list(card.files) if (src / CARD).is_file() else None)
            if (src / CARD).is_file():
                card = read_card(dest)  # the copy's own paths (a tokenizer inside the model directory)
        else:
            raise BadInput(f"{src}: no such model file or directory")
        card.parents = list(parents or [])
        card.relation = relation or ("external" if not parents else card.relation)
        if (dest / CARD).is_file():
            _rewrite_card(dest, card)
        reg.add(model_id, card, tags=tags)
        return model_id
    except BaseException:
        if "dest" in locals() and dest.exists() and not reg.has(model_id):
            shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        reg.close()


def _copy_dir(src: Path, dest: Path, recorded: list[str] | None = None) -> None:
    """Copy ``src`` to ``dest`` atomically: the files its model.json records (with ``model.json``; ONNX external
    data may sit in subfolders), else its regular top-level files. Links are never followed."""
    with write_dir(dest) as tmp:
        names = [CARD, *recorded] if recorded is not None else [f.name for f in src.iterdir() if f.is_file()]
        for name in names:
            f = src / name
            if f.is_symlink() or any(p.is_symlink() for p in f.parents if p != src and src in p.parents):
                raise BadInput(f"{f}: symbolic links are not imported")
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, tmp / name)


def _rewrite_card(dest: Path, card: ModelCard) -> None:
    """Record lineage given on import in the copied ``model.json`` (weights and their sha256 unchanged)."""
    if card.sha256 != sha256_file(dest / main_file(card)):
        raise BadInput(f"{dest}: weights changed while importing")
    write_file(dest / CARD, lambda tmp: Path(tmp).write_text(json.dumps(json.loads(card.to_json()), indent=2, sort_keys=True)))
