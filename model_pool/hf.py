"""Hugging Face sequence-classification directories (``config.json`` + safetensors), loaded offline."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from model_pool.card import ModelCard
from model_pool.errors import BadInput, IntegrityError, first_line
from model_pool.hashing import sha256_file


class HFSequenceClassifier(nn.Module):
    """Gives a ``*ForSequenceClassification`` model mgmp's contract: ``forward_features`` and ``head``."""

    input_kind = "text"

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        if not isinstance(getattr(hf_model, "classifier", None), nn.Linear):
            raise BadInput(f"{type(hf_model).__name__}: only models whose `classifier` is one Linear layer are supported")
        self.hf = hf_model
        self.head = hf_model.classifier
        self.num_features = self.head.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        captured = {}
        handle = self.hf.classifier.register_forward_pre_hook(lambda m, args: captured.setdefault("z", args[0]))
        try:
            self.hf(input_ids=x, attention_mask=(x != 0).long())
        finally:
            handle.remove()
        return captured["z"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def load_hf_dir(path: str | Path) -> tuple[nn.Module, ModelCard]:
    """Load a local HF classifier directory with ``use_safetensors=True``; never touches the network."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = Path(path)
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise IntegrityError(f"{path}: Hugging Face directory without model.safetensors (pickled .bin files are refused)")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        hf = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, KeyError) as e:
        raise BadInput(f"{path}: cannot load as a Hugging Face classifier ({first_line(e)})") from None
    tok = path / "tokenizer.json"
    card = ModelCard(
        arch=f"hf:{config.model_type}", num_classes=int(config.num_labels), relation="external",
        input={"kind": "text", "tokenizer": str(tok) if tok.is_file() else None,
               "max_length": int(getattr(config, "max_position_embeddings", 512))},
        sha256=sha256_file(weights),
    )
    return HFSequenceClassifier(hf).eval(), card
