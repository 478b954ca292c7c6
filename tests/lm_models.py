"""Tiny causal language models in the formats users bring: a Hugging Face directory (config, safetensors,
tokenizer.json) and a GGUF file written the way llama.cpp's converter writes Llama checkpoints (q/k rows
permuted, Q8_0 matrices, a GPT-2 style BPE tokenizer in the metadata). No real weights, no downloads."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from model_pool.data.corpus import arith, docs, stories
from model_pool.data.tokenize import train_byte_bpe

VOCAB = 320
CONFIG = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
          "num_key_value_heads": 2, "max_position_embeddings": 64, "tie_word_embeddings": True, "rms_norm_eps": 1e-5}


def tiny_tokenizer():
    return train_byte_bpe(list(docs())[:400] + stories(200) + arith(200), VOCAB)


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, bos_token_id=0, eos_token_id=0, **CONFIG)).eval()


def write_hf_dir(model, tokenizer, path: Path) -> Path:
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save(str(path / "tokenizer.json"))
    return path


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row permutation (what transformers' GGUF reader undoes)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model, tokenizer, path: Path) -> Path:
    """``model`` (a tiny LlamaForCausalLM) as a GGUF file with Q8_0 matrices and F32 norms."""
    import gguf

    cfg, sd = model.config, {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    w.add_tokenizer_model("gpt2")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([3 if i == 0 else 1 for i in range(len(vocab))])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)

    def put(name: str, a: np.ndarray) -> None:
        if a.ndim == 2:
            q8 = gguf.GGMLQuantizationType.Q8_0
            w.add_tensor(name, gguf.quants.quantize(a, q8), raw_dtype=q8)
        else:
            w.add_tensor(name, a.astype(np.float32))

    put("token_embd.weight", sd["model.embed_tokens.weight"])
    put("output_norm.weight", sd["model.norm.weight"])
    names = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(cfg.num_hidden_layers):
        for hf, gg in names.items():
            a = sd[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                a = _permute(a, cfg.num_attention_heads)
            elif gg == "attn_k":
                a = _permute(a, cfg.num_key_value_heads)
            put(f"blk.{i}.{gg}.weight", a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
