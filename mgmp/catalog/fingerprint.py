"""A model's fingerprint: a fixed sample of every weight matrix's entries, plus config and tokenizer signals.

The sampled positions depend only on a tensor's shape (strided rows, then a seeded subset of their entries), so
two models of one architecture are sampled at the same positions and the cosine of two samples estimates the
cosine of the full tensors (± 1/√``SAMPLES`` for unrelated ones). Fine-tuning, quantisation, pruning and LoRA
merges keep a base's matrices close to it (cosine ≫ 0.5); training from scratch gives cosine ≈ 0.
The vocabulary is kept as a bottom-k sketch of its tokens' hashes (Jaccard similarity estimates).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from mgmp.catalog.files import ModelFiles, TensorEntry

VERSION = 1  # bump when the sampling changes: catalogs of another version are refused, not misread
SAMPLES = 1024  # entries sampled per tensor
SEED = 20261206
ROWS_PER_SAMPLE = 4  # read about this many times SAMPLES entries (whole rows) before choosing SAMPLES of them
VOCAB_SKETCH = 256


@dataclass
class Fingerprint:
    """Per tensor (≥ 2 dims, float): name, shape and sampled entries; the config keys and the vocabulary sketch."""

    names: list[str]
    shapes: list[tuple[int, ...]]
    samples: list[np.ndarray]
    config: dict = field(default_factory=dict)
    vocab: np.ndarray | None = None  # sorted bottom-k token hashes (uint64)
    vocab_size: int | None = None
    params: int = 0  # entries of the sampled tensors (the model's matrices)

    def meta(self) -> dict:
        return {"version": VERSION, "samples": SAMPLES, "names": self.names, "shapes": [list(s) for s in self.shapes],
                "config": self.config, "vocab_size": self.vocab_size, "params": self.params}


def row_step(shape: tuple[int, ...]) -> int:
    """Read every ``row_step``-th row: enough rows for ``ROWS_PER_SAMPLE * SAMPLES`` entries."""
    rows, width = shape[0], math.prod(shape[1:])
    wanted = min(rows, max(1, math.ceil(ROWS_PER_SAMPLE * SAMPLES / max(width, 1))))
    return max(1, rows // wanted)


def sample_positions(shape: tuple[int, ...], n: int) -> np.ndarray | None:
    """Which of the ``n`` read entries to keep (sorted), seeded by the shape; None: all of them."""
    if n <= SAMPLES:
        return None
    rng = np.random.default_rng([SEED, *shape])
    return np.sort(rng.choice(n, SAMPLES, replace=False))


def sample_tensor(entry: TensorEntry) -> np.ndarray:
    values = entry.read_rows(row_step(entry.shape)).reshape(-1)
    keep = sample_positions(entry.shape, values.size)
    return (values if keep is None else values[keep]).astype(np.float32)


def vocab_sketch(tokens: Iterable[str]) -> np.ndarray:
    """The ``VOCAB_SKETCH`` smallest 64-bit hashes of the distinct tokens (a bottom-k MinHash sketch)."""
    hashes = {int.from_bytes(hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
              for t in tokens}
    return np.array(sorted(hashes)[:VOCAB_SKETCH], dtype=np.uint64)


def vocab_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two vocabularies from their bottom-k sketches."""
    k = min(len(a), len(b))
    union = np.union1d(a, b)[:k]
    return float((np.isin(union, a) & np.isin(union, b)).sum() / max(len(union), 1))


def fingerprint(model: ModelFiles, shapes: set[tuple[int, ...]] | None = None, progress=None) -> Fingerprint:
    """The fingerprint of ``model``'s files; ``shapes``: sample only tensors of these shapes (a scan needs only
    those a catalog holds). ``progress(done, total)`` is called after each tensor."""
    names, kept_shapes, samples, params = [], [], [], 0
    for done, entry in enumerate(model.tensors, 1):
        if shapes is None or entry.shape in shapes:
            names.append(entry.name)
            kept_shapes.append(entry.shape)
            samples.append(sample_tensor(entry))
            params += math.prod(entry.shape)
        if progress:
            progress(done, len(model.tensors))
    vocab = vocab_sketch(model.vocab) if model.vocab else None
    return Fingerprint(names, kept_shapes, samples, dict(model.config), vocab,
                       len(set(model.vocab)) if model.vocab else None, params)


def to_arrays(fp: Fingerprint) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The fingerprint as safetensors arrays (samples in float16, concatenated) and string metadata."""
    arrays = {"samples": np.concatenate(fp.samples).astype(np.float16) if fp.samples else np.zeros(0, np.float16),
              "offsets": np.cumsum([0] + [s.size for s in fp.samples]).astype(np.int64)}
    if fp.vocab is not None:
        arrays["vocab"] = fp.vocab
    return arrays, {"fingerprint": json.dumps(fp.meta(), sort_keys=True)}


def from_arrays(arrays: dict[str, np.ndarray], metadata: dict[str, str], where: str) -> Fingerprint:
    from model_pool.errors import BadInput

    meta = json.loads(metadata["fingerprint"])
    if meta.get("version") != VERSION or meta.get("samples") != SAMPLES:
        raise BadInput(f"{where}: fingerprint version {meta.get('version')} with {meta.get('samples')} samples; this "
                       f"mgmp reads version {VERSION} with {SAMPLES}: rebuild it with `mgmp catalog add`")
    offsets, flat = arrays["offsets"], arrays["samples"].astype(np.float32)
    samples = [flat[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    if len(samples) != len(meta["names"]):
        raise BadInput(f"{where}: {len(samples)} sampled tensors for {len(meta['names'])} names")
    return Fingerprint(meta["names"], [tuple(s) for s in meta["shapes"]], samples, meta.get("config", {}),
                       arrays.get("vocab"), meta.get("vocab_size"), meta.get("params", 0))
