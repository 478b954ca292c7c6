"""``mgmp bench transfer``: leave one domain out (SPEC §13). For each in-house domain, the fused test is fit on the
other domains' pairs and decides this one's at level α; reported per relation, with the false-positive rate on the
independents, against the same domain's own calibration (its calibration split), and the cost per source and per
suspect. Each domain is also decided by the test the package ships (``shipped``): what a user of that domain gets
with no calibration of their own; one pool alone gets only that."""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from mgmp.calibration.domains import DomainRows, fit_test
from mgmp.calibration.fit import STUDENT_RELATIONS
from mgmp.calibration.verdict import DEFAULT_ALPHA, FusedTest

CALIBRATION_SPLIT = "calibration"


def relation_group(row: str, related: bool) -> str:
    """weight-inheriting, student (distill/extract, also after a transfer) or independent."""
    if not related:
        return "independent"
    return "student" if any(r in row for r in STUDENT_RELATIONS) else "weight-inheriting"


def decisions(test: FusedTest, rows: DomainRows, alpha: float) -> np.ndarray:
    """"Derived" at ``alpha`` for each pair of ``rows``, its feature columns taken in the test's order."""
    columns = [*rows.null_columns, *rows.raw_columns]
    x = rows.x[:, [columns.index(c) for c in test.columns]]
    return np.asarray(test.p_value(test.probability(x), alpha)[0]) <= alpha


def accuracy_table(rows: DomainRows, derived: np.ndarray) -> dict[str, dict]:
    """{relation row or group: {n, acc}} plus "overall"; groups in capitals-free names ("weight-inheriting"...)."""
    buckets: dict[str, list[bool]] = defaultdict(list)
    for row, related, d in zip(rows.rows, rows.related, derived):
        ok = bool(d) == bool(related)
        buckets[row].append(ok)
        buckets[f"all {relation_group(row, related)}"].append(ok)
        buckets["overall"].append(ok)
    return {k: {"n": len(v), "acc": float(np.mean(v))} for k, v in sorted(buckets.items())}


def decided(rows: DomainRows, derived: np.ndarray) -> dict:
    """Accuracy per relation and the false positives of one test's decisions on ``rows``."""
    negatives = ~rows.related
    return {"table": accuracy_table(rows, derived), "independents": int(negatives.sum()),
            "fpr": float(derived[negatives].mean()) if negatives.any() else math.nan,
            "false_positives": int(derived[negatives].sum())}


def held_out(domains: list[DomainRows], i: int, alpha: float, shipped: FusedTest | None = None,
             combiners: tuple[str, ...] = ("logistic",)) -> dict:
    """Domain ``i`` decided by the test fit on the others (when there are others; one per combiner, the first the
    main one), by ``shipped`` (when its columns are the domain's), and (on its evaluation split) by its own
    calibration."""
    held = domains[i]
    out = {"domain": held.domain, "pairs": int(len(held.related)),
           "per_source_seconds": float(np.mean(list(held.source_seconds.values()))),
           "sources": len(set(held.sources)), "unlike_sources": dict(held.unlike),
           "per_pair_seconds": float(np.mean(held.pair_seconds)) if held.pair_seconds else math.nan}
    if shipped is not None and (shipped.null_columns, shipped.raw_columns) == (held.null_columns, held.raw_columns):
        out["shipped"] = decided(held, decisions(shipped, held, alpha))
    if len(domains) < 2:
        return out
    others = [d for j, d in enumerate(domains) if j != i]
    transferred = fit_test(others, combiner=combiners[0])
    out |= decided(held, decisions(transferred, held, alpha)) | {"combiner": combiners[0]}
    out["combiners"] = {c: decided(held, decisions(fit_test(others, combiner=c), held, alpha)) for c in combiners[1:]}
    cal = np.array([s == CALIBRATION_SPLIT for s in held.splits])
    own_rows, ev = held.select(cal), held.select(~cal)
    if own_rows.related.any() and (~own_rows.related).any() and len(ev.related):
        own = fit_test([own_rows])
        out["evaluation_split"] = {"n": int(len(ev.related)),
                                   "transferred": float((decisions(transferred, ev, alpha) == ev.related).mean()),
                                   "own": float((decisions(own, ev, alpha) == ev.related).mean()),
                                   "own_tail": own.p_value(0.5, alpha)[1]}
    return out


def run(domains: list[DomainRows], alpha: float = DEFAULT_ALPHA, shipped: FusedTest | None = None,
        combiners: tuple[str, ...] = ("logistic",)) -> dict:
    """Every domain held out in turn (with two or more) under each combiner; the pooled false-positive rate and
    accuracy over all held-out pairs; each domain under ``shipped`` too."""
    if len(domains) < 2 and shipped is None:
        raise ValueError("leave-one-domain-out needs at least two domains (or a shipped test)")
    results = [held_out(domains, i, alpha, shipped, combiners) for i in range(len(domains))]
    held = [r for r in results if "table" in r]
    pooled = {c: [r if k == 0 else r["combiners"][c] for r in held] for k, c in enumerate(combiners)}
    n = sum(r["independents"] for r in held)
    out = {"alpha": alpha, "domains": results, "pooled_independents": n, "combiners": list(combiners),
           "pooled": {c: {"fpr": sum(r["false_positives"] for r in rs) / n if n else math.nan,
                          "overall": (sum(r["table"]["overall"]["acc"] * r["table"]["overall"]["n"] for r in rs)
                                      / sum(r["table"]["overall"]["n"] for r in rs)) if rs else math.nan}
                      for c, rs in pooled.items()}}
    out["pooled_fpr"] = out["pooled"][combiners[0]]["fpr"]
    return out


def markdown(result: dict) -> str:
    lines = []
    if result["pooled_independents"]:
        lines += [f"Leave-one-domain-out at α = {result['alpha']:g}, over {result['pooled_independents']} held-out "
                  "independent pairs: " + "; ".join(f"{c}: pooled false-positive rate {v['fpr']:.3f}, overall accuracy "
                                                    f"{v['overall']:.3f}" for c, v in result["pooled"].items()) + ".", ""]
    for r in result["domains"]:
        tests = {f"transferred ({r['combiner']})": r, **{f"transferred ({c})": t for c, t in r["combiners"].items()}} \
            if "table" in r else {}
        if "shipped" in r:
            tests["shipped"] = r["shipped"]
        if not tests:
            lines += [f"**{r['domain']}**: no test decides it (the shipped test reads other score columns).", ""]
            continue
        fprs = "; ".join(f"FPR {name} {t['fpr']:.3f} = {t['false_positives']}/{t['independents']}"
                         for name, t in tests.items())
        lines += [f"**{r['domain']}** ({r['pairs']} pairs; {fprs}; this run's seconds per source "
                  f"{r['per_source_seconds']:.1f}, per suspect {r['per_pair_seconds']:.2f}, ~0 where cached):", ""]
        if r.get("unlike_sources"):
            lines += [f"Sources whose references do not perform like them (the CLI's verdict would not read their "
                      f"outputs): {len(r['unlike_sources'])} of {r['sources']}"
                      + "".join(f"; {s}: {why}" for s, why in r["unlike_sources"].items()) + ".", ""]
        lines += ["| relation | n | " + " | ".join(tests) + " |", "|---|---|" + "---|" * len(tests)]
        table = next(iter(tests.values()))["table"]
        keys = [k for k in table if not k.startswith("all ") and k != "overall"]
        keys += [k for k in table if k.startswith("all ")] + ["overall"]
        for k in keys:
            bold = "**" if k.startswith("all ") or k == "overall" else ""
            cells = " | ".join(f"{bold}{t['table'][k]['acc']:.2f}{bold}" for t in tests.values())
            lines.append(f"| {bold}{k}{bold} | {table[k]['n']} | {cells} |")
        if "evaluation_split" in r:
            e = r["evaluation_split"]
            lines.append(f"\nEvaluation split ({e['n']} pairs): transferred {e['transferred']:.2f}, own calibration "
                         f"{e['own']:.2f} (own level: {e['own_tail']}).")
        lines.append("")
    return "\n".join(lines)
