"""Text classifiers over int64 token ids (0 = padding): DistilBERT, BERT (transformers), BiLSTM.

Transformers are built from config objects (tiny by default), or from a local pretrained directory
when ``pretrained`` is given; nothing is downloaded.
"""
from __future__ import annotations

import torch
from torch import nn

from model_pool.archs import ARCHS


class TextClassifier(nn.Module):
    """Encoder -> pooled features -> linear head; the attention mask is ``ids != 0``."""

    input_kind = "text"

    def __init__(self, encoder: nn.Module, pool, num_features: int, num_classes: int, dropout: float = 0.1,
                 config_keys: dict[str, str] | None = None):
        super().__init__()
        self.encoder = encoder
        self._config_keys = config_keys or {}
        self._pool = pool
        self.dropout = nn.Dropout(dropout)
        self.num_features = num_features
        self.head = nn.Linear(num_features, num_classes)

    def config_kwargs(self) -> dict:
        """Builder kwargs read off the encoder's HF config (to rebuild without the pretrained dir)."""
        return {kw: getattr(self.encoder.config, key) for kw, key in self._config_keys.items()}

    def forward_features(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self._pool(self, ids, ids != 0))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(ids))


def _distilbert_pool(self: TextClassifier, ids, mask):
    h = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state[:, 0]
    return torch.relu(self.pre_classifier(h))


def _bert_pool(self: TextClassifier, ids, mask):
    return self.encoder(input_ids=ids, attention_mask=mask.long()).pooler_output


@ARCHS.register("distilbert")
def distilbert(num_classes: int, vocab_size: int = 30522, max_length: int = 64, dim: int = 64, n_layers: int = 2,
               n_heads: int = 2, hidden_dim: int = 128, dropout: float = 0.1, pretrained: str | None = None) -> TextClassifier:
    """DistilBERT with DistilBertForSequenceClassification's pre-classifier; tiny by default."""
    from transformers import DistilBertConfig, DistilBertModel

    if pretrained:
        enc = DistilBertModel.from_pretrained(pretrained, local_files_only=True)
    else:
        cfg = DistilBertConfig(vocab_size=vocab_size, max_position_embeddings=max(max_length, 8), dim=dim,
                               n_layers=n_layers, n_heads=n_heads, hidden_dim=hidden_dim, dropout=dropout,
                               attention_dropout=dropout, pad_token_id=0)
        enc = DistilBertModel(cfg)
    width = enc.config.dim
    keys = {"vocab_size": "vocab_size", "max_length": "max_position_embeddings", "dim": "dim", "n_layers": "n_layers",
            "n_heads": "n_heads", "hidden_dim": "hidden_dim"}
    model = TextClassifier(enc, _distilbert_pool, width, num_classes, dropout, keys)
    model.pre_classifier = nn.Linear(width, width)
    return model


@ARCHS.register("bert")
def bert(num_classes: int, vocab_size: int = 30522, max_length: int = 64, hidden_size: int = 64, num_layers: int = 2,
         num_heads: int = 2, intermediate_size: int = 128, dropout: float = 0.1, pretrained: str | None = None) -> TextClassifier:
    """BERT with its pooler as features; tiny by default."""
    from transformers import BertConfig, BertModel

    if pretrained:
        enc = BertModel.from_pretrained(pretrained, local_files_only=True)
    else:
        cfg = BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                         num_attention_heads=num_heads, intermediate_size=intermediate_size,
                         max_position_embeddings=max(max_length, 8), hidden_dropout_prob=dropout,
                         attention_probs_dropout_prob=dropout, pad_token_id=0)
        enc = BertModel(cfg)
    keys = {"vocab_size": "vocab_size", "max_length": "max_position_embeddings", "hidden_size": "hidden_size",
            "num_layers": "num_hidden_layers", "num_heads": "num_attention_heads", "intermediate_size": "intermediate_size"}
    return TextClassifier(enc, _bert_pool, enc.config.hidden_size, num_classes, dropout, keys)


class _BiLSTM(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers, batch_first=True, bidirectional=True)


def _bilstm_pool(self: TextClassifier, ids, mask):
    h, _ = self.encoder.lstm(self.encoder.embed(ids))
    m = mask.unsqueeze(-1).float()
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


@ARCHS.register("bilstm")
def bilstm(num_classes: int, vocab_size: int = 30522, max_length: int = 64, embed_dim: int = 64, hidden_dim: int = 64,
           num_layers: int = 1, dropout: float = 0.1) -> TextClassifier:
    """Embedding, bidirectional LSTM, masked mean pooling over non-padding tokens."""
    return TextClassifier(_BiLSTM(vocab_size, embed_dim, hidden_dim, num_layers), _bilstm_pool, 2 * hidden_dim,
                          num_classes, dropout)
