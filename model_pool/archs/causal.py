"""Causal language models as mgmp models: a next-token classifier over the vocabulary.

A causal LM takes int64 token ids (N, L), right-padded with 0, and mgmp reads it where its prediction is
made: ``forward(ids)`` is the next-token logits (N, vocab_size) after each prompt's last real token,
``forward_features`` the final (normed) hidden state there and ``head`` the LM head, so every output-space
method applies with the vocabulary as the label space. Right padding needs no attention mask for that
position: a causal model never attends to later tokens. ``layer_states`` gives every layer's
last-token hidden state (representation methods) and :func:`greedy_tokens` continues prompts through ``forward`` alone
(so endpoints continue the same way).

``create_model("causal_lm", vocab_size, config={...})`` builds any transformers causal LM from its config
(``model_type`` plus fields; a tiny Llama by default); ``pretrained=`` loads a local Hugging Face
directory (safetensors) or a GGUF file (``.gguf``, or ``real:smollm2-135m``), dequantised to float32.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_pool.archs import ARCHS
from model_pool.errors import BadInput, first_line
from model_pool.real import resolve

TINY_LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128,
              "tie_word_embeddings": True, "rms_norm_eps": 1e-5}
_VOLATILE = ("architectures", "transformers_version", "torch_dtype", "dtype", "_name_or_path", "quantization_config",
             "_attn_implementation_autoset", "id2label", "label2id", "gguf_file")


def plain_config(config: Any) -> dict[str, Any]:
    """A transformers config as the JSON fields that rebuild its architecture (``model_type`` included)."""
    d = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE and not k.startswith("_")}
    d["model_type"] = config.model_type
    return d


def last_positions(ids: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real (non-zero) token; 0 for an all-padding row."""
    pos = torch.arange(1, ids.shape[1] + 1, device=ids.device)
    return ((ids != 0) * pos).amax(1).sub(1).clamp_min(0)


class CausalLM(nn.Module):
    """A transformers ``*ForCausalLM`` with mgmp's contract (see the module docstring)."""

    input_kind = "text"
    is_lm = True

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model
        head = hf_model.get_output_embeddings()
        if not isinstance(head, nn.Linear):
            raise BadInput(f"{type(hf_model).__name__}: its output embedding is not an nn.Linear")
        self.head = head
        self.num_features = head.in_features
        self.vocab_size = head.out_features

    def config_kwargs(self) -> dict[str, Any]:
        """Builder kwargs that rebuild the architecture without its pretrained source."""
        return {"config": plain_config(self.hf.config)}

    def _hidden(self, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.hf.model(input_ids=ids, attention_mask=(ids != 0).long(), output_hidden_states=True).hidden_states

    def forward_features(self, ids: torch.Tensor) -> torch.Tensor:
        """The final normed hidden state after each prompt's last real token (N, hidden)."""
        h = self.hf.model(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state
        return h[torch.arange(len(ids)), last_positions(ids)]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits (N, vocab_size)."""
        return self.head(self.forward_features(ids))

    def sequence_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits at every position (N, L, vocab_size): what the language-modelling loss reads."""
        return self.hf(input_ids=ids, attention_mask=(ids != 0).long()).logits

    def layer_states(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """The hidden state after each prompt's last real token, after every layer (embeddings first; the last
        one normed): a list of (N, hidden)."""
        rows, last = torch.arange(len(ids)), last_positions(ids)
        return [h[rows, last] for h in self._hidden(ids)]

    def generate_greedy(self, ids: torch.Tensor, n: int) -> torch.Tensor:
        """Greedy continuation with transformers' cache (left-padded prompts, explicit positions): (N, n)."""
        left = left_padded(ids)
        mask = (left != 0).long()
        cfg = self.hf.generation_config
        out = self.hf.generate(input_ids=left, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                               num_beams=1, pad_token_id=0, eos_token_id=None, bos_token_id=cfg.bos_token_id,
                               temperature=None, top_p=None, top_k=None)
        return out[:, left.shape[1]:]

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        """Tied tensors are stored once (safetensors drops aliases): fill each alias from its stored twin."""
        state = dict(state)
        for names in tied_names(self):
            have = [n for n in names if n in state]
            for n in names:
                if have and n not in state:
                    state[n] = state[have[0]]
        return super().load_state_dict(state, strict=strict, assign=assign)


def tied_names(model: nn.Module) -> list[list[str]]:
    """Groups of state-dict names that share one tensor (a tied embedding and LM head)."""
    groups: dict[int, list[str]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        groups.setdefault(t.data_ptr(), []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def left_padded(ids: torch.Tensor) -> torch.Tensor:
    """Right-padded prompts moved to the right edge (padding on the left), as generation with a cache needs."""
    n = (ids != 0).sum(1)
    shift = ids.shape[1] - 1 - last_positions(ids)
    cols = (torch.arange(ids.shape[1]).unsqueeze(0) - shift.unsqueeze(1)) % ids.shape[1]
    out = ids.gather(1, cols)
    return out * (torch.arange(ids.shape[1]).unsqueeze(0) >= ids.shape[1] - n.unsqueeze(1))


@torch.no_grad()
def greedy_tokens(model: nn.Module, ids: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` tokens ``model`` continues each prompt with, greedily: (N, n). A local causal LM generates with
    its key-value cache; any other model in the contract (an endpoint) through its next-token ``forward`` alone,
    one query per prompt and token, on prompts ``n`` tokens longer than given."""
    if isinstance(model, CausalLM):
        return model.generate_greedy(ids, n)
    cur = torch.cat([ids, torch.zeros(len(ids), n, dtype=ids.dtype)], 1)  # room for the continuation
    rows, out = torch.arange(len(ids)), []
    for _ in range(n):
        tok = model(cur).argmax(1)
        out.append(tok)
        cur[rows, last_positions(cur) + 1] = tok
    return torch.stack(out, 1)


def _hf_causal_lm(config: dict[str, Any]) -> nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(config)
    model_type = cfg.pop("model_type", None)
    if not model_type:
        raise BadInput("causal_lm: config needs a model_type")
    try:
        hf_config = AutoConfig.for_model(model_type, **cfg)
        return AutoModelForCausalLM.from_config(hf_config)
    except (ValueError, KeyError, TypeError) as e:
        raise BadInput(f"causal_lm: cannot build a {model_type!r} causal LM ({first_line(e, 160)})") from None


def load_pretrained_lm(ref: str) -> nn.Module:
    """A local causal LM: a Hugging Face directory (safetensors only) or a GGUF file (dequantised), offline."""
    from transformers import AutoModelForCausalLM

    from model_pool.quiet import quiet_transformers

    path = Path(resolve(ref))
    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False, "dtype": torch.float32}
    if path.suffix == ".gguf":
        kwargs["gguf_file"], path = path.name, path.parent
    else:
        kwargs["use_safetensors"] = True  # never unpickle
    try:
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise BadInput(f"{ref}: cannot load as a causal language model ({first_line(e, 160)})") from None
    # dequantised GGUF weights are plain float32 tensors: the model trains and saves like any other
    model.hf_quantizer, model.is_quantized = None, False
    return model


@ARCHS.register("causal_lm")
def causal_lm(num_classes: int, config: dict[str, Any] | None = None, pretrained: str | None = None) -> CausalLM:
    """A transformers causal LM; ``num_classes`` is its vocabulary size (a tiny Llama unless ``config``)."""
    if pretrained:
        hf = load_pretrained_lm(pretrained)
    else:
        hf = _hf_causal_lm({**(config or TINY_LLAMA), "vocab_size": num_classes})
    model = CausalLM(hf.eval())
    if model.vocab_size != num_classes:
        raise BadInput(f"causal_lm: vocabulary of {model.vocab_size} tokens, not the requested {num_classes}")
    return model


def is_causal_lm(model: nn.Module) -> bool:
    return bool(getattr(model, "is_lm", False))
