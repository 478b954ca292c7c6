"""User-side image datasets through torchvision: CIFAR-10, CIFAR-100 (and the MGMP paper's 10
disjoint 10-way subsets), MNIST, Fashion-MNIST. Nothing is downloaded unless ``download=True``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision

from model_pool.data import DATASETS
from model_pool.data._root import data_root, missing
from model_pool.data.base import TaskData

# name: (torchvision class, mean, std, folder torchvision checks)
SPECS = {
    "cifar10": (torchvision.datasets.CIFAR10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "cifar-10-batches-py"),
    "cifar100": (torchvision.datasets.CIFAR100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "cifar-100-python"),
    "mnist": (torchvision.datasets.MNIST, (0.1307,), (0.3081,), "MNIST/raw"),
    "fashion-mnist": (torchvision.datasets.FashionMNIST, (0.2860,), (0.3530,), "FashionMNIST/raw"),
}


def _split(cls, root: Path, train: bool, download: bool, name: str):
    try:
        return cls(str(root), train=train, download=download)
    except RuntimeError as e:  # torchvision's "Dataset not found or corrupted"
        raise missing(name, root / SPECS[name][3]) from e


def _tensors(ds, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(ds.data))
    x = (x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)).float() / 255.0
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    return ((x - m) / s).contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)


def _load(name: str, task=None, root=None, download: bool = False, n_train=None, n_test=None, seed: int = 0) -> TaskData:
    cls, mean, std, _ = SPECS[name]
    root = data_root(root)
    tr, te = _split(cls, root, True, download, name), _split(cls, root, False, download, name)
    xtr, ytr = _tensors(tr, mean, std)
    xte, yte = _tensors(te, mean, std)
    classes = list(tr.classes)
    full_name = name
    if task is not None:
        if name != "cifar100" or not 0 <= int(task) <= 9:
            raise ValueError(f"{name} has no task {task!r} (cifar100 has subsets 0-9)")
        xtr, ytr, xte, yte, classes = _subset(int(task), xtr, ytr, xte, yte, classes)
        full_name = f"cifar100/{int(task)}"
    inp = {"kind": "image", "shape": list(xtr.shape[1:]), "normalization": {"mean": list(mean), "std": list(std)}}
    return TaskData(full_name, xtr, ytr, xte, yte, len(classes), inp, classes, {"source": "torchvision", "root": str(root)}
                    ).subset(n_train, n_test, seed)


def _subset(k: int, xtr, ytr, xte, yte, classes):
    """The MGMP paper's protocol: subset k holds fine classes 10k..10k+9 (class-index order), relabelled 0..9."""
    lo, hi = 10 * k, 10 * k + 10
    keep_tr, keep_te = (ytr >= lo) & (ytr < hi), (yte >= lo) & (yte < hi)
    return xtr[keep_tr], ytr[keep_tr] - lo, xte[keep_te], yte[keep_te] - lo, classes[lo:hi]


for _name in SPECS:
    DATASETS.register(_name)(lambda task=None, _n=_name, **kw: _load(_n, task, **kw))
