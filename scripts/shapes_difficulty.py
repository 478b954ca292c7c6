"""Is the shapes task hard enough for mistakes to exist? Three seeds of one architecture trained on it: their test
accuracy and how often each two disagree on a test image (the students issue asks for >= 10 %).

    python scripts/shapes_difficulty.py --arch cnn4 --epochs 10
"""
from __future__ import annotations

import argparse
import itertools
import json
import time

import torch

from model_pool.archs import create_model
from model_pool.data import load_dataset
from model_pool.train import accuracy, fit, predict


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="cnn4")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    data = load_dataset("shapes")
    preds, rows = [], []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        model = fit(create_model(args.arch, data.num_classes), data.x_train, data.y_train, epochs=args.epochs,
                    lr=0.002, batch_size=64, seed=seed)
        preds.append(predict(model, data.x_test).argmax(1))
        rows.append({"seed": seed, "train_acc": accuracy(model, data.x_train, data.y_train),
                     "test_acc": accuracy(model, data.x_test, data.y_test), "seconds": time.perf_counter() - t0})
        print(json.dumps(rows[-1]), flush=True)
    for i, j in itertools.combinations(range(args.seeds), 2):
        print(json.dumps({"seeds": [i, j], "disagreement": float((preds[i] != preds[j]).float().mean())}))


if __name__ == "__main__":
    main()
