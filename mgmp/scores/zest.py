"""Zest (Jia et al., ICLR 2022): compare models by their local linear explanations on shared points.

N seeded reference points of the source's data are cut into segments (quickshift superpixels for
images, one segment per token for text); L random binary masks per point (LIME's sampling: fair
coin per segment, the first mask keeps everything), the same masks for both models; masked segments
take the baseline value. Per point a linear model of the softmax outputs on the masks is fit
(least squares, or LIME's kernel-weighted ridge); the signature concatenates the coefficients.
Distance = cosine distance of signatures. A suspect of another task is compared through indirect
measurement (the source transferred to its task, as closeness does) when its data is known, else by
greedy class alignment of the signatures (the paper's Algorithm 1);
relative distance = distance / mean distance of generated independent models of the source (< 1:
related).
"""
from __future__ import annotations

import contextlib
import hashlib

import numpy as np
import torch
from skimage.color import gray2rgb
from skimage.segmentation import quickshift

from mgmp.representations.outputs import PRECISIONS, query
from mgmp.scores import SCORES
from mgmp.scores.base import Pair, PairScore, ScoreResult
from mgmp.scores.indirect import indirect_pair
from mgmp.scores.references import reference_models
from model_pool.params import SEED, Choice, Range, check_params

PAPER_QUICKSHIFT = {"kernel_size": 4, "ratio": 0.2, "max_dist": 200}
SMALL_QUICKSHIFT = {"kernel_size": 2, "ratio": 0.5, "max_dist": 4}  # < 32 px: the paper's setting gives 1 segment
QUICKSHIFT_TYPES = {"kernel_size": float, "ratio": float, "max_dist": float, "sigma": float}  # what zest may pass on
QUICKSHIFT_SPECS = {"kernel_size": Range(0, 100, open_lo=True), "ratio": Range(0, 1),
                    "max_dist": Range(0, 1e6, open_lo=True), "sigma": Range(0, 100)}


def segment_images(x: torch.Tensor, quickshift_params: dict | None = None, seed: int = 0) -> torch.Tensor:
    """Quickshift superpixels (N, H, W), ids 0..S_i-1 per image; ``None`` params: paper's, scaled for small images."""
    params = quickshift_params or (PAPER_QUICKSHIFT if x.shape[-1] >= 32 else SMALL_QUICKSHIFT)
    out = []
    for img in x.double().numpy():
        rgb = gray2rgb(img[0]) if img.shape[0] == 1 else img.transpose(1, 2, 0)
        out.append(np.unique(quickshift(rgb, rng=seed, **params), return_inverse=True)[1].reshape(rgb.shape[:2]))
    return torch.from_numpy(np.stack(out)).long()


def segment_tokens(x: torch.Tensor) -> torch.Tensor:
    """One segment per non-padding token (id 0 = padding, assigned segment -1: never masked)."""
    ids = torch.arange(x.shape[1]).expand_as(x).clone()
    ids[x == 0] = -1
    return ids


def lime_masks(n_segments: list[int], n_masks: int, seed: int) -> torch.Tensor:
    """Binary masks (N, L, S_max): point i's rows drawn as LIME does with ``RandomState(seed + i)``."""
    s_max = max(n_segments)
    out = np.zeros((len(n_segments), n_masks, s_max), dtype=np.float32)
    for i, s in enumerate(n_segments):
        m = np.random.RandomState(seed + i).randint(0, 2, n_masks * s).reshape(n_masks, s)
        m[0, :] = 1
        out[i, :, :s] = m
    return torch.from_numpy(out)


def masked_copies(x: torch.Tensor, segments: torch.Tensor, masks: torch.Tensor, points: torch.Tensor,
                  baseline: float) -> torch.Tensor:
    """One perturbed copy of ``x[points[r]]`` per mask row ``masks[r]`` (R, S): segments whose bit is 0 take
    ``baseline`` (segment -1: never masked). Built per batch, so only the copies about to be queried exist."""
    seg = segments[points]
    keep = torch.gather(masks, 1, seg.clamp(min=0).flatten(1)).masked_fill(seg.flatten(1) < 0, 1).view(seg.shape)
    if x.ndim == segments.ndim + 1:  # image channels share the segment map
        keep = keep.unsqueeze(1)
    xs = x[points]
    return torch.where(keep > 0, xs, torch.full_like(xs, baseline))


def lime_kernel(masks: torch.Tensor, width: float = 0.25) -> torch.Tensor:
    """LIME's sample weights: sqrt(exp(-d²/w²)), d = cosine distance of each mask to the all-ones mask."""
    ones = (masks.sum(-1, keepdim=True) > 0).float()  # padded columns are zero in every row
    s = masks.shape[-1] - (masks.amax(1) == 0).sum(-1, keepdim=True).float()  # active segments per point
    cos = masks.sum(-1) / (masks.norm(dim=-1).clamp_min(1e-12) * s.sqrt())
    d = 1 - cos * ones.squeeze(-1)
    return torch.sqrt(torch.exp(-(d**2) / width**2))


def fit_operator(masks: torch.Tensor, method: str = "lstsq", alpha: float = 1.0,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per point the linear map (N, S, L) from outputs on the masks to the surrogate's coefficients: it
    depends on the masks only, so one factorisation per point serves every class and every model.
    ``lstsq``: the minimum-norm least-squares solution with an intercept (the pseudo-inverse, as LAPACK's
    gelsd gives it); ``lime``: LIME's kernel-weighted ridge with a weighted-mean intercept."""
    m = masks.double()
    if method == "lstsq":
        return torch.linalg.pinv(torch.cat([torch.ones_like(m[..., :1]), m], -1))[:, 1:]
    w = (weights if weights is not None else torch.ones(m.shape[:2])).double().unsqueeze(-1)
    mc = m - (w * m).sum(1, keepdim=True) / w.sum(1, keepdim=True)
    gram = mc.transpose(1, 2) @ (w * mc) + alpha * torch.eye(m.shape[-1], dtype=m.dtype)
    return torch.linalg.solve(gram, (w * mc).transpose(1, 2))  # (w·mc)ᵀ·1 = 0: centring y is implied


def fit_linear(masks: torch.Tensor, y: torch.Tensor, method: str = "lstsq", alpha: float = 1.0,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per point coefficients (N, S, C) of y (N, L, C) on masks (N, L, S) with an intercept, batched."""
    return (fit_operator(masks, method, alpha, weights) @ y.double()).float()


def align_classes(sig_a: torch.Tensor, sig_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy class matching (Zest's Algorithm 1): pair the most similar class columns first."""
    a = torch.nn.functional.normalize(sig_a.flatten(0, 1).T, dim=1)
    b = torch.nn.functional.normalize(sig_b.flatten(0, 1).T, dim=1)
    sim = a @ b.T
    ia, ib = [], []
    for _ in range(min(sim.shape)):
        i, j = divmod(int(sim.argmax()), sim.shape[1])
        ia.append(i)
        ib.append(j)
        sim[i, :] = -2
        sim[:, j] = -2
    return sig_a[..., ia], sig_b[..., ib]


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(1 - torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


@SCORES.register("zest")
class Zest(PairScore):
    """Zest distance (lower = related); relative to generated independent models when ``relative``.

    ``tolerance`` > 0: adaptive L for the suspect: masks are added ``mask_step`` at a time (up to
    ``n_masks``) until the signature's cosine distance to the previous estimate falls below ``tolerance``,
    and both signatures are fit on the masks used (the paper: fixed L, ``tolerance=0``)."""

    name = "zest"
    higher_is_related = False
    handles_transfer = True
    execution_params = frozenset({"batch_size"})
    param_specs = {"n_points": Range(1, 100_000), "n_masks": Range(1, 100_000), "fit": Choice("lstsq", "lime"),
                   "ridge_alpha": Range(0, 1e6, open_lo=True), "kernel_width": Range(0, 100, open_lo=True),
                   "baseline": Range(), "align": Choice("auto", "indirect", "always", "never"),
                   "n_references": Range(1, 100), "seed": SEED, "indirect_epochs": Range(1, 10_000),
                   "batch_size": Range(1, 1 << 24), "tolerance": Range(0, 1), "mask_step": Range(1, 100_000),
                   "precision": Choice(*PRECISIONS)}

    def __init__(self, n_points: int = 128, n_masks: int = 1000, fit: str = "lstsq", ridge_alpha: float = 1.0,
                 kernel_width: float = 0.25, baseline: float = 0.0, align: str = "auto",
                 quickshift: dict | None = None, relative: bool = True, n_references: int = 2, seed: int = 0,
                 indirect_epochs: int = 5, batch_size: int = 256, tolerance: float = 0.0, mask_step: int = 100,
                 precision: str = "float32"):
        check_params("zest: quickshift", QUICKSHIFT_TYPES, quickshift or {}, QUICKSHIFT_SPECS)
        self.n_points, self.n_masks, self.fit, self.ridge_alpha = n_points, n_masks, fit, ridge_alpha
        self.kernel_width, self.baseline, self.align, self.quickshift = kernel_width, baseline, align, quickshift
        self.relative, self.n_references, self.seed, self.batch_size = relative, n_references, seed, batch_size
        self.indirect_epochs, self.tolerance, self.mask_step, self.precision = indirect_epochs, tolerance, mask_step, precision

    def setup(self, pair: Pair) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reference points, their segments and the shared masks."""
        data = pair.source_data
        x = data.x_test if len(data.x_test) >= self.n_points else torch.cat([data.x_test, data.x_train])
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))[: self.n_points]]
        seg = segment_images(x, self.quickshift, self.seed) if data.kind == "image" else segment_tokens(x)
        counts = [int(s.max()) + 1 for s in seg]
        return x, seg, lime_masks(counts, self.n_masks, self.seed)

    def outputs(self, model, x, seg, masks) -> torch.Tensor:
        """``model``'s probabilities (N, L, C) on every masked copy, ``batch_size`` copies per forward."""
        n, L, s = masks.shape
        flat, points = masks.reshape(n * L, s), torch.arange(n).repeat_interleave(L)
        chunks, layout = [], x.ndim == 4 and self.precision != "float32"
        with torch.inference_mode(), channels_last(model, layout):
            for lo in range(0, n * L, self.batch_size):
                rows = slice(lo, lo + self.batch_size)
                batch = masked_copies(x, seg, flat[rows], points[rows], self.baseline)
                if layout:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                chunks.append(query(model, batch, self.batch_size, probs=True, precision=self.precision))
        return torch.cat(chunks).view(n, L, -1).clone()  # clone: a normal tensor outside inference mode

    def coefficients(self, masks: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = lime_kernel(masks, self.kernel_width) if self.fit == "lime" else None
        return fit_linear(masks, y, self.fit, self.ridge_alpha, w)

    def signature(self, model, x, seg, masks) -> torch.Tensor:
        """Coefficients (N, S_max, C) of ``model``'s probabilities on the masked copies (queries only)."""
        return self.coefficients(masks, self.outputs(model, x, seg, masks))

    def adaptive_outputs(self, model, x, seg, masks) -> torch.Tensor:
        """Outputs (N, L', C) on the first L' masks: rounds of ``mask_step`` masks until the signature moves
        by less than ``tolerance`` (cosine distance to the previous round's), or all ``n_masks`` are used."""
        y, previous = [], None
        for lo in range(0, masks.shape[1], self.mask_step):
            y.append(self.outputs(model, x, seg, masks[:, lo : lo + self.mask_step]))
            used = torch.cat(y, 1)
            sig = self.coefficients(masks[:, : used.shape[1]], used)
            if previous is not None and cosine_distance(sig, previous) < self.tolerance:
                break
            previous = sig
        return used

    def _key(self, card, pair: Pair) -> str:
        return hashlib.sha256(f"{card.sha256}|{pair.source_data.name}|{self.params_hash()}".encode()).hexdigest()[:16]

    def _cached(self, kind: str, pair: Pair, card, build) -> torch.Tensor:
        """What a model gives on the pair's reference points, computed once per (weights, data, params)."""
        return pair.cache.tensor(f"zest-{kind}-{self._key(card, pair)}" if card.sha256 else None, "signatures", build)

    def source_signature(self, pair: Pair, x, seg, masks) -> torch.Tensor:
        """The source's signature on every mask (per source: cached)."""
        if self.tolerance:
            return self.coefficients(masks, self._source_outputs(pair, x, seg, masks))
        return self._cached("signature", pair, pair.source_card, lambda: self.signature(pair.source, x, seg, masks))

    def _source_outputs(self, pair: Pair, x, seg, masks) -> torch.Tensor:
        return self._cached("outputs", pair, pair.source_card, lambda: self.outputs(pair.source, x, seg, masks))

    def signatures(self, pair: Pair, x, seg, masks) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Source and suspect signatures on the same masks, and how many masks that is."""
        if not self.tolerance:
            sig_b = self._cached("signature", pair, pair.suspect_card, lambda: self.signature(pair.suspect, x, seg, masks))
            return self.source_signature(pair, x, seg, masks), sig_b, masks.shape[1]
        y_b = self._cached("adaptive-outputs", pair, pair.suspect_card,
                           lambda: self.adaptive_outputs(pair.suspect, x, seg, masks))
        used = masks[:, : y_b.shape[1]]
        y_a = self._source_outputs(pair, x, seg, masks)[:, : used.shape[1]]
        return self.coefficients(used, y_a), self.coefficients(used, y_b), used.shape[1]

    def distance(self, sig_a: torch.Tensor, sig_b: torch.Tensor, align: bool) -> float:
        if align or sig_a.shape[-1] != sig_b.shape[-1]:
            sig_a, sig_b = align_classes(sig_a, sig_b)
        return cosine_distance(sig_a, sig_b)

    def score(self, pair: Pair) -> ScoreResult:
        other_task = not pair.same_task
        indirect = self.align == "indirect" or (self.align == "auto" and other_task and pair.suspect_data is not None)
        if indirect:
            pair = indirect_pair(pair, self.name, self.indirect_epochs, self.seed)
        x, seg, masks = self.setup(pair)
        sig_a, sig_b, n_masks = self.signatures(pair, x, seg, masks)
        align = self.align == "always" or (self.align == "auto" and other_task and not indirect)
        dist = self.distance(sig_a, sig_b, align)
        key = self._key(pair.source_card, pair)
        extra = {"distance": dist, "aligned": align, "indirect": indirect, "masks_used": n_masks,
                 "mean_segments": float((seg.flatten(1).amax(1) + 1).float().mean())}
        if not self.relative:
            return self.result(dist, **extra)
        name = f"zest-reference-{key}-{int(align)}" if pair.source_card.sha256 else None
        ref = pair.cache.tensor(name, "signatures",
                               lambda: torch.tensor([self._reference_distance(pair, x, seg, masks, align)]))
        return self.result(dist / max(float(ref[0]), 1e-12), reference_distance=float(ref[0]), **extra)

    def _reference_distance(self, pair, x, seg, masks, align) -> float:
        """Mean distance of the source to its generated independents (every mask: the paper's fixed L)."""
        refs = reference_models(pair.source, pair.source_card, pair.source_data, "independent", self.n_references,
                                cache_dir=pair.cache.generated_dir(pair.source_key))
        sig_a = self.source_signature(pair, x, seg, masks)
        return float(np.mean([self.distance(sig_a, self.signature(m, x, seg, masks), align) for m in refs]))


@contextlib.contextmanager
def channels_last(model: torch.nn.Module, enabled: bool):
    """``model``'s weights in channels-last layout while the block runs (faster reduced-precision
    convolutions on CPUs with AMX; no gain measured in float32), then back."""
    if not enabled:
        yield
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        model.to(memory_format=torch.contiguous_format)
