"""An unmerged LoRA descendant of a pool's causal LM, brought in the way a user's adapter arrives.

    python scripts/lm_unmerged_lora.py --pool runs/pools/real_llm --parent smol-a --id smol-a-lora-unmerged

Trains a peft LoRA adapter on the parent's own prompts (its card's data), saves it unmerged as
``PeftModel.save_pretrained`` does (``adapter_config.json`` + ``adapter_model.safetensors``), then imports it with
``mgmp model import ADAPTER --from peft --base PARENT`` and registers it with ``mgmp pool add --parent PARENT
--relation adapter``. The pool builder writes merged models only; this is the unmerged row of the LM pool.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from mgmp.cli import main as mgmp
from model_pool.data import load_dataset
from model_pool.pool import Pool
from model_pool.registry import MODELS_DIR
from model_pool.train import fit

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", required=True)
    ap.add_argument("--parent", required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10, help="batches of 16 prompts")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=16)
    args = ap.parse_args()
    from peft import LoraConfig, get_peft_model

    with Pool.open(args.pool) as pool:
        model, card = pool.load(args.parent)
    r = card.recipe
    data = load_dataset(r["dataset"], task=r.get("task"), **r.get("data", {}))
    idx = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(args.seed))[: 16 * args.steps]
    peft_model = get_peft_model(model.hf, LoraConfig(r=args.r, lora_alpha=2 * args.r, target_modules=TARGETS))
    fit(model, data.x_train[idx], data.y_train[idx], epochs=1, lr=args.lr, batch_size=16, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        adapter, imported = Path(tmp) / "adapter", Path(tmp) / "model"
        peft_model.save_pretrained(str(adapter), safe_serialization=True)
        base = Path(args.pool) / MODELS_DIR / args.parent
        assert mgmp(["model", "import", str(adapter), "--from", "peft", "--base", str(base), "--out", str(imported)]) == 0
        assert mgmp(["pool", "add", args.pool, str(imported), "--id", args.id, "--parent", args.parent,
                     "--relation", "adapter"]) == 0


if __name__ == "__main__":
    main()
