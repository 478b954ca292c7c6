"""Sequence-level distillation of a causal language model (``distill`` / ``extract`` with an LM teacher).

The thief sends its prompts, reads ``gen_tokens`` greedy continuation tokens back and trains on prompt +
continuation (Kim & Rush, 2016). With ``outputs: labels`` (a text-only API) the continuation's tokens are its
targets (language-modelling loss); with ``outputs: probabilities`` (an API that returns the ``top_k`` most likely
tokens' log-probabilities at every position, as logprob APIs do) it matches the teacher's top-k distribution at
every position (renormalised over those k, at ``temperature``): the teacher's knowledge of every position, not
only the last one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model_pool.archs.causal import greedy_tokens, last_positions
from model_pool.train import fit, lm_targets

DEFAULT_GEN_TOKENS, DEFAULT_TOP_K, TEACH_BATCH = 16, 20, 32


def continued(x: torch.Tensor, gen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded prompts with their continuations appended: ``(ids, y)`` in the pool's next-token form
    (the last continuation token is ``y``, the rest extend the prompt)."""
    n = gen.shape[1]
    seq = torch.cat([x, torch.zeros(len(x), n, dtype=x.dtype)], 1)
    cols = last_positions(x)[:, None] + 1 + torch.arange(n)
    seq.scatter_(1, cols[:, :-1], gen[:, :-1])
    return seq, gen[:, -1]


@torch.no_grad()
def _teacher_top_k(teacher: nn.Module, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's ``k`` largest logits and their token ids at every position (N, L, k)."""
    vals, idx = [], []
    for s in range(0, len(ids), TEACH_BATCH):
        logits = teacher.sequence_logits(ids[s:s + TEACH_BATCH])
        v, i = logits.topk(k, dim=-1)
        vals.append(v)
        idx.append(i)
    return torch.cat(vals), torch.cat(idx)


def teach_lm(student: nn.Module, teacher: nn.Module, x: torch.Tensor, *, hard: bool, gen_tokens: int, top_k: int,
             temperature: float, seed: int, fit_kw: dict) -> nn.Module:
    """Train ``student`` on the teacher's continuations of prompts ``x`` (see the module)."""
    gen = torch.cat([greedy_tokens(teacher.eval(), x[s:s + 4 * TEACH_BATCH], gen_tokens)
                     for s in range(0, len(x), 4 * TEACH_BATCH)])
    ids, y = continued(x, gen)
    if hard:
        return fit(student, ids, y, seed=seed, **fit_kw)
    t_vals, t_idx = _teacher_top_k(teacher, ids, top_k)
    real = lm_targets(ids, y) != 0  # positions whose next token is known: the prompt's own and the continuation's

    def loss(m, xb, idx):
        logp = F.log_softmax(m.sequence_logits(xb) / temperature, -1).gather(-1, t_idx[idx])
        target = F.softmax(t_vals[idx] / temperature, -1)
        per_pos = -(target * logp).sum(-1)
        mask = real[idx]
        return (per_pos * mask).sum() / mask.sum().clamp_min(1) * temperature ** 2

    return fit(student, ids, torch.arange(len(ids)), loss_fn=loss, seed=seed, **fit_kw)
