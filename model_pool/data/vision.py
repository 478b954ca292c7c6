"""User-side image datasets read (and, on ``download=True`` only, fetched) by torchvision:
CIFAR-10, CIFAR-100 (whole, or the MGMP paper's 10 disjoint 10-way subsets), MNIST, Fashion-MNIST.

On-disk layout under ``root`` (default ``$MGMP_DATA``, else ``~/.cache/mgmp/data``) is torchvision's:
``cifar-10-batches-py/``, ``cifar-100-python/`` (python pickle batches) and
``MNIST/raw/``, ``FashionMNIST/raw/`` (uncompressed idx-ubyte files).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from model_pool.data import DATASETS
from model_pool.data._root import data_root, missing
from model_pool.data.base import TaskData

# name: (torchvision.datasets class name, per-channel mean, per-channel std) of the training split; torchvision
# is imported when a dataset is read (importing it costs more than a second)
SPECS = {
    "cifar10": ("CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ("CIFAR100", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ("MNIST", (0.1307,), (0.3081,)),
    "fashion-mnist": ("FashionMNIST", (0.2860,), (0.3530,)),
}
CIFAR100_SUBSETS = 10


def _expected_files(cls, root: Path) -> list[Path]:
    """The files torchvision reads for ``cls``, so a missing one is named before torchvision's vaguer error."""
    import torchvision.datasets as tvd

    if issubclass(cls, tvd.CIFAR10):  # CIFAR100 subclasses CIFAR10
        names = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return [root / cls.base_folder / n for n in names]
    return [root / cls.__name__ / "raw" / Path(url).stem for url, _ in cls.resources]  # "x-ubyte.gz" -> "x-ubyte"


def _check_present(name: str, cls, root: Path) -> None:
    """Raise the one-line BadInput (with the exact path) when any file is absent."""
    files = _expected_files(cls, root)
    absent = [f for f in files if not f.is_file()]
    if absent:
        folder = files[0].parent
        raise missing(name, folder if not folder.is_dir() else absent[0])


def _raw(ds) -> tuple[torch.Tensor, torch.Tensor]:
    """A torchvision dataset's images as uint8 (N, C, H, W) and labels as int64 (N,)."""
    x = torch.as_tensor(np.asarray(ds.data))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # MNIST (N,H,W); CIFAR (N,H,W,C)
    return x.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)


def _normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 images to float32 in [0, 1], then standardised per channel."""
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    return (x.float() / 255.0 - m) / s


def _cifar100_subset(d: TaskData, task) -> TaskData:
    """Subset ``k`` of the MGMP protocol: fine classes [10k, 10k+10) in class-index order, relabelled 0..9."""
    k = int(task)
    if not 0 <= k < CIFAR100_SUBSETS:
        raise ValueError(f"cifar100 task must be 0..{CIFAR100_SUBSETS - 1}, got {task!r}")
    lo, hi = 10 * k, 10 * k + 10
    keep_tr, keep_te = (d.y_train >= lo) & (d.y_train < hi), (d.y_test >= lo) & (d.y_test < hi)
    return dataclasses.replace(
        d, name=f"cifar100/{k}", x_train=d.x_train[keep_tr], y_train=d.y_train[keep_tr] - lo,
        x_test=d.x_test[keep_te], y_test=d.y_test[keep_te] - lo, num_classes=10, classes=d.classes[lo:hi],
        meta={**d.meta, "fine_classes": list(range(lo, hi))},
    )


def _load(name: str, task=None, root: str | None = None, download: bool = False, n_train: int | None = None,
          n_test: int | None = None, seed: int = 0) -> TaskData:
    """Read ``name`` through torchvision, subset it (still uint8, to save memory), then normalise."""
    import torchvision.datasets as tvd

    cls_name, mean, std = SPECS[name]
    cls = getattr(tvd, cls_name)
    if task is not None and name != "cifar100":
        raise ValueError(f"{name} has no tasks (only cifar100 has, 0..{CIFAR100_SUBSETS - 1})")
    path = data_root(root)
    if not download:
        _check_present(name, cls, path)
    train = cls(str(path), train=True, download=download)
    test = cls(str(path), train=False, download=False)
    (xtr, ytr), (xte, yte) = _raw(train), _raw(test)
    classes = list(train.classes)
    d = TaskData(name, xtr, ytr, xte, yte, len(classes), {}, classes,
                 {"source": f"torchvision.datasets.{cls.__name__}", "root": str(path)})
    if task is not None:
        d = _cifar100_subset(d, task)
    d = d.subset(n_train, n_test, seed)
    inp = {"kind": "image", "shape": list(d.x_train.shape[1:]), "normalization": {"mean": list(mean), "std": list(std)}}
    return dataclasses.replace(d, x_train=_normalise(d.x_train, mean, std), x_test=_normalise(d.x_test, mean, std),
                               input=inp)


@DATASETS.register("cifar10")
def cifar10(task=None, **kw) -> TaskData:
    """CIFAR-10: 50k/10k 32x32 RGB images, 10 classes. ``kw`` as :func:`_load`."""
    return _load("cifar10", task, **kw)


@DATASETS.register("cifar100")
def cifar100(task=None, **kw) -> TaskData:
    """CIFAR-100: all 100 fine classes, or with ``task=k`` (0..9) the MGMP paper's ``k``-th disjoint 10-way subset.

    The paper splits CIFAR-100 into 10 disjoint 10-class tasks without fixing the split; we take fine classes
    ``[10k, 10k+10)`` in torchvision's class-index (alphabetical) order, relabelled 0..9, named ``cifar100/k``.
    """
    return _load("cifar100", task, **kw)


@DATASETS.register("mnist")
def mnist(task=None, **kw) -> TaskData:
    """MNIST: 60k/10k 28x28 grey digits, 10 classes. ``kw`` as :func:`_load`."""
    return _load("mnist", task, **kw)


@DATASETS.register("fashion-mnist")
def fashion_mnist(task=None, **kw) -> TaskData:
    """Fashion-MNIST: 60k/10k 28x28 grey clothing images, 10 classes. ``kw`` as :func:`_load`."""
    return _load("fashion-mnist", task, **kw)
