"""Text to token ids: a locally trained WordPiece tokenizer, or a pretrained one from a local dir.

Id 0 is always padding, so models can derive their attention mask as ``ids != 0``.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from model_pool.errors import BadInput
from model_pool.real import resolve

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LM_PAD = "<|endoftext|>"


def train_wordpiece(texts: Iterable[str], vocab_size: int = 2000, min_frequency: int = 1) -> Tokenizer:
    """Train a BERT-style (lower-cased, [CLS] x [SEP]) WordPiece tokenizer on ``texts``, offline."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def word_level(words: Iterable[str]) -> Tokenizer:
    """A deterministic word-level tokenizer over a fixed vocabulary (same ids in every process,
    unlike WordPiece training); same normalisation and [CLS] x [SEP] template as ``train_wordpiece``."""
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for w in sorted(set(words)):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return tok


def train_byte_bpe(texts: Iterable[str], vocab_size: int = 512) -> Tokenizer:
    """A byte-level BPE tokenizer (GPT-2 style, no normalisation) trained on ``texts``; id 0 is
    ``<|endoftext|>``, the padding of causal language models."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[LM_PAD], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok


@functools.lru_cache(maxsize=4)
def _gguf_tokenizer(path: Path) -> str:
    """The tokenizer a GGUF file embeds, as tokenizer.json text (transformers' GGUF converter)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).backend_tokenizer.to_str()
    except (OSError, ValueError, KeyError) as e:
        raise BadInput(f"{path}: no usable tokenizer in this GGUF file ({e})") from None


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load ``tokenizer.json`` (a file, a directory holding one such as a local HF model dir, ``real:NAME``, or
    the tokenizer a ``.gguf`` file embeds)."""
    p = Path(resolve(str(path)))
    if p.suffix == ".gguf" and p.is_file():
        return Tokenizer.from_str(_gguf_tokenizer(p.resolve()))
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise BadInput(f"no tokenizer.json at {path}")
    return Tokenizer.from_file(str(p))


def encode(tokenizer: Tokenizer, texts: list[str], max_length: int = 64) -> torch.Tensor:
    """Encode ``texts`` to int64 ids (N, max_length), truncated and right-padded with 0."""
    pad_id = tokenizer.token_to_id("[PAD]")
    if pad_id != 0:
        raise BadInput(f"tokenizer's [PAD] id is {pad_id}, mgmp needs 0")
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(length=max_length, pad_id=0, pad_token="[PAD]")
    out = tokenizer.encode_batch(list(texts))
    return torch.tensor([e.ids for e in out], dtype=torch.int64)
