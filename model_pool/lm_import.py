"""Causal language models brought into mgmp: a Hugging Face ``*ForCausalLM`` directory (safetensors) or a GGUF
file, saved as an ordinary mgmp model directory (arch ``causal_lm``, weights as float32 safetensors, the
tokenizer as ``tokenizer.json``). A GGUF file is dequantised on load; its quantisation is recorded in the card
(``recipe.gguf``). The model's label space is its vocabulary, named by the tokenizer's content
(``task = "tokens-<sha>"``), so that every model with one tokenizer shares its output space.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from model_pool.archs.causal import CausalLM, load_pretrained_lm, plain_config
from model_pool.card import ModelCard
from model_pool.data.corpus import vocabulary_task
from model_pool.errors import BadInput, IntegrityError
from model_pool.guards import check_model_bytes, check_safetensors
from model_pool.hf import HF_TOKENIZER, HF_WEIGHTS, read_config
from model_pool.limits import check_limit

PROMPT_LENGTH = 32  # tokens per prompt that scores read (a prompt's next token is the model's output)
CORPUS = "lm-corpus"


def is_causal_config(config: Any) -> bool:
    return any("ForCausalLM" in str(a) for a in getattr(config, "architectures", None) or [])


def gguf_quantisation(path: Path) -> dict[str, Any]:
    """The GGUF file's declared file type and the count of its tensors per storage type."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError) as e:
        raise BadInput(f"{path}: not a readable GGUF file ({e})") from None
    counts: dict[str, int] = {}
    for t in reader.tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    field = reader.fields.get("general.file_type")
    file_type = None
    if field is not None:
        code = int(field.parts[field.data[0]][0])
        file_type = gguf.LlamaFileType(code).name if code in gguf.LlamaFileType._value2member_map_ else str(code)
    return {"file_type": file_type, "tensor_types": counts}


def _tokenizer(src: Path, gguf_file: bool) -> Tokenizer:
    from model_pool.data.tokenize import load_tokenizer

    if not gguf_file and not (src / HF_TOKENIZER).is_file():
        raise BadInput(f"{src}: a causal LM needs its {HF_TOKENIZER} (prompts are tokenised with it)")
    return load_tokenizer(src)


def _check_hf_dir(src: Path) -> Any:
    if (src / f"{HF_WEIGHTS}.index.json").is_file():
        raise BadInput(f"{src}: sharded checkpoints ({HF_WEIGHTS}.index.json) are not supported; save one {HF_WEIGHTS}")
    if not (src / HF_WEIGHTS).is_file():
        raise IntegrityError(f"{src}: no {HF_WEIGHTS} (pickled .bin weights are refused; convert to safetensors)")
    config = read_config(src)
    check_safetensors(src / HF_WEIGHTS)
    from transformers import AutoModelForCausalLM

    check_model_bytes(lambda: AutoModelForCausalLM.from_config(config), str(src))
    return config


def data_record(tokenizer: str, data: str | None, max_length: int) -> dict[str, Any]:
    """The recipe fields that name a causal LM's prompts: the embedded corpus (``lm-corpus[:DOMAIN]``, default
    ``docs``) or a user's text file (paragraphs separated by blank lines)."""
    kwargs = {"tokenizer": tokenizer, "max_length": max_length}
    name, _, domain = (data or CORPUS).partition(":")
    if name == CORPUS:
        return {"dataset": CORPUS, "task": domain or "docs", "data": kwargs}
    path = Path(data)
    if not path.is_file():
        raise BadInput(f"--data {data}: a causal LM takes lm-corpus[:DOMAIN] or a text file")
    return {"dataset": CORPUS, "task": None, "data": kwargs | {"path": str(path.resolve())}}


def import_causal_lm(src: Path, out: Path, gguf_file: bool, data: str | None, recipe: dict[str, Any],
                     max_length: int = PROMPT_LENGTH) -> ModelCard:
    """Load ``src`` (HF directory or ``.gguf``), check the wrapper reproduces its logits, save it under ``out``."""
    if gguf_file:
        if src.suffix != ".gguf" or not src.is_file():
            raise BadInput(f"{src}: --from gguf takes a .gguf file")
        recipe = recipe | {"gguf": gguf_quantisation(src)}
    else:
        _check_hf_dir(src)
    tok = _tokenizer(src, gguf_file)
    hf = load_pretrained_lm(str(src)).eval()
    return save_causal_lm(hf, tok, out, data, recipe, str(src), max_length)


def save_causal_lm(hf: Any, tok: Tokenizer, out: Path, data: str | None, recipe: dict[str, Any], what: str,
                   max_length: int = PROMPT_LENGTH, task: str | None = None) -> ModelCard:
    """Save the transformers causal LM ``hf`` as the mgmp ``causal_lm`` directory ``out`` (weights, card, ``tok``
    as tokenizer.json), after checking the wrapper reproduces its logits; shared by every LM import (``what``
    names the source in errors; ``task`` defaults to the tokenizer's vocabulary task)."""
    from model_pool.io import save_model_dir

    model = CausalLM(hf)
    check_limit("num_classes", model.vocab_size, f"{what}: vocabulary size")
    positions = getattr(hf.config, "max_position_embeddings", None) or max_length
    length = min(max_length, int(positions))
    probe = torch.randint(1, min(model.vocab_size, 1000), (2, length), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if not torch.allclose(model(probe), hf(input_ids=probe).logits[:, -1], atol=1e-4, rtol=1e-4):
            raise BadInput(f"{what}: its next-token logits are not lm_head(last hidden state); "
                           "unsupported architecture")
    spec = {"kind": "text", "tokenizer": HF_TOKENIZER, "max_length": length}
    card = ModelCard("causal_lm", model.vocab_size, spec, arch_kwargs={"config": plain_config(hf.config)},
                     task=task or vocabulary_task(tok), relation="external",
                     recipe=recipe | data_record(HF_TOKENIZER, data, length))
    return save_model_dir(model, card, out, tokenizer=tok)
