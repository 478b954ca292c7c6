"""Scores for causal language models (SPEC §14). Prompts are the source's test prompts (its ``lm-corpus``
record), seeded; each score states what of the suspect it reads.

- ``lm_tokens`` (Model Provenance Testing, Nikolić et al., NeurIPS 2025): both models continue the same
  prompts greedily; the statistic is the token match rate (position-wise equal tokens). Black box: the suspect
  is only asked for its next token. The paper's test against unrelated models is the per-source null of the
  verdict (references), as for every mgmp score.
- ``lm_logprob``: mean Jensen-Shannon divergence of the two next-token distributions on the prompts
  (lower = related), in units of ln 2 (0 = equal, 1 = disjoint support).
- ``lm_inheritance``: the inheritance score of :mod:`mgmp.scores.inheritance` (Gram algebra shared) on the
  next-token distributions of the prompts (each model's sqrt-probabilities, where Euclidean is Hellinger distance)
  instead of the weights: what A's outputs own beyond re-runs of A's recipe from its starting point, and how much of
  it the suspect's outputs carry. Black box for the suspect; A's side (A, its base, the re-runs) is the owner's.
- ``lm_cka`` (REEF, Zhang et al., ICLR 2025): linear CKA of the last-token hidden states of the two models
  on the same prompts, at the relative depths ``depths`` of each model's own stack (REEF reads one middle
  layer; several are averaged here, an option), so models of different depth or width compare.
- ``lm_invariant`` (HuRef, Zeng et al., NeurIPS 2024): per layer, the invariant products
  ``E Wqᵀ Wk Eᵀ``, ``E Wvᵀ Woᵀ Eᵀ`` and ``E Wupᵀ Wdownᵀ Eᵀ`` of the model's own embeddings ``E`` of a fixed
  token set (the source's most frequent prompt tokens; RMSNorm gains folded into ``E``), which do not change
  under permutations or rescalings of hidden units; the score is their mean cosine over layers matched by
  relative depth. Needs both models' weights and one tokenizer (the token set indexes both embeddings).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mgmp.representations.outputs import query
from mgmp.representations.similarity import linear_cka
from mgmp.scores import SCORES
from mgmp.scores.base import Pair, PairScore, ScoreResult
from model_pool.archs.causal import greedy_tokens, is_causal_lm
from model_pool.errors import NotApplicable
from model_pool.params import SEED, Range


def prompts(pair: Pair, n: int, seed: int) -> torch.Tensor:
    """``n`` seeded prompts of the source's test split (token ids, right-padded with 0)."""
    x = pair.source_data.x_test
    g = torch.Generator().manual_seed(seed)
    return x[torch.randperm(len(x), generator=g)[:n]]


class _LMScore(PairScore):
    """A score of a causal-LM source; the suspect must speak the source's vocabulary."""

    def check_access(self, pair: Pair) -> None:
        super().check_access(pair)
        if not is_causal_lm(pair.source):
            raise NotApplicable(f"{self.name} compares causal language models; the source is a classifier")
        if not pair.same_task:
            raise NotApplicable(f"{self.name}: the suspect does not share the source's vocabulary")

    def white_box_suspect(self, pair: Pair) -> None:
        if not is_causal_lm(pair.suspect):
            raise NotApplicable(f"{self.name} reads the suspect's layers; it is not a local causal LM")


@SCORES.register("lm_tokens")
class TokenMatch(_LMScore):
    """Greedy-continuation token match rate (higher = related); ``n_prompts`` × ``tokens`` suspect queries."""

    name = "lm_tokens"
    needs = "labels"
    param_specs = {"n_prompts": Range(1, 100_000), "tokens": Range(1, 256), "seed": SEED}

    def __init__(self, n_prompts: int = 64, tokens: int = 8, seed: int = 0):
        self.n_prompts, self.tokens, self.seed = n_prompts, tokens, seed

    def score(self, pair: Pair) -> ScoreResult:
        x = prompts(pair, self.n_prompts, self.seed)
        a = pair.source_cached("lm-tokens", self.params(), lambda: greedy_tokens(pair.source, x, self.tokens))
        b = greedy_tokens(pair.suspect, x, self.tokens)
        per_prompt = (a == b).float().mean(1)
        # a local LM generates with its cache, unseen by the query counter: a black box answers one query per token
        return self.result(float(per_prompt.mean()), first_token=float((a[:, 0] == b[:, 0]).float().mean()),
                           n_prompts=len(x), next_token_queries=int(b.numel()))


@SCORES.register("lm_logprob")
class NextTokenDivergence(_LMScore):
    """Mean Jensen-Shannon divergence of next-token distributions, in units of ln 2 (lower = related)."""

    name = "lm_logprob"
    higher_is_related = False
    param_specs = {"n_prompts": Range(1, 100_000), "seed": SEED}

    def __init__(self, n_prompts: int = 128, seed: int = 0):
        self.n_prompts, self.seed = n_prompts, seed

    def score(self, pair: Pair) -> ScoreResult:
        x = prompts(pair, self.n_prompts, self.seed)
        log_a = pair.source_cached("lm-logprobs", self.params(), lambda: query(pair.source, x, batch_size=32).log_softmax(1))
        log_b = query(pair.suspect, x, batch_size=32).log_softmax(1)
        return self.result(float(js_divergence(log_a, log_b).mean() / math.log(2)), n_prompts=len(x))


@SCORES.register("lm_inheritance")
class OutputInheritance(_LMScore):
    """The inheritance score (:mod:`mgmp.scores.inheritance`) in output space: does the suspect's next-token
    distribution carry what A's owns beyond re-runs of A's recipe from its starting point (ρ ≈ 1 derived, ≈ 0.5
    another fine-tune like A)? Black box: the suspect answers ``n_prompts`` next-token distributions."""

    name = "lm_inheritance"
    param_specs = {"n_prompts": Range(1, 100_000), "seed": SEED, "n_references": Range(1, 20)}

    def __init__(self, n_prompts: int = 128, seed: int = 0, n_references: int = 3):
        self.n_prompts, self.seed, self.n_references = n_prompts, seed, n_references

    def score(self, pair: Pair) -> ScoreResult:
        from mgmp.representations.weights import gram
        from mgmp.scores.inheritance import Inheritance, own_part, starting_point

        x = prompts(pair, self.n_prompts, self.seed)
        embed = lambda m: {"o": hellinger_embedding(query(m, x, batch_size=32))}  # noqa: E731

        def source_side() -> torch.Tensor:  # A, its starting point and the re-runs: loaded only when not cached
            start = starting_point(pair)
            models = [pair.source, start.model, *Inheritance(self.n_references).siblings(pair, start)]
            return torch.stack([embed(m)["o"] for m in models])

        base = {"base": pair.base_card.sha256 if pair.base is not None else None}
        own = pair.source_cached("lm-inheritance", self.params() | base, source_side)
        states = [{"o": own[0]}, embed(pair.suspect), *({"o": v} for v in own[1:])]
        rho, extra = own_part(gram(states, ["o"]), pair.source_card.relation)
        return self.result(rho, n_prompts=len(x), **extra)


def hellinger_embedding(logits: torch.Tensor) -> torch.Tensor:
    """sqrt of the next-token probabilities, flattened: Euclidean distance there is the Hellinger distance."""
    return logits.double().softmax(1).sqrt().flatten()


def js_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (nats) of each row pair of two log-probability matrices (N, V) -> (N,)."""
    log_p, log_q = log_p.double(), log_q.double()
    log_m = torch.logaddexp(log_p, log_q) - math.log(2)
    kl = lambda lp: (lp.exp() * (lp - log_m)).sum(1)  # noqa: E731
    return 0.5 * (kl(log_p) + kl(log_q))


def depth_index(f: float, n_layers: int) -> int:
    """The layer at relative depth ``f`` of a stack of ``n_layers`` (1 = the last, 0 = the embeddings)."""
    return min(n_layers, max(0, round(f * n_layers)))


@torch.no_grad()
def last_token_states(model: nn.Module, x: torch.Tensor, depths: tuple[float, ...], batch: int = 32) -> torch.Tensor:
    """(len(depths), N, hidden): last-token hidden states at each relative depth."""
    parts = []
    for chunk in x.split(batch):
        states = model.layer_states(chunk)
        parts.append(torch.stack([states[depth_index(f, len(states) - 1)] for f in depths]))
    return torch.cat(parts, 1)


@SCORES.register("lm_cka")
class RepresentationCKA(_LMScore):
    """REEF: mean linear CKA of last-token hidden states at relative ``depths`` (higher = related)."""

    name = "lm_cka"
    needs = "features"
    param_specs = {"n_prompts": Range(3, 100_000), "depths": Range(0, 1), "seed": SEED}

    def __init__(self, n_prompts: int = 128, depths: tuple[float, ...] = (0.5, 0.75, 1.0), seed: int = 0):
        self.n_prompts, self.depths, self.seed = n_prompts, tuple(depths), seed

    def score(self, pair: Pair) -> ScoreResult:
        self.white_box_suspect(pair)
        x = prompts(pair, self.n_prompts, self.seed)
        a = pair.source_cached("lm-states", self.params(), lambda: last_token_states(pair.source, x, self.depths))
        b = last_token_states(pair.suspect, x, self.depths)
        per_depth = [linear_cka(a[i], b[i]) for i in range(len(self.depths))]
        return self.result(sum(per_depth) / len(per_depth), per_depth=per_depth)


_PROJ = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj",
         "input_layernorm", "post_attention_layernorm")


def _layers(model: nn.Module) -> list[nn.Module]:
    layers = getattr(getattr(getattr(model, "hf", None), "model", None), "layers", None)
    if layers is None or not all(all(_has(layer, p) for p in _PROJ) for layer in layers):
        raise NotApplicable("lm_invariant reads Llama-style layers (q/k/v/o, up/down projections, RMSNorm gains)")
    return list(layers)


def _has(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True


def _kv_expanded(w: torch.Tensor, n_heads: int, n_kv: int) -> torch.Tensor:
    """K or V projection rows repeated per query head (grouped-query attention), (n_heads·head_dim, D)."""
    head_dim = w.shape[0] // n_kv
    return w.view(n_kv, head_dim, -1).repeat_interleave(n_heads // n_kv, 0).reshape(n_heads * head_dim, -1)


@torch.no_grad()
def invariants(model: nn.Module, token_ids: torch.Tensor) -> torch.Tensor:
    """(layers, 3, T·T) HuRef invariant terms of every layer, each L2-normalised."""
    cfg = model.hf.config
    n_heads = cfg.num_attention_heads
    n_kv = getattr(cfg, "num_key_value_heads", None) or n_heads
    e = model.hf.get_input_embeddings().weight[token_ids].double()
    out = []
    for layer in _layers(model):
        w = {p: layer.get_submodule(p).weight.double() for p in _PROJ}
        ea, ef = e * w["input_layernorm"], e * w["post_attention_layernorm"]
        q, k = ea @ w["self_attn.q_proj"].T, ea @ _kv_expanded(w["self_attn.k_proj"], n_heads, n_kv).T
        v = ea @ _kv_expanded(w["self_attn.v_proj"], n_heads, n_kv).T
        terms = [q @ k.T, (v @ w["self_attn.o_proj"].T) @ ea.T, ((ef @ w["mlp.up_proj"].T) @ w["mlp.down_proj"].T) @ ef.T]
        out.append(torch.stack([F.normalize(t.flatten(), dim=0) for t in terms]))
    return torch.stack(out).float()


def frequent_tokens(x: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` most frequent non-padding token ids of ``x`` (ties by id), sorted."""
    ids, counts = x[x != 0].unique(return_counts=True)
    order = sorted(range(len(ids)), key=lambda i: (-int(counts[i]), int(ids[i])))[:n]
    return ids[sorted(order)]


@SCORES.register("lm_invariant")
class WeightInvariant(_LMScore):
    """HuRef: mean cosine of per-layer invariant terms over layers matched by relative depth (higher = related)."""

    name = "lm_invariant"
    needs = "weights"
    param_specs = {"n_tokens": Range(2, 100_000)}

    def __init__(self, n_tokens: int = 256):
        self.n_tokens = n_tokens

    def score(self, pair: Pair) -> ScoreResult:
        self.white_box_suspect(pair)
        ids = frequent_tokens(pair.source_data.x_train, self.n_tokens)
        a = pair.source_cached("lm-invariants", self.params(), lambda: invariants(pair.source, ids))
        b = invariants(pair.suspect, ids)
        shallow, deep = (a, b) if len(a) <= len(b) else (b, a)
        matched = [deep[depth_index((i + 1) / len(shallow), len(deep)) - 1] for i in range(len(shallow))]
        cos = (shallow * torch.stack(matched)).sum(-1)  # (layers, 3)
        return self.result(float(cos.mean()), per_term=[float(c) for c in cos.mean(0)], layers=len(shallow))
