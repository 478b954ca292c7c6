"""Text classifiers over int64 token ids (0 = padding): DistilBERT, BERT (transformers), BiLSTM.

Transformers are built from config objects (tiny by default), or from a local pretrained directory
when ``pretrained`` is given (a path, or ``real:NAME`` for a packaged root: :mod:`model_pool.real`);
nothing is downloaded.
"""
from __future__ import annotations

import torch
from torch import nn

from model_pool.archs import ARCHS
from model_pool.errors import BadInput
from model_pool.real import resolve


class TextClassifier(nn.Module):
    """Pooled encoder features -> dropout -> linear head; subclasses define ``pool``; the mask is ``ids != 0``."""

    input_kind = "text"

    def __init__(self, encoder: nn.Module, num_features: int, num_classes: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.num_features = num_features
        self.head = nn.Linear(num_features, num_classes)

    def pool(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One vector per sequence (N, num_features) from ids (N, L) and their boolean mask."""
        raise NotImplementedError

    def forward_features(self, ids: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, num_features)."""
        return self.dropout(self.pool(ids, ids != 0))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes)."""
        return self.head(self.forward_features(ids))


class _HFClassifier(TextClassifier):
    """A transformers encoder; ``CONFIG_KEYS`` maps builder kwargs to the HF config fields they set."""

    CONFIG_KEYS: dict[str, str] = {}

    def config_kwargs(self) -> dict:
        """Builder kwargs read off the encoder's config, to rebuild the model without its pretrained directory."""
        return {kw: getattr(self.encoder.config, key) for kw, key in self.CONFIG_KEYS.items()}


class DistilBertClassifier(_HFClassifier):
    """DistilBERT; features as DistilBertForSequenceClassification: first token -> Linear -> ReLU."""

    CONFIG_KEYS = {"vocab_size": "vocab_size", "max_length": "max_position_embeddings", "dim": "dim",
                   "n_layers": "n_layers", "n_heads": "n_heads", "hidden_dim": "hidden_dim"}

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float):
        dim = encoder.config.dim
        super().__init__(encoder, dim, num_classes, dropout)
        self.pre_classifier = nn.Linear(dim, dim)

    def pool(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state[:, 0]
        return torch.relu(self.pre_classifier(h))


class BertClassifier(_HFClassifier):
    """BERT; features are its pooler output (tanh of a Linear on the first token)."""

    CONFIG_KEYS = {"vocab_size": "vocab_size", "max_length": "max_position_embeddings", "hidden_size": "hidden_size",
                   "num_layers": "num_hidden_layers", "num_heads": "num_attention_heads",
                   "intermediate_size": "intermediate_size"}

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float):
        super().__init__(encoder, encoder.config.hidden_size, num_classes, dropout)

    def pool(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=ids, attention_mask=mask.long()).pooler_output


def _positions(max_length: int) -> int:
    """Position-embedding table size for sequences of up to ``max_length`` tokens (at least 8)."""
    return max(max_length, 8)


def _pretrained(model_cls, ref: str, vocab_size: int | None, max_length: int) -> nn.Module:
    """Load a transformers encoder from a local directory or ``real:NAME`` (offline) and check it fits the data."""
    from transformers import AutoConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load would bury a pool build's own progress

    path = resolve(ref)
    cfg = AutoConfig.from_pretrained(path, local_files_only=True)
    if cfg.model_type != model_cls.config_class.model_type:  # transformers would load it, silently re-initialised
        raise BadInput(f"{ref}: a {cfg.model_type} checkpoint, not {model_cls.config_class.model_type}")
    if vocab_size is not None and vocab_size != cfg.vocab_size:
        raise BadInput(f"{ref}: vocab_size {cfg.vocab_size}, not the requested {vocab_size}")
    if max_length > cfg.max_position_embeddings:
        raise BadInput(f"{ref}: at most {cfg.max_position_embeddings} positions, max_length is {max_length}")
    return model_cls.from_pretrained(path, config=cfg, local_files_only=True, use_safetensors=True)  # never unpickle


def _need_vocab(vocab_size: int | None, pretrained: str | None) -> None:
    if vocab_size is None and not pretrained:
        raise TypeError("vocab_size is required unless a pretrained directory is given")


@ARCHS.register("distilbert")
def distilbert(num_classes: int, vocab_size: int | None = None, max_length: int = 64, dim: int = 64,
               n_layers: int = 2, n_heads: int = 2, hidden_dim: int = 128, dropout: float = 0.1,
               pretrained: str | None = None) -> DistilBertClassifier:
    """DistilBERT with DistilBertForSequenceClassification's pre-classifier; tiny by default."""
    from transformers import DistilBertConfig, DistilBertModel

    _need_vocab(vocab_size, pretrained)
    if pretrained:
        enc = _pretrained(DistilBertModel, pretrained, vocab_size, max_length)
    else:
        enc = DistilBertModel(DistilBertConfig(
            vocab_size=vocab_size, max_position_embeddings=_positions(max_length), dim=dim, n_layers=n_layers,
            n_heads=n_heads, hidden_dim=hidden_dim, dropout=dropout, attention_dropout=dropout, pad_token_id=0))
    return DistilBertClassifier(enc, num_classes, dropout)


@ARCHS.register("bert")
def bert(num_classes: int, vocab_size: int | None = None, max_length: int = 64, hidden_size: int = 64,
         num_layers: int = 2, num_heads: int = 2, intermediate_size: int = 128, dropout: float = 0.1,
         pretrained: str | None = None) -> BertClassifier:
    """BERT with its pooler output as features; tiny by default."""
    from transformers import BertConfig, BertModel

    _need_vocab(vocab_size, pretrained)
    if pretrained:
        enc = _pretrained(BertModel, pretrained, vocab_size, max_length)
    else:
        enc = BertModel(BertConfig(
            vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
            num_attention_heads=num_heads, intermediate_size=intermediate_size,
            max_position_embeddings=_positions(max_length), hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout, pad_token_id=0))
    return BertClassifier(enc, num_classes, dropout)


class _BiLSTM(nn.Module):
    """Token embedding (padding row 0 kept at zero) and a bidirectional LSTM."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers, batch_first=True, bidirectional=True,
                            dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean of the LSTM outputs over non-padding tokens (zeros for an all-padding row)."""
        h, _ = self.lstm(self.embed(ids))
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


class BiLSTMClassifier(TextClassifier):
    """Embedding + BiLSTM + masked mean pooling."""

    def pool(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(ids, mask)


@ARCHS.register("bilstm")
def bilstm(num_classes: int, vocab_size: int, max_length: int = 64, embed_dim: int = 64, hidden_dim: int = 64,
           num_layers: int = 1, dropout: float = 0.1) -> BiLSTMClassifier:
    """Embedding, bidirectional LSTM, masked mean pooling over non-padding tokens (``max_length``: any)."""
    return BiLSTMClassifier(_BiLSTM(vocab_size, embed_dim, hidden_dim, num_layers, dropout), 2 * hidden_dim,
                            num_classes, dropout)
