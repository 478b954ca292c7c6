"""Embedded hard image task: ten kinds of shape drawn in clutter at 32x32 RGB, deterministic in its seed.

``shapes``: each image shows one shape of its class (disk, square, triangle, cross, ring, diamond, star, crescent,
bar, arrow) at a random place, size, rotation and colour, over a smooth random background, with a smaller
distractor shape of another class, a random occluding patch and pixel noise. Colour carries no class information and
the distractors are drawn like the labelled shapes, so independent models of one architecture disagree on a
good share of test images (the students issue's requirement: a thief copies the source's mistakes, which need to
exist). ``shapes-tasks`` task ``"k:C"``: labels permuted by a generator seeded with ``k``, the first ``C`` kept
(transfer). ``shapes-public``: more images of the same distribution, disjoint from the task's (a thief's public
in-distribution data). ``shapes-textures``: the backgrounds and distractors alone, no labelled shape: another
distribution of the same input space, a thief's far surrogate (its labels are meaningless).
Images are in [0, 1]; ``image_size`` resizes (bilinear), ``channels=1`` keeps the mean of the three.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from model_pool.data import DATASETS
from model_pool.data.base import TaskData
from model_pool.params import Choice, Range, check_params

SIZE = 32
CLASSES = ["disk", "square", "triangle", "cross", "ring", "diamond", "star", "crescent", "bar", "arrow"]
N_TRAIN, N_TEST = 4000, 1000
BASE_SEED = 3141
CONTRAST = 0.35  # the labelled shape's colour differs from the background's by at least this in one channel


def _masks(kind: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean masks (N, S, S) of shape ``kind`` (N,) in shape coordinates ``u, v`` (unit radius, rotated)."""
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    k = kind[:, None, None]
    shapes = [
        r <= 1.0,
        (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8),
        (v >= -0.6) & (v <= 1.1 - 1.9 * np.abs(u)) & (np.abs(u) <= 0.9),
        ((np.abs(u) <= 0.28) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.28) & (np.abs(u) <= 1.0)),
        (r <= 1.0) & (r >= 0.6),
        np.abs(u) + np.abs(v) <= 1.05,
        r <= 0.55 + 0.45 * np.cos(5 * theta) ** 2,
        (r <= 1.0) & (np.hypot(u - 0.45, v) >= 0.8),
        (np.abs(u) <= 1.0) & (np.abs(v) <= 0.3),
        ((np.abs(v) <= 0.22) & (u >= -1.0) & (u <= 0.3)) | ((u >= 0.2) & (np.abs(v) <= 0.9 - 1.1 * (u - 0.2))),
    ]
    out = np.zeros_like(r, dtype=bool)
    for i, m in enumerate(shapes):
        out |= (k == i) & m
    return out


def _draw(rng: np.random.Generator, kind: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Masks of shapes ``kind`` at random centres, radii in ``scale`` (pixels) and rotations."""
    n = len(kind)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    cx, cy = rng.uniform(7, SIZE - 7, (2, n)).astype(np.float32)
    radius = rng.uniform(*scale, n).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    dx, dy = xx[None] - cx[:, None, None], yy[None] - cy[:, None, None]
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u, v = (c * dx + s * dy) / radius[:, None, None], (-s * dx + c * dy) / radius[:, None, None]
    return _masks(kind, u, v)


def _background(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random colour fields (N, 3, S, S), 4x4 noise upsampled around a colour offset, and that offset."""
    coarse = torch.from_numpy(rng.uniform(0, 1, (n, 3, 4, 4)).astype(np.float32))
    smooth = F.interpolate(coarse, size=(SIZE, SIZE), mode="bicubic", align_corners=False).numpy()
    offset = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    return np.clip(0.35 * smooth + 0.65 * offset[:, :, None, None], 0, 1), offset


def _colour(rng: np.random.Generator, against: np.ndarray, contrast: float) -> np.ndarray:
    """Random colours at least ``contrast`` away from ``against`` in their most different channel."""
    c = rng.uniform(0, 1, against.shape).astype(np.float32)
    weak = np.abs(c - against).max(1) < contrast
    c[weak] = np.where(against[weak] > 0.5, 0.0, 1.0)
    return c


def _paint(img: np.ndarray, mask: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    m = mask[:, None].astype(np.float32) * alpha[:, None, None, None]
    return img * (1 - m) + colour[:, :, None, None] * m


def generate(n: int, seed: int, labelled: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (N, 3, 32, 32) in [0, 1] and their labels; ``labelled=False``: no labelled shape is drawn."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    img, offset = _background(rng, n)
    other = (y + rng.integers(1, len(CLASSES), n)) % len(CLASSES)
    img = _paint(img, _draw(rng, other, (2.5, 4.5)), rng.uniform(0, 1, (n, 3)).astype(np.float32),
                 rng.uniform(0.4, 0.8, n).astype(np.float32))
    if labelled:
        img = _paint(img, _draw(rng, y, (7.0, 11.0)), _colour(rng, offset, CONTRAST),
                     rng.uniform(0.8, 1.0, n).astype(np.float32))
    x0, y0 = rng.integers(0, SIZE - 4, (2, n))
    w, h = rng.integers(3, 7, (2, n))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    patch = (xx[None] >= x0[:, None, None]) & (xx[None] < (x0 + w)[:, None, None]) & \
            (yy[None] >= y0[:, None, None]) & (yy[None] < (y0 + h)[:, None, None])
    img = _paint(img, patch, rng.uniform(0, 1, (n, 3)).astype(np.float32), np.ones(n, np.float32))
    img = np.clip(img + rng.normal(0, 0.05, img.shape).astype(np.float32), 0, 1)
    return torch.from_numpy(img.astype(np.float32)), torch.from_numpy(y.astype(np.int64))


SEEDS = {"task": 0, "textures": 100, "public": 200}  # generator seed offsets: disjoint image sets


@lru_cache(maxsize=3)
def _base(kind: str) -> tuple[torch.Tensor, ...]:
    labelled = kind != "textures"
    xtr, ytr = generate(N_TRAIN, BASE_SEED + SEEDS[kind], labelled)
    xte, yte = generate(N_TEST, BASE_SEED + SEEDS[kind] + 1, labelled)
    return xtr, ytr, xte, yte


def _check(owner: str, image_size: int | None, channels: int) -> None:
    check_params(owner, {"image_size": int | None, "channels": int}, {"image_size": image_size, "channels": channels},
                 {"image_size": Range(8, 512), "channels": Choice(1, 3)})


def _finish(data: TaskData, image_size: int | None, channels: int) -> TaskData:
    size = image_size or SIZE

    def convert(x: torch.Tensor) -> torch.Tensor:
        if size != SIZE:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
        return x.mean(1, keepdim=True) if channels == 1 else x

    data.x_train, data.x_test = convert(data.x_train), convert(data.x_test)
    data.input = {"kind": "image", "shape": [channels, size, size], "range": [0.0, 1.0],
                  "normalization": {"mean": [0.0] * channels, "std": [1.0] * channels}}
    return data


def _task(name: str, kind: str, task, n_train, n_test, seed, image_size, channels) -> TaskData:
    _check(name, image_size, channels)
    xtr, ytr, xte, yte = _base(kind)
    n, classes, meta = len(CLASSES), list(CLASSES), {}
    if task is not None:
        k, _, c = str(task).partition(":")
        if not k.isdigit() or (c and not c.isdigit()):
            raise ValueError(f"{name} task must be 'K' or 'K:C' with integers, got {task!r}")
        perm = torch.from_numpy(np.random.default_rng(2000 + int(k)).permutation(n))
        ytr, yte = perm[ytr], perm[yte]
        classes = [CLASSES[i] for i in torch.argsort(perm).tolist()]
        if c:
            if not 2 <= int(c) <= n:
                raise ValueError(f"class subset size must be in 2..{n}, got {c}")
            keep_tr, keep_te = ytr < int(c), yte < int(c)
            xtr, ytr, xte, yte = xtr[keep_tr], ytr[keep_tr], xte[keep_te], yte[keep_te]
            n, classes = int(c), classes[:int(c)]
        name, meta = f"{name}/{task}", {"permutation": perm.tolist()}
    data = TaskData(name, xtr, ytr, xte, yte, n, {}, classes, meta).subset(n_train, n_test, seed)
    return _finish(data, image_size, channels)


@DATASETS.register("shapes")
def shapes(task=None, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
           image_size: int | None = None, channels: int = 3) -> TaskData:
    """The hard source task: 4,000 train / 1,000 test 32x32 RGB images of 10 shape classes in clutter."""
    if task is not None:
        raise ValueError("shapes has no tasks (shapes-tasks has)")
    return _task("shapes", "task", None, n_train, n_test, seed, image_size, channels)


@DATASETS.register("shapes-tasks")
def shapes_tasks(task=0, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
                 image_size: int | None = None, channels: int = 3) -> TaskData:
    """Task ``k`` or ``"k:C"`` of the shapes: labels permuted (seeded by ``k``), the first ``C`` classes kept."""
    return _task("shapes-tasks", "task", 0 if task is None else task, n_train, n_test, seed, image_size, channels)


@DATASETS.register("shapes-textures")
def shapes_textures(task=None, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
                    image_size: int | None = None, channels: int = 3) -> TaskData:
    """Backgrounds, distractors and occluders without the labelled shape: unlabelled surrogate inputs."""
    return _task("shapes-textures", "textures", None, n_train, n_test, seed, image_size, channels)


@DATASETS.register("shapes-public")
def shapes_public(task=None, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
                  image_size: int | None = None, channels: int = 3) -> TaskData:
    """Another 5,000 images of the shapes' own distribution, disjoint from the task's: the public in-distribution
    data a thief may hold without the owner's training set (its labels are not used by thieves)."""
    return _task("shapes-public", "public", None, n_train, n_test, seed, image_size, channels)
