"""Reference models generated from a source: the shared, cached stage of every score that calibrates itself on
the source (closeness's test sets, Zest's relative distance, conferrable adversarial examples, the per-source
detector). Kinds:

- ``lineage``: descendants that inherit its weights (fine-tune, prune);
- ``surrogate``: students trained on its outputs from their own initialisation: distillation into its own
  architecture, extraction into each other architecture of its input space (probabilities, then labels only);
- ``independent``: its architecture and recipe from other seeds (no lineage); given the source's public starting
  point (``start``, :func:`public_start`), from that same pretrained backbone: siblings, independent of the source
  itself but not of the backbone the source shares with every other fine-tune of it;
- ``independent-surrogate``: from scratch in each architecture the surrogates use (no lineage either).

Each reference is a :class:`Reference` (recipe, params, architecture, seed): what a score generated is stated in
its results (``describe``). Cached as model directories under the source's generated folder, keyed by the
source's weights, the data and the reference, so every suspect of one source reuses them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from torch import nn

from model_pool.archs import create_model, standalone_kwargs
from model_pool.card import ModelCard
from model_pool.data.base import TaskData
from model_pool.errors import MgmpError, NotApplicable
from model_pool.io import is_foreign, load_model_dir, save_model_dir
from model_pool.real import PREFIX, REAL
from model_pool.recipes import RecipeContext, run_recipe

LINEAGE = (("finetune", {"epochs": 2, "lr": 1e-3}), ("prune", {"amount": 0.5, "epochs": 2, "lr": 1e-3}))
# students of the source (Lukas et al.'s surrogates): their training budget, and the architectures an image
# source's extraction may use (those that take any image size: the 8x8 digits as well as 224x224 inputs)
SURROGATE_PARAMS = {"epochs": 10, "lr": 2e-3}
SURROGATE_ARCHS = ("small_cnn", "mlp")
KINDS = ("lineage", "surrogate", "independent", "independent-surrogate")


@dataclass(frozen=True)
class Reference:
    """One generated model: ``relation`` run from the source (or from scratch) with ``params``, in ``arch``."""

    kind: str
    relation: str
    params: dict = field(hash=False)
    arch: str
    arch_kwargs: dict = field(hash=False)
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)


def _other_archs(card: ModelCard) -> list[tuple[str, dict]]:
    """The surrogate architectures other than the source's for its input space (image: channels and size)."""
    shape = card.input.get("shape")
    if card.input.get("kind") != "image" or not shape:
        return []
    kwargs = {"in_channels": int(shape[0]), "image_size": int(shape[-1])}
    return [(a, kwargs) for a in SURROGATE_ARCHS if a != card.arch]


def _independent_params(card: ModelCard, arch: tuple[str, dict]) -> dict:
    """The source's own recipe (10 epochs unless it says); ``LM_REFERENCE_PARAMS`` for a causal LM's small reference
    or one whose recipe is unknown (imported)."""
    if is_lm_card(card) and "pretrained" not in arch[1] and (arch[1] != card.arch_kwargs or not card.recipe.get("params")):
        return dict(LM_REFERENCE_PARAMS)
    params = dict(card.recipe.get("params", {}))
    params.setdefault("epochs", 10)
    return params


# causal LMs wider than this get references of ``LM_REFERENCE`` size (same model type and vocabulary): retraining a
# pretrained LM from scratch is out of reach, so "independent of A" is read against small LMs of A's data
LM_MAX_REFERENCE_WIDTH = 128
LM_REFERENCE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "tie_word_embeddings": True}
LM_REFERENCE_PARAMS = {"epochs": 6, "lr": 3e-3, "batch_size": 32}


def is_lm_card(card: ModelCard) -> bool:
    return card.arch == "causal_lm"


def _own_arch(card: ModelCard, start: str | None) -> tuple[str, dict]:
    """The architecture a source's independents and distilled students take: its own; a small one of its model
    type for a wide causal LM (``LM_REFERENCE``)."""
    config = card.arch_kwargs.get("config") or {}
    if is_lm_card(card) and not start and int(config.get("hidden_size", 0)) > LM_MAX_REFERENCE_WIDTH:
        small = {k: v for k, v in config.items() if not any(w in k for w in ("size", "layers", "heads", "head_dim"))}
        return card.arch, {"config": small | LM_REFERENCE}
    return card.arch, dict(card.arch_kwargs) | ({"pretrained": start} if start else {})


def reference_specs(card: ModelCard, kind: str, n: int, seed: int = 1000, start: str | None = None) -> list[Reference]:
    """The first ``n`` references of ``kind`` for a source with ``card`` (fewer when the kind has fewer);
    ``start``: the pretrained weights the source's architecture starts from (``pretrained`` of its builder)."""
    own = _own_arch(card, start)
    if kind == "lineage":
        recipes = [(r, p, own) for r, p in LINEAGE]
    elif kind == "independent":
        recipes = [("scratch", _independent_params(card, own), own)] * n
    elif kind == "surrogate":
        recipes = [("distill", {**SURROGATE_PARAMS, "temperature": 2.0}, own)]
        recipes += [("extract", {**SURROGATE_PARAMS, "outputs": "probabilities"}, a) for a in _other_archs(card)]
        recipes += [("extract", {**SURROGATE_PARAMS, "outputs": "labels"}, a) for a in _other_archs(card)]
        recipes += [("distill", {**SURROGATE_PARAMS, "temperature": 8.0}, own)]
    elif kind == "independent-surrogate":
        archs = [own, *_other_archs(card)]
        recipes = [("scratch", _independent_params(card, a), a) for a in (archs[i % len(archs)] for i in range(n))]
    else:
        raise ValueError(f"unknown reference kind {kind!r}; known: {', '.join(KINDS)}")
    return [Reference(kind, r, dict(p), a[0], dict(a[1]), seed + i) for i, (r, p, a) in enumerate(recipes[:n])]


def reference_models(source: nn.Module, card: ModelCard, data: TaskData, kind: str, n: int = 2, seed: int = 1000,
                     cache_dir: str | Path | None = None) -> list[nn.Module]:
    """``n`` generated references of ``kind`` (see the module docstring) of ``source`` trained on ``data``."""
    return build_references(source, card, data, reference_specs(card, kind, n, seed), cache_dir)


def build_references(source: nn.Module, card: ModelCard, data: TaskData, specs: list[Reference],
                     cache_dir: str | Path | None = None,
                     on_built: Callable[[int], None] | None = None) -> list[nn.Module]:
    """Each reference of ``specs``, loaded from ``cache_dir`` when generated before, else trained and saved
    (``on_built(n)`` after the n-th, for progress bars)."""
    require_trainable(card)
    out = []
    for i, ref in enumerate(specs):
        what = [card.sha256, data.name, ref.relation, ref.params, ref.seed]
        if ref.arch != card.arch or ref.arch_kwargs != card.arch_kwargs:  # the source's own keeps earlier keys
            what.append([ref.arch, ref.arch_kwargs])
        key = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:12]
        ctx = RecipeContext(data, parents=[source] if ref.relation != "scratch" else [], parent_cards=[card],
                            arch=ref.arch, arch_kwargs=dict(ref.arch_kwargs), seed=ref.seed, params=dict(ref.params))
        path = Path(cache_dir) / f"{ref.kind}-{i}-{key}" if cache_dir else None
        out.append(generated_model(path, ref.relation, ctx, card))
        if on_built:
            on_built(i + 1)
    return out


def generated_model(path: Path | None, relation: str, ctx: RecipeContext, card: ModelCard) -> nn.Module:
    """Run ``relation`` on ``ctx`` once: loaded from ``path`` when cached there, else trained (and saved)."""
    require_trainable(card)
    if path is not None and path.is_dir():
        return load_model_dir(path)[0].eval()
    model = run_recipe(relation, ctx)
    if path is not None:
        try:
            # a model built here (from scratch, or a surrogate in another architecture) has ctx's architecture
            built = relation == "scratch" or ctx.arch not in (None, card.arch)
            kwargs = standalone_kwargs(ctx.arch_kwargs, model) if built else card.arch_kwargs
            save_model_dir(model, ModelCard(ctx.arch if built else card.arch, ctx.data.num_classes, dict(card.input),
                                            dict(kwargs),
                                            relation=relation, seed=ctx.seed,
                                            recipe={"relation": relation, "params": ctx.params, "generated_for": card.sha256}),
                           path)
        except (MgmpError, OSError):
            if not path.is_dir():  # another process saving the same model first is fine
                raise
    return model.eval()


def require_trainable(card: ModelCard) -> None:
    """Refuse before any training: models run by another framework (hf:, onnx) are not re-created here."""
    if is_foreign(card.arch):
        raise NotApplicable(f"this method trains reference models of the source; {card.arch} models cannot be "
                            "retrained by mgmp (closeness: generate=false; zest: relative=false)")


START_COSINE = 0.5  # weight cosine above which a source counts as a fine-tune of a public backbone
_STARTS: dict[str, str | None] = {}


def public_start(source: nn.Module, card: ModelCard) -> str | None:
    """The public pretrained backbone ``source`` was fine-tuned from (``real:NAME``), or None: the one its card
    records (``recipe.init``), else the packaged root of its architecture whose weights it still shares (weight
    cosine >= ``START_COSINE``). Roots that do not fit the architecture, or are not installed, are skipped."""
    from mgmp.representations.weights import weight_cosine

    if init := card.recipe.get("init"):
        return init
    if is_lm_card(card):  # not searched: loading every packaged LM costs minutes; siblings need the base named
        return None
    if card.sha256 in _STARTS:
        return _STARTS[card.sha256]
    found = None
    for name in REAL:
        try:
            root = create_model(card.arch, card.num_classes, **{**card.arch_kwargs, "pretrained": PREFIX + name})
        except (MgmpError, TypeError, ValueError, RuntimeError, OSError):
            continue
        if weight_cosine(source, root)[0] >= START_COSINE:
            found = PREFIX + name
            break
    if card.sha256:  # the same weights have the same start: found once per process
        _STARTS[card.sha256] = found
    return found

