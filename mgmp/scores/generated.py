"""A per-source learned detector (``generated``): MGMP's idea, a provenance classifier learned from generated
lineage, applied to the one source a user cares about.

The shared reference stage (:mod:`mgmp.scores.references`) generates the source's own descendants: its lineage
(fine-tune, prune) and its surrogates (distillation into its architecture at two temperatures, extraction into
each other architecture from probabilities and from labels only), and independents trained from scratch in the
same architectures. Each model is described by how often it gives the source's label on five probe sets that
separate copies of a function from re-learnt ones: the source's test points, its adversarial examples (PGD
within ``eps`` of the input range: a student learnt the source's mistakes, an independent its own), CutMix
mixtures and uniform noise (off the data, where only imitation agrees), and the test points nearest the source's
boundary; and, when the suspect returns class scores, by the rank correlation of its log-probabilities with the
source's on the test points and on the noise (a student trained on the source's probabilities learns their
"dark knowledge", the order of the wrong classes). A logistic regression (scikit-learn, standardised inputs; each generated model gives ``chunks`` rows,
one per disjoint slice of the probes) learns P(lineage) from them; the suspect's value is that P on the whole
probe sets. Labels only: a labels-only endpoint gets the detector fit on the label features. The detector, probes and the source's labels are cached
per source; the surrogates and independents are CAE's at the defaults (one reference stage per source for both).
Deviation from MGMP: features of agreement instead of a trained DNA generator, so that one source's detector
costs seconds, not a training run.
"""
from __future__ import annotations

import torch

from mgmp.representations.outputs import labels, query
from mgmp.scores import SCORES
from mgmp.scores.base import Pair, PairScore, ScoreResult
from mgmp.scores.baselines import _input_range, _points, _require_image, cutmix
from mgmp.scores.references import build_references, reference_specs
from model_pool.attacks import pgd
from model_pool.errors import NotApplicable
from model_pool.params import SEED, Range

PROBES = ("test", "adversarial", "cutmix", "noise", "boundary")
RANKED = ("test", "noise")  # probe sets whose log-probability ranks are compared, when the suspect gives scores


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row, Spearman's correlation of the class scores ``a`` and ``b`` (ties broken by position)."""
    ra, rb = (t.argsort(1).argsort(1).double() for t in (a, b))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-12)


@SCORES.register("generated")
class Generated(PairScore):
    """P(lineage) of a detector trained on the source's generated descendants and independents."""

    name = "generated"
    needs = "labels"
    param_specs = {"n_points": Range(10, 100_000), "eps": Range(0, 1, open_lo=True), "steps": Range(1, 1000),
                   "n_lineage": Range(0, 2), "n_surrogates": Range(1, 10), "n_independent": Range(2, 20),
                   "chunks": Range(1, 20), "seed": SEED}

    def __init__(self, n_points: int = 200, eps: float = 0.1, steps: int = 10, n_lineage: int = 2,
                 n_surrogates: int = 4, n_independent: int = 4, chunks: int = 4, seed: int = 2000):
        self.n_points, self.eps, self.steps = n_points, eps, steps
        self.n_lineage, self.n_surrogates, self.n_independent = n_lineage, n_surrogates, n_independent
        self.chunks, self.seed = chunks, seed

    def references(self, card) -> list:
        """The generated models' specs: lineage and surrogates (label 1), then independents (label 0). Surrogates
        and independents are seeded as CAE's (``seed``, ``seed + 100``): at both defaults the two scores share them."""
        return (reference_specs(card, "lineage", self.n_lineage, self.seed + 200)
                + reference_specs(card, "surrogate", self.n_surrogates, self.seed)
                + reference_specs(card, "independent-surrogate", self.n_independent, self.seed + 100))

    def probes(self, pair: Pair) -> torch.Tensor:
        """The five probe sets, ``n_points`` each, stacked in ``PROBES`` order."""
        x = _points(pair, self.n_points, self.seed)
        lo, hi = pair.source_card.input.get("range", [0.0, 1.0])
        step = self.eps * _input_range(pair)
        adv = pgd(pair.source, x, labels(pair.source, x), step, 2.5 * step / self.steps, self.steps, (lo, hi),
                  torch.Generator().manual_seed(self.seed))
        g = torch.Generator().manual_seed(self.seed + 1)
        noise = lo + (hi - lo) * torch.rand(x.shape, generator=g)
        pool = pair.source_data.x_test
        top2 = query(pair.source, pool, probs=True).topk(2, dim=1).values
        boundary = pool[(top2[:, 0] - top2[:, 1]).argsort()[: self.n_points]]
        if len(boundary) < len(x):
            boundary = boundary[torch.arange(len(x)) % len(boundary)]
        return torch.cat([x, adv, cutmix(pair.source_data.x_test, len(x), self.seed), noise, boundary])

    def features(self, source_out: torch.Tensor, model, x: torch.Tensor, chunks: int, ranked: bool) -> torch.Tensor:
        """(chunks, features): label agreement per probe set (then, when ``ranked``, rank correlation on the
        ``RANKED`` sets), each probe set cut into ``chunks`` disjoint slices."""
        out = query(model, x) if ranked else None
        y = out.argmax(1) if ranked else labels(model, x)
        same = (source_out.argmax(1) == y).double().view(len(PROBES), -1)
        columns = [same]
        if ranked:
            rho = rank_correlation(source_out, out).view(len(PROBES), -1)
            columns.append(rho[[PROBES.index(k) for k in RANKED]])
        table = torch.cat(columns)
        return torch.stack([c.mean(1) for c in table.chunk(chunks, dim=1)])

    def detector(self, pair: Pair, x: torch.Tensor, source_out: torch.Tensor, ranked: bool) -> torch.Tensor:
        """Train on the generated models; returned as one tensor: scaler mean, scale, coefficients, intercept."""
        from sklearn.linear_model import LogisticRegression  # scikit-learn costs a second to import: only when used
        from sklearn.preprocessing import StandardScaler

        specs = self.references(pair.source_card)
        models = build_references(pair.source, pair.source_card, pair.source_data, specs,
                                  pair.cache.generated_dir(pair.source_key))
        rows = [self.features(source_out, m, x, self.chunks, ranked) for m in models]
        y = torch.cat([torch.full((self.chunks,), float(s.kind != "independent-surrogate")) for s in specs])
        features = torch.cat(rows).numpy()
        scaler = StandardScaler().fit(features)
        fit = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(features), y.numpy())
        return torch.cat([torch.as_tensor(a, dtype=torch.float64).flatten()
                          for a in (scaler.mean_, scaler.scale_, fit.coef_, fit.intercept_)])

    def score(self, pair: Pair) -> ScoreResult:
        _require_image(pair, self.name)
        if not pair.same_task:
            raise NotApplicable("generated compares labels in the source's label space: the suspect's output space "
                                "differs")
        ranked = not getattr(pair.suspect, "labels_only", False)
        params = self.params()
        x = pair.source_cached("generated-probes", params, lambda: self.probes(pair))
        source_out = pair.source_cached("generated-source-outputs", params, lambda: query(pair.source, x))
        w = pair.source_cached(f"generated-detector-{'ranked' if ranked else 'labels'}", params,
                               lambda: self.detector(pair, x, source_out, ranked)).double()
        features = self.features(source_out, pair.suspect, x, 1, ranked)[0]
        n = len(features)
        mean, scale, coef, intercept = w[:n], w[n:2 * n], w[2 * n:3 * n], w[3 * n]
        p = torch.sigmoid(((features - mean) / scale) @ coef + intercept)
        names = [f"agreement_{k}" for k in PROBES] + ([f"rank_correlation_{k}" for k in RANKED] if ranked else [])
        return self.result(float(p), **dict(zip(names, features.tolist())),
                           references=[s.to_dict() for s in self.references(pair.source_card)])
