"""Held-out perplexity of every causal LM of a pool, on the test prompts of the data each was built on.

    python scripts/lm_perplexity.py --pool runs/pools/real_llm [--n 200]

Perplexity = exp(mean next-token cross-entropy over every real position of the test prompts and their next token),
the language-modelling loss the recipes train with (``model_pool.train.lm_loss``); next-token accuracy is the
builder's own metric (the card's ``test_acc``).
"""
from __future__ import annotations

import argparse
import math

import torch

from model_pool.data import load_dataset
from model_pool.pool import Pool
from model_pool.train import lm_loss


@torch.no_grad()
def perplexity(model, x: torch.Tensor, y: torch.Tensor, batch: int = 32) -> float:
    """exp of the token-weighted mean language-modelling loss."""
    total, tokens = 0.0, 0
    for s in range(0, len(x), batch):
        xb, yb = x[s:s + batch], y[s:s + batch]
        n = int((xb != 0).sum())  # each real position predicts one token (the last one predicts y)
        total += float(lm_loss(model, xb, yb)) * n
        tokens += n
    return math.exp(total / tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", required=True)
    ap.add_argument("--n", type=int, default=200, help="test prompts per model")
    args = ap.parse_args()
    print("| model | relation | domain | test prompts | perplexity | next-token accuracy |\n|---|---|---|---|---|---|")
    with Pool.open(args.pool) as pool:
        for model_id in pool.registry.ids():
            model, card = pool.load(model_id)
            if not getattr(model, "is_lm", False):
                continue
            r = card.recipe
            data = load_dataset(r["dataset"], task=r.get("task"), **r.get("data", {}))
            x, y = data.x_test[: args.n], data.y_test[: args.n]
            print(f"| {model_id} | {card.relation} | {r.get('task')} | {len(x)} | {perplexity(model.eval(), x, y):.1f} "
                  f"| {card.metrics.get('test_acc', float('nan')):.3f} |", flush=True)


if __name__ == "__main__":
    main()
