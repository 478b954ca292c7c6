"""Indirect measurement for a suspect with another output space (lineage closeness, AAAI 2025): a copy
of the source gets a new head trained on the suspect's task (body frozen), and the score then
compares that copy with the suspect on the suspect's data. Shared by closeness and Zest."""
from __future__ import annotations

import hashlib
from dataclasses import replace

from mgmp.scores.base import Pair
from mgmp.scores.references import generated_model
from model_pool.card import ModelCard
from model_pool.recipes import RecipeContext


def indirect_pair(pair: Pair, method: str, epochs: int = 5, seed: int = 0) -> Pair:
    """``pair`` with its source replaced by the source transferred to the suspect's task."""
    data = pair.require_suspect_data(method)
    ctx = RecipeContext(data, parents=[pair.source], parent_cards=[pair.source_card], seed=seed,
                        params={"epochs": epochs, "lr": 1e-3})
    a = pair.source_card
    tag = hashlib.sha256(f"{a.sha256}|{data.name}|{epochs}|{seed}".encode()).hexdigest()
    cache = pair.cache.generated_dir(pair.source_key)
    model = generated_model(cache / f"transfer-{tag[:12]}" if cache else None, "retrain_last", ctx, a)
    card = ModelCard(a.arch, data.num_classes, dict(a.input), dict(a.arch_kwargs), task=pair.suspect_card.task,
                     relation="transfer", parents=[pair.source_id or ""], sha256=tag)
    source_id = f"{pair.source_id}@{data.name.replace('/', '_')}" if pair.source_id else None
    return replace(pair, source=model, source_card=card, source_data=data, source_id=source_id)
