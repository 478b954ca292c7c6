"""``mgmp model import ADAPTER --from peft --base BASE``: an unmerged PEFT LoRA adapter of a causal LM (the
``adapter_config.json`` + ``adapter_model.safetensors`` that ``PeftModel.save_pretrained`` writes) applied to
the mgmp ``causal_lm`` directory ``BASE`` by peft itself, merged, and saved as an ordinary ``causal_lm`` model
(:func:`model_pool.lm_import.save_causal_lm`). The card's recipe names the adapter, its LoRA configuration and
the base (its resolved directory and the sha256 of its weights), so the derivation can be checked later.

The adapter is untrusted: its two files are copied to a private directory before anything reads them (no file
swapped in between the checks and the load), only safetensors weights are read (a pickled
``adapter_model.bin`` is refused), and its config is parsed with the project's guarded JSON reader first.
"""
from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from model_pool.card import ModelCard
from model_pool.errors import BadInput, IntegrityError, MgmpError, first_line
from model_pool.guards import check_safetensors, load_json
from model_pool.limits import check_limit
from model_pool.lm_import import CORPUS, PROMPT_LENGTH, save_causal_lm
from model_pool.model_files import CARD, TOKENIZER, base_model_claim, read_card

ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"  # peft's pickled weights: refused
MAX_CONFIG_BYTES = 1 << 20


def read_adapter_config(src: Path) -> dict[str, Any]:
    """``adapter_config.json`` of a LoRA adapter directory, checked before peft reads it: a JSON object with
    ``peft_type`` LORA, and safetensors weights beside it."""
    if not src.is_dir():
        raise BadInput(f"{src}: --from peft takes a PEFT adapter directory ({ADAPTER_CONFIG} + {ADAPTER_WEIGHTS})")
    f = src / ADAPTER_CONFIG
    if not f.is_file():
        raise BadInput(f"{src}: no {ADAPTER_CONFIG} (not a PEFT adapter directory)")
    if f.stat().st_size > MAX_CONFIG_BYTES:
        raise BadInput(f"{f}: too large for an adapter config")
    config = load_json(f.read_bytes(), str(f))
    if not isinstance(config, dict):
        raise BadInput(f"{f}: must hold a JSON object")
    if config.get("peft_type") != "LORA":
        raise BadInput(f"{f}: peft_type {config.get('peft_type')!r}; only LoRA adapters (LORA) are imported")
    ranks, alpha, targets = config.get("rank_pattern") or {}, config.get("lora_alpha"), config.get("target_modules")
    if not isinstance(ranks, dict) or not all(type(r) is int and r > 0 for r in [config.get("r"), *ranks.values()]):
        raise BadInput(f"{f}: r (and rank_pattern) must be positive integers, got r={config.get('r')!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise BadInput(f"{f}: lora_alpha must be a number, got {alpha!r}")
    if targets is not None and not isinstance(targets, str) and not (
            isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        raise BadInput(f"{f}: target_modules must be a list of module names or a regex string")
    if not (src / ADAPTER_WEIGHTS).is_file():
        if (src / ADAPTER_PICKLE).is_file():
            raise IntegrityError(f"{src}: {ADAPTER_PICKLE} is pickled and refused; save the adapter as "
                                 f"{ADAPTER_WEIGHTS}")
        raise BadInput(f"{src}: no {ADAPTER_WEIGHTS}")
    return config


def adapter_record(config: dict[str, Any]) -> dict[str, Any]:
    """The card's ``recipe.adapter``: rank, alpha, target modules (sorted; a regex string as given) and type."""
    targets = config.get("target_modules")
    if isinstance(targets, list):
        targets = sorted(str(t) for t in targets)
    return {"r": config.get("r"), "lora_alpha": config.get("lora_alpha"), "target_modules": targets,
            "peft_type": config["peft_type"]}


def _load_base(base: Path) -> tuple[Any, ModelCard]:
    """The mgmp causal LM at ``base``, every recorded file's sha256 verified (load_model_dir)."""
    from model_pool.io import load_model_dir

    if not base.is_dir():
        raise BadInput(f"--base {base}: no such directory")
    if not (base / CARD).is_file():
        raise BadInput(f"--base {base}: not an mgmp model directory (no {CARD}); import the base first "
                       "(mgmp model import BASE --from hf|gguf)")
    card = read_card(base)
    if card.arch != "causal_lm":
        raise BadInput(f"--base {base}: arch {card.arch!r}, a LoRA adapter is applied to a causal_lm model")
    if TOKENIZER not in card.files:
        raise BadInput(f"--base {base}: records no {TOKENIZER}")
    model, card = load_model_dir(base)
    return model, card


def _base_data(card: ModelCard) -> str | None:
    """The base's prompts as a ``--data`` value (its text file where it still exists, else its corpus domain)."""
    data, task = card.recipe.get("data"), card.recipe.get("task")
    path = data.get("path") if isinstance(data, dict) else None
    if isinstance(path, str) and Path(path).is_file():
        return path
    return f"{CORPUS}:{task}" if card.recipe.get("dataset") == CORPUS and isinstance(task, str) else None


def check_lora_bytes(hf: nn.Module, config: dict[str, Any], what: str) -> None:
    """Refuse a rank whose LoRA matrices would exceed ``tensor_bytes`` before peft allocates them (an upper
    bound: every nn.Linear of ``hf`` adapted at the largest rank of ``r`` and ``rank_pattern``)."""
    rank = max([config["r"], *(config.get("rank_pattern") or {}).values()])
    sizes = sum(m.in_features + m.out_features for m in hf.modules() if isinstance(m, nn.Linear))
    check_limit("tensor_bytes", rank * sizes * 4, f"{what}: LoRA parameter bytes at rank {rank}")


def _merged(hf: nn.Module, adapter: Path, src: Path, base: Path) -> nn.Module:
    """``hf`` with the LoRA adapter in directory ``adapter`` applied by peft and merged into its weights."""
    from peft import LoraConfig, PeftModel

    from model_pool.quiet import quiet_transformers

    misfit = f"{src}: the adapter does not fit the base {base}"
    try:
        with quiet_transformers(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = LoraConfig.from_pretrained(str(adapter))
            config.inference_mode = True
            model = PeftModel(hf, config)
            loaded = model.load_adapter(str(adapter), "default", is_trainable=False, torch_device="cpu")
    except (ValueError, RuntimeError, KeyError, TypeError, AttributeError) as e:
        shapes = [ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln]  # torch: a header line first
        raise BadInput(f"{misfit} ({shapes[0][:240] if shapes else first_line(e, 160)})") from None
    if keys := loaded.missing_keys or loaded.unexpected_keys:  # peft only warns: the adapter would not apply
        raise BadInput(f"{misfit} ({len(keys)} adapter tensor(s) {'missing' if loaded.missing_keys else 'unused'}, "
                       f"e.g. {keys[0]})")
    return model.merge_and_unload().eval()


def import_peft_adapter(src: Path, base: Path, out: Path, data: str | None) -> ModelCard:
    """Apply the LoRA adapter directory ``src`` to the mgmp causal LM ``base`` (peft), merge it, save at ``out``."""
    from model_pool.data.tokenize import load_tokenizer

    config = read_adapter_config(src)
    model, base_card = _load_base(base)
    tok = load_tokenizer(base / TOKENIZER)
    recipe = {"imported_from": str(src.resolve()), "family": "peft", "adapter": adapter_record(config),
              "base": {"path": str(base.resolve()), "sha256": base_card.sha256}}
    if claimed := base_model_claim(src):
        recipe["base_model"] = claimed
    with tempfile.TemporaryDirectory(prefix="mgmp-peft-") as tmp:
        copy = Path(tmp)
        for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            shutil.copyfile(src / name, copy / name)
        if load_json((copy / ADAPTER_CONFIG).read_bytes(), str(src / ADAPTER_CONFIG)) != config:
            raise IntegrityError(f"{src}: changed while it was imported")
        try:
            check_safetensors(copy / ADAPTER_WEIGHTS)
        except MgmpError as e:
            raise type(e)(str(e).replace(str(copy), str(src))) from None
        check_lora_bytes(model.hf, config, str(src / ADAPTER_CONFIG))
        hf = _merged(model.hf, copy, src, base)
    length = int(base_card.input.get("max_length") or PROMPT_LENGTH)
    return save_causal_lm(hf, tok, out, data or _base_data(base_card), recipe, str(src), length, task=base_card.task)
