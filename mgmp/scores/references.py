"""Models generated from a source to calibrate a score on it: a few of its descendants (lineage)
and a few models trained the same way from other seeds (no lineage). Cached as model directories."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from torch import nn

from model_pool.card import ModelCard
from model_pool.data.base import TaskData
from model_pool.errors import MgmpError, NotApplicable
from model_pool.io import is_foreign, load_model_dir, save_model_dir
from model_pool.recipes import RecipeContext, run_recipe

LINEAGE = (("finetune", {"epochs": 2, "lr": 1e-3}), ("prune", {"amount": 0.5, "epochs": 2, "lr": 1e-3}))


def _independent_params(card: ModelCard, n: int) -> list[tuple[str, dict]]:
    params = dict(card.recipe.get("params", {}))
    params.setdefault("epochs", 10)
    return [("scratch", params)] * n


def reference_models(source: nn.Module, card: ModelCard, data: TaskData, kind: str, n: int = 2, seed: int = 1000,
                     cache_dir: str | Path | None = None) -> list[nn.Module]:
    """``n`` generated ``lineage`` or ``independent`` models of ``source`` trained on ``data``."""
    _require_trainable(card)
    recipes = list(LINEAGE[:n]) if kind == "lineage" else _independent_params(card, n)
    out = []
    for i, (relation, params) in enumerate(recipes):
        key = hashlib.sha256(json.dumps([card.sha256, data.name, relation, params, seed + i], sort_keys=True,
                                        default=str).encode()).hexdigest()[:12]
        ctx = RecipeContext(data, parents=[source] if relation != "scratch" else [], parent_cards=[card],
                            arch=card.arch, arch_kwargs=dict(card.arch_kwargs), seed=seed + i, params=params)
        out.append(generated_model(Path(cache_dir) / f"{kind}-{i}-{key}" if cache_dir else None, relation, ctx, card))
    return out


def generated_model(path: Path | None, relation: str, ctx: RecipeContext, card: ModelCard) -> nn.Module:
    """Run ``relation`` on ``ctx`` once: loaded from ``path`` when cached there, else trained (and saved)."""
    _require_trainable(card)
    if path is not None and path.is_dir():
        return load_model_dir(path)[0].eval()
    model = run_recipe(relation, ctx)
    if path is not None:
        try:
            save_model_dir(model, ModelCard(card.arch, ctx.data.num_classes, dict(card.input), dict(card.arch_kwargs),
                                            relation=relation, seed=ctx.seed,
                                            recipe={"relation": relation, "params": ctx.params, "generated_for": card.sha256}),
                           path)
        except (MgmpError, OSError):
            if not path.is_dir():  # another process saving the same model first is fine
                raise
    return model.eval()


def _require_trainable(card: ModelCard) -> None:
    """Refuse before any training: models run by another framework (hf:, onnx) are not re-created here."""
    if is_foreign(card.arch):
        raise NotApplicable(f"this method trains reference models of the source; {card.arch} models cannot be "
                            "retrained by mgmp (closeness: generate=false; zest: relative=false)")
