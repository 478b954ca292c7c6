"""Dataset Inference (Maini, Yaghini, Papernot, ICLR 2021), black-box "Blind Walk" variant.

A model lies farther from its decision boundaries on the points it was trained on than on unseen points of
the same distribution, and a model stolen from the source (copied, fine-tuned, distilled or extracted on the
source's data) inherits that margin on the source's private training set. Embedding of a point x by a model:
its distances along ``k`` random directions to its first label change (``boundary_distance``, labels only,
capped at ``max_distance``; 0 where the model already misclassifies x), sorted within each noise family.
A confidence regressor g, fit on the source only (its embeddings of ``n_fit`` training points, label 1,
against ``n_fit`` unseen test points, label 0), scores membership; on the suspect, a one-sided Welch t-test
of H0: mean g(train) <= mean g(unseen), on ``n_points`` training and ``n_points`` unseen points disjoint
from g's. Value: -log10 p (higher = related, clipped at 300); decision "stolen" when p < ``alpha``.
Under H0 (a suspect that never saw the source's training set) both sides are i.i.d. for the suspect
whatever g is, so the test stays valid for a suspect of another output space (``handles_transfer``; its
walks then start from its own label). It detects use of the source's training DATA: an independent model
trained on the same data is flagged too, by design, and a source that does not overfit gives no signal.

Paper (and its code, cleverhans-lab/dataset-inference) / ours:
- directions: 10 per noise family, uniform (distance in l_inf), Gaussian (l2), Laplace (l1), 30 in all,
  drawn afresh per point; ours: ``k`` = 30 seeded directions shared by all points, ``noise="mixed"``
  cycling the three families (or one family), each scaled to a per-coordinate RMS of one input range, so a
  distance is the perturbation's RMS in input ranges (one cap for all families); sorting each point's
  distances within a family (order statistics, as the paper sorts its MinGD distances) makes only their
  distribution count, as with the paper's per-point directions, and steadies g on small fit sets.
- walk: 50 steps of growing size from the true label (misclassified: distance ~0), clipped to [0, 1], up
  to a perturbation RMS of about 0.15 (uniform) to 0.7 (Laplace); ours: ``start="label"`` likewise (the
  true label; ``"prediction"``: the model's own), a 16-step scan and 8 bisection rounds up to
  ``max_distance`` = 0.5 (an unflipped direction counts as the cap), clipped to the card's input range.
- g: a 30-100-1 tanh MLP on standardised distances, 500 points per side; ours: logistic regression with a
  strong ridge (scikit-learn, C = 0.01: g stays near the class-mean difference, which held up best on fit
  sets of tens of points) on standardised distances, its logit the confidence; ``n_fit`` = 200 per side
  (digits has 360 test points; a smaller split shrinks the fit set, never the test set, with a note).
- test: m <= 45 revealed points per side (harmonic mean of p over 100 draws); ours: one draw of
  ``n_points`` = 100 per side; ``alpha`` = 0.01 as the paper.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from mgmp.representations.outputs import labels
from mgmp.scores import SCORES
from mgmp.scores.base import Pair, PairScore, ScoreResult
from mgmp.scores.baselines import _input_range, _require_image
from mgmp.scores.boundary import boundary_distance
from model_pool.errors import BadInput
from model_pool.params import SEED, Choice, Range

NOISES = ("uniform", "gaussian", "laplace")
STEPS, ITERS = 16, 8  # boundary_distance's scan and bisection: tolerance max_distance / 16 / 2**8
MAX_VALUE = 300.0  # -log10 p is clipped here (p underflows to 0 for overwhelming evidence)
RIDGE_C = 0.01  # g's inverse L2 strength: strong, for fit sets of a few hundred points (see the docstring)
CHUNK = 2**24  # input elements per boundary search (rows x scan steps x input size): bounds memory


def directions(k: int, shape: tuple[int, ...], noise: str, seed: int) -> torch.Tensor:
    """(k, *shape) seeded noise directions, each with per-coordinate RMS 1; ``"mixed"`` cycles the families."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(k):
        family = NOISES[i % 3] if noise == "mixed" else noise
        if family == "uniform":
            d = torch.rand(shape, generator=g) * 2 - 1
        elif family == "gaussian":
            d = torch.randn(shape, generator=g)
        else:  # Laplace by inverse CDF
            u = torch.rand(shape, generator=g).clamp(1e-7, 1 - 1e-7) - 0.5
            d = -u.sign() * torch.log1p(-2 * u.abs())
        out.append(d / d.pow(2).mean().sqrt().clamp_min(1e-12))
    return torch.stack(out)


def blind_walk(model: nn.Module, x: torch.Tensor, dirs: torch.Tensor, max_distance: float,
               bounds: tuple[float, float] | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
    """(N, k) distances along each direction to ``model``'s first label change from its label at x, capped
    at ``max_distance``, inputs clipped to ``bounds``; with true labels ``y``, 0 where the model's label is
    not y. Only labels are queried; all (point, direction) rows are searched at once (in chunks that bound
    memory, not per point)."""
    n, k = len(x), len(dirs)
    ones = (1,) * (dirs.ndim - 1)

    def label_fn(z: torch.Tensor) -> torch.Tensor:
        return labels(model, z if bounds is None else z.clamp(*bounds))

    per = max(1, CHUNK // (STEPS * k * max(1, x[0].numel())))  # points per search: rows are (point, direction)
    d = torch.cat([boundary_distance(label_fn, xc.repeat_interleave(k, 0), dirs.repeat(len(xc), *ones),
                                     max_distance, STEPS, ITERS)[0] for xc in x.split(per)])
    d = d.clamp(max=max_distance).view(n, k)
    if y is not None:
        d[labels(model, x if bounds is None else x.clamp(*bounds)) != y] = 0.0
    return d


def order_statistics(d: torch.Tensor, noise: str) -> torch.Tensor:
    """Each row's distances sorted within each noise family (``"mixed"``: columns i, i + 3, ... share one)."""
    if noise != "mixed":
        return d.sort(1).values
    return torch.cat([d[:, f::3].sort(1).values for f in range(min(3, d.shape[1]))], 1)


def fit_regressor(emb_train: torch.Tensor, emb_test: torch.Tensor) -> torch.Tensor:
    """g as one flat tensor [mean (k), std (k), coef (k), intercept, fit accuracy]: logistic regression of
    seen (1) against unseen (0) on standardised embeddings; see :func:`confidence`."""
    from sklearn.linear_model import LogisticRegression  # scikit-learn costs a second to import: only when used

    z = torch.cat([emb_train, emb_test]).double()
    y = torch.cat([torch.ones(len(emb_train)), torch.zeros(len(emb_test))]).numpy()
    mean, std = z.mean(0), z.std(0).nan_to_num(0.0).clamp_min(1e-12)
    zs = ((z - mean) / std).numpy()
    lr = LogisticRegression(C=RIDGE_C, max_iter=1000).fit(zs, y)
    acc = float(lr.score(zs, y))
    tail = torch.tensor([float(lr.intercept_[0]), acc], dtype=torch.float64)
    return torch.cat([mean, std, torch.from_numpy(lr.coef_[0]).double(), tail])


def confidence(g: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """g's logit (membership confidence) of each row of ``emb``."""
    k = emb.shape[1]
    mean, std, coef, intercept = g[:k], g[k:2 * k], g[2 * k:3 * k], g[3 * k]
    return ((emb.double() - mean) / std) @ coef + intercept


def welch_greater(a: torch.Tensor, b: torch.Tensor) -> float:
    """One-sided Welch t-test p-value of H0: mean(a) <= mean(b); 1.0 where undefined (both sides constant,
    e.g. every walk capped: no evidence)."""
    spread = max(float(a.max() - a.min()), float(b.max() - b.min()))
    if spread <= 1e-9 * (1.0 + float(torch.cat([a, b]).abs().max())):
        return 1.0
    from scipy.stats import ttest_ind

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's precision note on nearly constant samples
        p = float(ttest_ind(a.numpy(), b.numpy(), equal_var=False, alternative="greater").pvalue)
    return p if math.isfinite(p) else 1.0


@SCORES.register("dataset_inference")
class DatasetInference(PairScore):
    """-log10 p of the suspect being more confident on the source's training points than on unseen ones
    (higher = related); see the module docstring."""

    name = "dataset_inference"
    needs = "labels"
    higher_is_related = True
    handles_transfer = True
    param_specs = {"n_points": Range(2, 100_000), "n_fit": Range(2, 100_000), "k": Range(1, 1000),
                   "max_distance": Range(0, 1000, open_lo=True), "alpha": Range(0, 0.5, open_lo=True),
                   "noise": Choice("mixed", *NOISES), "start": Choice("label", "prediction"), "seed": SEED}

    def __init__(self, n_points: int = 100, n_fit: int = 200, k: int = 30, max_distance: float = 0.5,
                 alpha: float = 0.01, noise: str = "mixed", start: str = "label", seed: int = 0):
        self.n_points, self.n_fit, self.k, self.max_distance = n_points, n_fit, k, max_distance
        self.alpha, self.noise, self.start, self.seed = alpha, noise, start, seed

    def split(self, pair: Pair) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """Seeded disjoint (inputs, labels) sets: test seen, test unseen, fit seen, fit unseen. The test sets
        are the heads of seeded permutations of the training and test splits, the fit sets their tails (shrunk
        to what remains)."""
        data = pair.source_data
        n_tr, n_te = len(data.x_train), len(data.x_test)
        n_fit = min(self.n_fit, n_tr - self.n_points, n_te - self.n_points)
        if n_fit < 2:
            raise BadInput(f"dataset_inference: the source's data has {n_tr} training and {n_te} test points; "
                           f"n_points={self.n_points} per side leaves fewer than 2 per side to fit g (lower n_points)")
        g = torch.Generator().manual_seed(self.seed)
        p_tr, p_te = torch.randperm(n_tr, generator=g), torch.randperm(n_te, generator=g)
        sets = ((data.x_train, data.y_train, p_tr[:self.n_points]), (data.x_test, data.y_test, p_te[:self.n_points]),
                (data.x_train, data.y_train, p_tr[n_tr - n_fit:]), (data.x_test, data.y_test, p_te[n_te - n_fit:]))
        return tuple((x[i], y[i]) for x, y, i in sets)

    def score(self, pair: Pair) -> ScoreResult:
        _require_image(pair, self.name)
        test_tr, test_te, fit_tr, fit_te = self.split(pair)
        n_fit = len(fit_tr[0])
        key = {"n_fit": n_fit, "k": self.k, "max_distance": self.max_distance, "noise": self.noise,
               "start": self.start, "seed": self.seed}
        shape = tuple(fit_tr[0].shape[1:])
        dirs = pair.source_cached("dataset-inference-directions", {"k": self.k, "noise": self.noise, "seed": self.seed},
                                  lambda: directions(self.k, shape, self.noise, self.seed) * _input_range(pair))
        bounds = pair.source_card.input.get("range")
        bounds = (float(bounds[0]), float(bounds[1])) if bounds else None
        true_start = self.start == "label" and pair.same_task  # true labels mean nothing in another output space

        def walk(model: nn.Module, xy: tuple[torch.Tensor, torch.Tensor], use_y: bool) -> torch.Tensor:
            d = blind_walk(model, xy[0], dirs, self.max_distance, bounds, xy[1] if use_y else None)
            return order_statistics(d, self.noise)

        from_label = self.start == "label"
        g = pair.source_cached("dataset-inference-regressor", key, lambda: fit_regressor(
            walk(pair.source, fit_tr, from_label), walk(pair.source, fit_te, from_label)))
        c_tr, c_te = (confidence(g, walk(pair.suspect, xy, true_start)) for xy in (test_tr, test_te))
        p = welch_greater(c_tr, c_te)
        value = min(MAX_VALUE, -math.log10(max(p, 10.0 ** -MAX_VALUE)))
        extra = {"p_value": p, "decision": "stolen" if p < self.alpha else "not shown", "alpha": self.alpha,
                 "confidence_gap": float(c_tr.mean() - c_te.mean()), "n_points": self.n_points, "n_fit": n_fit,
                 "fit_accuracy": float(g[-1]), "start": "label" if true_start else "prediction"}
        if n_fit < self.n_fit:
            data = pair.source_data
            extra["note"] = (f"fit set shrunk to {n_fit} per side: the source's data has {len(data.x_train)} training "
                             f"and {len(data.x_test)} test points")
        return self.result(value, **extra)
