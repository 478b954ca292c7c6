"""Embedded image data: scikit-learn's 8x8 digits and deterministic tasks derived from it.

``digits``: the real 1797-image set, pixels scaled to [0, 1] (the stated input space), a fixed
stratified 80/20 split. ``digits-tasks``: task ``k`` applies input transforms and a label
permutation chosen by a generator seeded with ``k``; ``"k:C"`` keeps the first ``C`` classes of the
permuted task (a class subset with another number of classes, for transfer).
Both take ``image_size`` (bilinear upscale of the kept images) and ``channels`` (3: the grey channel
repeated), so a backbone pretrained on larger RGB images reads them.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from model_pool.data import DATASETS
from model_pool.data.base import TaskData
from model_pool.params import Choice, Range, check_params

INPUT = {"kind": "image", "shape": [1, 8, 8], "normalization": {"mean": [0.0], "std": [1.0]}, "range": [0.0, 1.0]}
CLASSES = [str(i) for i in range(10)]


@lru_cache(maxsize=1)
def _base() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits  # on use: scikit-learn's import costs over a second
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target, dtype=torch.int64)
    tr, te = train_test_split(np.arange(len(y)), test_size=0.2, stratify=d.target, random_state=0)
    return x[tr], y[tr], x[te], y[te]


def _check_shape(owner: str, image_size: int | None, channels: int) -> None:
    """``BadInput`` unless ``image_size`` is None or in [8, 512] and ``channels`` is 1 or 3."""
    check_params(owner, {"image_size": int | None, "channels": int}, {"image_size": image_size, "channels": channels},
                 {"image_size": Range(8, 512), "channels": Choice(1, 3)})


def _reshape(data: TaskData, image_size: int | None, channels: int) -> TaskData:
    """``data`` (already subset: only the kept images are resized) as ``channels`` x S x S images in [0, 1]."""
    if image_size is None and channels == 1:
        return data
    size = image_size or data.x_train.shape[-1]

    def convert(x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0.0, 1.0)
        return x.repeat(1, channels, 1, 1)

    data.x_train, data.x_test = convert(data.x_train), convert(data.x_test)
    data.input = {**data.input, "shape": [channels, size, size],
                  "normalization": {"mean": [0.0] * channels, "std": [1.0] * channels}}
    return data


@DATASETS.register("digits")
def digits(task=None, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
           image_size: int | None = None, channels: int = 1) -> TaskData:
    """The source task: scikit-learn digits, 1437 train / 360 test images (``n_*``: seeded subsets)."""
    _check_shape("digits", image_size, channels)
    xtr, ytr, xte, yte = _base()
    data = TaskData("digits", xtr, ytr, xte, yte, 10, dict(INPUT), list(CLASSES)).subset(n_train, n_test, seed)
    return _reshape(data, image_size, channels)


def _tf():
    """torchvision's functional transforms, imported on first use (importing torchvision costs over a second)."""
    import torchvision.transforms.v2.functional as TF

    return TF


def _rotate(x, rng):
    return _tf().rotate(x, float(rng.choice([-1, 1]) * rng.uniform(20, 45)))


def _shift(x, rng):
    dx, dy = (int(v) for v in rng.choice([-1, 1], size=2))
    return _tf().affine(x, angle=0.0, translate=[dx, dy], scale=1.0, shear=[0.0])


def _elastic(x, rng):
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    disp = torch.randn(1, 2, 8, 8, generator=g)
    disp = _tf().gaussian_blur(disp, kernel_size=[5, 5], sigma=[1.5, 1.5]) * 0.6
    return _tf().elastic(x, disp.permute(0, 2, 3, 1) * (2.0 / 8))


TRANSFORMS = {
    "rotate": _rotate,
    "invert": lambda x, rng: 1.0 - x,
    "blur": lambda x, rng: _tf().gaussian_blur(x, kernel_size=[3, 3], sigma=[0.8, 0.8]),
    "shift": _shift,
    "elastic": _elastic,
    "transpose": lambda x, rng: x.transpose(-1, -2),
    "hflip": lambda x, rng: _tf().horizontal_flip(x),
}


def parse_task(task) -> tuple[int, int | None]:
    """``3`` / ``"3"`` -> (3, None); ``"3:5"`` -> (3, 5)."""
    if isinstance(task, int) and not isinstance(task, bool):
        return task, None
    s = str(task)
    k, _, c = s.partition(":")
    if not k.isdigit() or (c and not c.isdigit()):
        raise ValueError(f"digits-tasks task must be 'K' or 'K:C' with integers, got {task!r}")
    return int(k), (int(c) if c else None)


def task_spec(k: int) -> dict:
    """The transforms and label permutation of task ``k`` (deterministic in ``k``)."""
    names = list(TRANSFORMS)
    rng = np.random.default_rng(1000 + k)
    chosen = [names[k % len(names)]]
    if k >= len(names):
        second = names[(k // len(names) + k) % len(names)]
        if second != chosen[0]:
            chosen.append(second)
    return {"transforms": chosen, "permutation": rng.permutation(10).tolist(), "seed": 1000 + k}


def _apply(x: torch.Tensor, spec: dict) -> torch.Tensor:
    rng = np.random.default_rng(spec["seed"])
    for name in spec["transforms"]:
        x = TRANSFORMS[name](x, rng)
    return x.clamp(0.0, 1.0).contiguous()


@DATASETS.register("digits-tasks")
def digits_tasks(task=0, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
                 image_size: int | None = None, channels: int = 1) -> TaskData:
    """Derived task ``k`` (or ``"k:C"``): transformed inputs, permuted (and optionally subset) labels."""
    _check_shape("digits-tasks", image_size, channels)
    if task is None:
        raise ValueError("digits-tasks needs a task id, e.g. task=3 or task='3:5'")
    k, c = parse_task(task)
    spec = task_spec(k)
    perm = torch.tensor(spec["permutation"])
    xtr, ytr, xte, yte = _base()
    xtr, xte = _apply(xtr, spec), _apply(xte, spec)
    ytr, yte = perm[ytr], perm[yte]
    n = 10
    classes = [CLASSES[i] for i in torch.argsort(perm).tolist()]
    if c is not None:
        if not 2 <= c <= 10:
            raise ValueError(f"class subset size must be in 2..10, got {c}")
        keep_tr, keep_te = ytr < c, yte < c
        xtr, ytr, xte, yte = xtr[keep_tr], ytr[keep_tr], xte[keep_te], yte[keep_te]
        n, classes = c, classes[:c]
    name = f"digits-tasks/{k}" + (f":{c}" if c else "")
    data = TaskData(name, xtr, ytr, xte, yte, n, dict(INPUT), classes, {"spec": spec}).subset(n_train, n_test, seed)
    return _reshape(data, image_size, channels)
