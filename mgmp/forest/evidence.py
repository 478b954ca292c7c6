"""What the forest knows about a set of models: candidate pairs and, for each ordered candidate pair (u, v),
the evidence that u is v's parent.

Candidates: each model's ``top_k`` nearest by each DNA kind (FAISS inner product on the registry's DNA vectors:
``weights`` finds weight-sharing relatives, ``gram`` the others); never all pairs. Evidence for u → v:
- the fused model's pair scores read both ways (u as source and v as suspect, and back) and its two P(lineage):
  the scores read the source white-box and the suspect black-box, so they are asymmetric;
- weight signatures (:mod:`mgmp.forest.signatures`), within one architecture: kurtosis(v) − kurtosis(u)
  (MoTHer: fine-tuning raises it), zeros(v) − zeros(u) (pruning adds them), log grid(u) − log grid(v)
  (quantisation shrinks the value grid), and u's own zeros and grid (a compressed model is rarely a parent);
- nearness among v's candidates: weights(u, v) and dna(u, v) minus the best other candidate's, the same as log
  distances −log(1 − s) (near-copies differ by a ratio of distances), u's rank among v's candidates and v's among
  u's (a parent is usually v's nearest relative, its near-copies aside).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rich.progress import track

from mgmp.calibration.fusion import FusedScore, score_values
from mgmp.forest.signatures import WeightSignature, weight_signature
from mgmp.index.store import compute_dna, create_index, search
from mgmp.index.vectors import INDEX_DNA
from mgmp.scores import load_pair
from model_pool.errors import BadInput
from model_pool.pool import Pool, load_ref

NEARNESS = ("weights", "dna")
NEAR_COPIES = 0.995  # DNA similarity of a near-copy (int8/fp16 twins, light fine-tunes): its neighbours are candidates too  # fused columns whose gap to the best other candidate is a feature


def candidate_pairs(pool: Pool, ids: list[str], top_k: int, dnas: tuple[str, ...] = INDEX_DNA,
                    near_copies: float | None = NEAR_COPIES) -> list[tuple[str, str]]:
    """Unordered pairs (a < b) in which one is among the other's ``top_k`` nearest by some DNA kind, or a
    near-copy (similarity ≥ ``near_copies``, at most ``top_k`` of them) of one of those: a child whose nearest
    are its parent's int8/fp16 twins still meets its parent."""
    wanted = set(ids)
    others = set(pool.registry.ids()) - wanted
    pairs: set[tuple[str, str]] = set()
    for dna in dnas:
        compute_dna(pool, dna, exclude=others)
        vecs = {m: np.frombuffer(blob, dtype=np.float32) for _, m, _, blob in pool.registry.dna(dna) if m in wanted}
        by_dim: dict[int, list[str]] = {}
        for m in ids:
            if m in vecs:
                by_dim.setdefault(len(vecs[m]), []).append(m)
        for order in by_dim.values():  # models of one input space share a probe set, hence a dimension
            x = np.stack([vecs[m] for m in order])
            sims, nearest = search(create_index("flat", x, None, x.shape[1]), x, min(2 * top_k + 1, len(order)))
            rows = [[j for j in row if 0 <= j != i] for i, row in enumerate(nearest)]
            copies = [[j for j, s in zip(row, srow) if 0 <= j != i and near_copies is not None and s >= near_copies]
                      [:top_k] for i, (row, srow) in enumerate(zip(nearest, sims))]
            for i, row in enumerate(rows):
                chosen = row[:top_k]
                pairs.update(tuple(sorted((order[i], order[t]))) for j in chosen for t in [j, *copies[j]] if t != i)
    return sorted(pairs)


@dataclass
class Evidence:
    """Signatures, architectures, candidate pairs and the fused scores of every ordered candidate pair."""

    ids: list[str]
    signatures: dict[str, WeightSignature]
    arch: dict[str, str]
    pairs: list[tuple[str, str]]
    scores: dict[tuple[str, str], dict[str, float]]  # (u, v) -> {column: value with u as source}
    p_fused: dict[tuple[str, str], float]
    columns: list[str]

    def feature_names(self) -> list[str]:
        near = [c for c in NEARNESS if c in self.columns]
        return ([f"{c} (u→v)" for c in self.columns] + [f"{c} (v→u)" for c in self.columns]
                + ["P fused (u→v)", "P fused (v→u)", "kurtosis rise", "zeros rise", "grid shrink", "u zeros",
                   "u log grid"] + [f"{c} gap to v's next candidate" for c in near]
                + [f"{c} {what}" for c in near for what in ("log distance", "log distance gap to v's next candidate",
                                                           "rank among v's candidates", "rank of v among u's")])

    def neighbours(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {m: [] for m in self.ids}
        for a, b in self.pairs:
            out[a].append(b)
            out[b].append(a)
        return out

    def relatedness(self) -> dict[str, float]:
        """Each model's highest fused P(lineage) with any of its candidates (0 without one)."""
        out = dict.fromkeys(self.ids, 0.0)
        for (_, v), p in self.p_fused.items():
            if np.isfinite(p):
                out[v] = max(out[v], p)
        return out

    def _nearness(self, u: str, v: str, near: dict[str, list[str]]) -> list[float]:
        """How near u is to v against v's other candidates (and v to u against u's): similarity gap, log distance
        −log(1 − s) and its gap (a ratio of distances: near-copies differ there, not in s), both ranks."""
        raw, more = [], []
        for c in (c for c in NEARNESS if c in self.columns):
            s = self.scores[(u, v)][c]
            others = [x for w in near[v] if w != u and np.isfinite(x := self.scores[(w, v)][c])]
            from_u = [x for w in near[u] if w != v and np.isfinite(x := self.scores[(u, w)][c])]
            if not np.isfinite(s):
                raw.append(math.nan)
                more += [math.nan] * 4
                continue
            raw.append(s - max(others) if others else math.nan)
            more += [_log_distance(s), _log_distance(s) - _log_distance(max(others)) if others else math.nan,
                     sum(o > s for o in others), sum(o > s for o in from_u)]
        return raw + more

    def features(self) -> dict[tuple[str, str], np.ndarray]:
        """The evidence vector of every ordered candidate pair (NaN where a score does not apply)."""
        near = self.neighbours()
        out = {}
        for a, b in self.pairs:
            for u, v in ((a, b), (b, a)):
                su, sv, same = self.signatures[u], self.signatures[v], self.arch[u] == self.arch[v]
                sig = [sv.kurtosis - su.kurtosis, sv.zeros - su.zeros, math.log(su.grid) - math.log(sv.grid)] \
                    if same else [math.nan] * 3
                out[(u, v)] = np.array([self.scores[(u, v)][c] for c in self.columns]
                                       + [self.scores[(v, u)][c] for c in self.columns]
                                       + [self.p_fused[(u, v)], self.p_fused[(v, u)], *sig, su.zeros,
                                          math.log(su.grid)] + self._nearness(u, v, near), dtype=float)
        return out


def _log_distance(similarity: float) -> float:
    return -math.log(max(1.0 - similarity, 1e-9))


def collect(pool: Pool, ids: list[str], fused: dict, top_k: int = 5, dnas: tuple[str, ...] = INDEX_DNA,
            refs: dict[str, str] | None = None, pairs: list[tuple[str, str]] | None = None) -> Evidence:
    """The evidence about ``ids`` from a calibrated fused model (``describe()`` plus its ``methods``, e.g.
    ``Calibration.fused_fast``). ``refs``: a model reference per id (default: the pool's, ``POOL::ID``; an ancestor
    query's suspect is a directory); ``pairs``: the pairs to score (default: the DNA candidates of ``ids``). A
    direction that cannot be scored (a suspect whose card names no data, as the source) gives NaN evidence."""
    refs = {m: (refs or {}).get(m, pool.ref(m)) for m in ids}
    sigs, arch = {}, {}
    for m in track(ids, description="weight signatures", transient=True):
        model, card = load_ref(refs[m], pool)
        sigs[m], arch[m] = weight_signature(model, card.num_classes), card.arch
    pairs = candidate_pairs(pool, ids, top_k, dnas) if pairs is None else pairs
    model = FusedScore.from_dict(fused)
    scores, p = {}, {}
    for a, b in track(pairs, description=f"scoring {len(pairs)} candidate pairs both ways", transient=True):
        for u, v in ((a, b), (b, a)):
            try:
                scores[(u, v)] = score_values(load_pair(refs[u], refs[v], pool=pool), fused["methods"])
            except BadInput:
                scores[(u, v)] = dict.fromkeys(fused["columns"], math.nan)
            p[(u, v)] = float(model.predict_proba(np.array([[scores[(u, v)][c] for c in fused["columns"]]]))[0])
    return Evidence(list(ids), sigs, arch, list(pairs), scores, p, list(fused["columns"]))
