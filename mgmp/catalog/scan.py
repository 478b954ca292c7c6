"""Which catalog base a model is built on: its fingerprint against each base's, tensor by tensor.

Tensors are aligned by their longest common dotted name suffix with an equal shape (``bert.encoder.layer.0...``
meets ``encoder.layer.0...``), then, among the rest, by order within each shape (wrappers that rename modules).
Per base: ``coverage``, the fraction of its matrices the model has at the same shape, and ``cosine``, the median
cosine of the aligned samples (robust to a replaced head and to the layers a fine-tune moved most).
Verdict: "derived from X" when coverage ≥ ``MIN_COVERAGE`` and cosine ≥ ``DERIVED_COSINE``; "shares X's
architecture only" when only the coverage holds (trained from scratch, or from another base of that
architecture); "none" otherwise.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from mgmp.catalog.files import open_model
from mgmp.catalog.fingerprint import Fingerprint, fingerprint, vocab_jaccard
from mgmp.catalog.store import Catalog, Entry

DERIVED, ARCHITECTURE, NONE = "derived", "architecture only", "none"
DERIVED_COSINE = 0.5  # as the references' public-start rule (mgmp.scores.references.START_COSINE)
MIN_COVERAGE = 0.5


@dataclass
class Candidate:
    """One base's evidence about the scanned model, and the verdict it gives."""

    base: str
    verdict: str
    cosine: float
    coverage: float
    matched: int
    base_tensors: int
    tokenizer: float | None  # estimated Jaccard similarity of the vocabularies
    config: dict  # config keys both have: {key: [model's, base's]}
    what: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def text(self) -> str:
        return {DERIVED: f"derived from {self.base}", ARCHITECTURE: f"shares {self.base}'s architecture only",
                NONE: "none"}[self.verdict]


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def align(base: Fingerprint, model: Fingerprint) -> list[tuple[int, int]]:
    """Pairs (i in base, j in model) of tensors taken to be the same: equal shape, and the longest common
    dotted suffix of their names when it is unique; the rest in natural name order within each shape, where
    both sides have the same number left."""
    by_suffix: dict[str, list[int]] = defaultdict(list)
    for j, name in enumerate(model.names):
        parts = name.split(".")
        for k in range(2, len(parts) + 1):
            by_suffix[".".join(parts[-k:])].append(j)
    pairs, used = [], set()
    for i, name in enumerate(base.names):
        parts = name.split(".")
        for k in range(len(parts), 1, -1):
            hits = [j for j in by_suffix.get(".".join(parts[-k:]), ()) if model.shapes[j] == base.shapes[i]]
            if hits:
                if len(hits) == 1 and hits[0] not in used:
                    pairs.append((i, hits[0]))
                    used.add(hits[0])
                break
    left_base, left_model = defaultdict(list), defaultdict(list)
    paired = {i for i, _ in pairs}
    for i, s in enumerate(base.shapes):
        if i not in paired:
            left_base[s].append(i)
    for j, s in enumerate(model.shapes):
        if j not in used:
            left_model[s].append(j)
    for shape, ii in left_base.items():
        jj = left_model.get(shape, [])
        if len(ii) == len(jj):
            pairs += zip(sorted(ii, key=lambda i: _natural(base.names[i])), sorted(jj, key=lambda j: _natural(model.names[j])))
    return pairs


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    norm = np.sqrt(a @ a * (b @ b))
    return float(a @ b / norm) if norm > 0 else 0.0


def compare(entry: Entry, base: Fingerprint, model: Fingerprint) -> Candidate:
    pairs = align(base, model)
    cosines = [_cosine(base.samples[i], model.samples[j]) for i, j in pairs]
    coverage = len(pairs) / max(len(base.names), 1)
    cosine = float(np.median(cosines)) if cosines else 0.0
    verdict = NONE if coverage < MIN_COVERAGE else DERIVED if cosine >= DERIVED_COSINE else ARCHITECTURE
    tokenizer = vocab_jaccard(model.vocab, base.vocab) if model.vocab is not None and base.vocab is not None else None
    config = {k: [model.config[k], base.config[k]] for k in sorted(set(model.config) & set(base.config))}
    return Candidate(entry.name, verdict, cosine, coverage, len(pairs), len(base.names), tokenizer, config, entry.what)


def rank(candidates: list[Candidate]) -> list[Candidate]:
    """Derived first (highest cosine), then architecture-only (highest coverage), then the rest."""
    order = {DERIVED: 0, ARCHITECTURE: 1, NONE: 2}
    return sorted(candidates, key=lambda c: (order[c.verdict], -c.cosine if c.verdict == DERIVED else -c.coverage,
                                             -c.cosine))


def answer(ranked: list[Candidate]) -> Candidate | None:
    """The base the model is derived from, if any (the top derived candidate)."""
    return ranked[0] if ranked and ranked[0].verdict == DERIVED else None


def check_claims(claims: list[str], ranked: list[Candidate], entries: dict[str, Entry]) -> list[dict]:
    """Each ``base_model`` claim against the answer: confirmed, contradicted, or not in the catalog."""
    top = answer(ranked)
    out = []
    for claim in claims:
        named = next((e.name for e in entries.values() if e.answers_to(claim)), None)
        if named is None:
            status, text = "unverifiable", f"{claim}: unverifiable (not in the catalog; add it with `mgmp catalog add`)"
        elif top is not None and top.base == named:
            status, text = "confirmed", f"{claim}: confirmed (weights derived from {named})"
        else:
            found = f"the weights say derived from {top.base}" if top else "the weights derive from no catalog base"
            status, text = "contradicted", f"{claim}: contradicted ({found})"
        out.append({"claim": claim, "base": named, "status": status, "text": text})
    return out


@dataclass
class ScanResult:
    model: str
    candidates: list[Candidate]  # ranked, every base
    claims: list[dict]
    tensors: int  # matrices of the model that were read
    seconds: float

    @property
    def answer(self) -> Candidate | None:
        return answer(self.candidates)

    @property
    def verdict(self) -> str:
        top = self.candidates[0] if self.candidates else None
        if top is None or top.verdict == NONE:
            return "derived from no catalog base"
        return top.text if top.verdict == DERIVED else f"derived from no catalog base ({top.text})"

    def to_dict(self, top_k: int | None = None) -> dict:
        return {"model": self.model, "answer": self.answer.base if self.answer else None, "verdict": self.verdict,
                "candidates": [c.to_dict() for c in self.candidates[:top_k]], "claims": self.claims,
                "tensors": self.tensors, "seconds": self.seconds}


def scan(ref: str, catalogs: list[Catalog], progress=None) -> ScanResult:
    """Fingerprint the model at ``ref`` (only tensors of shapes some base has) and compare it with every base;
    ``progress(done, total)`` after each tensor read."""
    import time

    t0 = time.perf_counter()
    bases = {(c, name): c.load(name) for c in catalogs for name in c.entries}
    model = open_model(ref)
    fp = fingerprint(model, {s for b in bases.values() for s in b.shapes}, progress)
    ranked = rank([compare(c.entries[name], base, fp) for (c, name), base in bases.items()])
    entries = {n: e for c in catalogs for n, e in c.entries.items()}
    return ScanResult(ref, ranked, check_claims(model.claims, ranked, entries), len(fp.names),
                      time.perf_counter() - t0)
