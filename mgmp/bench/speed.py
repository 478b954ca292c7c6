"""``mgmp bench speed``: seconds per pair of every score, batched versus a per-sample route.

The per-sample route runs the same method with both models wrapped so that every query is
answered one input at a time (what a loop over points costs); Zest is also compared with the
``lime`` package's image explainer (its defaults: batches of 10 masked images, one explanation per
point) on the same segments and masks, checking that the two signatures give the same distance.
"""
from __future__ import annotations

import time
from typing import Any
from unittest import mock

import numpy as np
import torch
from torch import nn

from mgmp.scores import create_score, load_pair
from mgmp.scores.zest import cosine_distance
from model_pool.errors import NotApplicable
from model_pool.pool import Pool

SPEED_METHODS = {  # what is timed per pair (generated test set and references prepared beforehand)
    "closeness": {"k": 100},
    "basin": {},
    "zest": {},  # timed without its signature cache: two signatures per pair
    "modeldiff": {},
    "ipguard": {},
    "sac": {},
}


class PerSample(nn.Module):
    """Answers a batch by querying the wrapped model one input at a time."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:  # BatchNorm re-estimation (basin) needs whole batches in both routes
            return self.model(x)
        return torch.cat([self.model(x[i : i + 1]) for i in range(len(x))])

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)


def _per_pair(method, pair):
    """What one more pair costs: Zest without its signature cache (both signatures computed), others as scored."""
    if method.name != "zest":
        return lambda: method.score(pair)
    x, seg, masks = method.setup(pair)

    def zest():
        d = method.distance(method.signature(pair.source, x, seg, masks), method.signature(pair.suspect, x, seg, masks), False)
        return method.result(d)

    return zest


def _timed(fn, repeat: int) -> tuple[float, Any]:
    out, best = None, float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def lime_signature(model: nn.Module, x: torch.Tensor, seg: torch.Tensor, n_masks: int, seed: int,
                   baseline: float = 0.0, kernel_width: float = 0.25) -> torch.Tensor:
    """Zest's signature computed through ``lime_image`` (grayscale images), padded like ours."""
    from lime.lime_image import LimeImageExplainer

    n_cls = int(model(x[:1]).shape[1])
    s_max = int(seg.flatten(1).amax(1).max()) + 1
    out = torch.zeros(len(x), s_max, n_cls)

    @torch.no_grad()
    def classify(images: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(images[..., 0]).float().unsqueeze(1)
        return model(batch).softmax(1).numpy()

    for i in range(len(x)):
        segments = seg[i].numpy()
        explainer = LimeImageExplainer(kernel_width=kernel_width, random_state=seed + i)
        with mock.patch("lime.lime_image.tqdm", lambda rows, **_: rows):  # lime 0.2.0.1 always draws a bar
            exp = explainer.explain_instance(x[i, 0].double().numpy(), classify, labels=range(n_cls), top_labels=None,
                                             hide_color=baseline, num_features=int(segments.max()) + 1,
                                             num_samples=n_masks, segmentation_fn=lambda _img, s=segments: s,
                                             random_seed=0)
        for c in range(n_cls):
            for feature, weight in exp.local_exp[c]:
                out[i, feature, c] = float(weight)
    return out


def zest_vs_lime(pair, n_points: int, n_masks: int, seed: int = 0) -> dict[str, float]:
    """Our batched Zest (LIME kernel ridge) against the lime route on the same points, segments and masks."""
    method = create_score("zest", n_points=n_points, n_masks=n_masks, fit="lime", relative=False, seed=seed)
    x, seg, masks = method.setup(pair)
    t_ours, (sa, sb) = _timed(lambda: (method.signature(pair.source, x, seg, masks),
                                       method.signature(pair.suspect, x, seg, masks)), 1)
    t_lime, (la, lb) = _timed(lambda: (lime_signature(pair.source, x, seg, n_masks, seed),
                                       lime_signature(pair.suspect, x, seg, n_masks, seed)), 1)
    d_ours, d_lime = cosine_distance(sa, sb), cosine_distance(la, lb)
    return {"points": n_points, "masks": n_masks, "seconds_batched": t_ours, "seconds_lime": t_lime,
            "speedup": t_lime / t_ours, "distance_batched": d_ours, "distance_lime": d_lime,
            "relative_difference": abs(d_ours - d_lime) / max(abs(d_lime), 1e-12),
            "max_signature_difference": float((sa - la).abs().max())}


def run(pool: Pool, source: str = "src-a", suspects: tuple[str, ...] = ("src-a-ft-heavy", "ind-small_cnn-s40"),
        repeat: int = 3, lime_points: int = 16, lime_masks: int = 1000, per_sample: bool = True) -> dict[str, Any]:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    rows: dict[str, dict] = {}
    for name, params in SPEED_METHODS.items():
        method = create_score(name, **params)
        per_pair, slow, same = [], [], True
        prep = 0.0
        for b in suspects:
            pair = load_pair(pool.ref(source), pool.ref(b), pool=pool)
            try:
                t_prep, _ = _timed(lambda: method.score(pair), 1)  # first call: generated sets and references
            except NotApplicable:
                continue
            prep = max(prep, t_prep)
            t, res = _timed(_per_pair(method, pair), repeat)
            per_pair.append(t)
            if per_sample:
                pair.source, pair.suspect = PerSample(pair.source), PerSample(pair.suspect)
                t_slow, res_slow = _timed(_per_pair(method, pair), 1)
                slow.append(t_slow)
                same &= abs(res_slow.value - res.value) <= 1e-4 * max(1.0, abs(res.value))
        rows[name] = {"seconds_per_pair": float(np.mean(per_pair)), "first_call_seconds": prep,
                      "params": method.params()}
        if slow:
            rows[name] |= {"per_sample_seconds": float(np.mean(slow)), "speedup": float(np.mean(slow) / np.mean(per_pair)),
                           "same_result": bool(same)}
    pair = load_pair(pool.ref(source), pool.ref(suspects[0]), pool=pool)
    lime = zest_vs_lime(pair, lime_points, lime_masks)
    return {"pool": str(pool.root), "source": source, "suspects": list(suspects), "threads": torch.get_num_threads(),
            "rows": rows, "zest_vs_lime": lime}


def markdown(result: dict) -> str:
    lines = ["| score | s / pair | first call (s) | per-sample route (s) | speed-up | same result |",
             "|---|---|---|---|---|---|"]
    for name, r in result["rows"].items():
        lines.append(f"| {name} | {r['seconds_per_pair']:.3f} | {r['first_call_seconds']:.2f} | "
                     f"{r.get('per_sample_seconds', float('nan')):.2f} | {r.get('speedup', float('nan')):.1f}x | "
                     f"{r.get('same_result', '-')} |")
    z = result["zest_vs_lime"]
    lines.append("")
    lines.append(f"Zest vs the `lime` route ({z['points']} points x {z['masks']} masks, two models): "
                 f"{z['seconds_batched']:.2f} s batched vs {z['seconds_lime']:.2f} s lime = {z['speedup']:.1f}x; "
                 f"distance {z['distance_batched']:.5f} vs {z['distance_lime']:.5f} "
                 f"(relative difference {z['relative_difference']:.2e})")
    return "\n".join(lines)
