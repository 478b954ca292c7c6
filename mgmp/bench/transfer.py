"""``mgmp bench transfer``: leave one domain out (SPEC §13). For each in-house domain, the fused test is fit on the
other domains' pairs and decides this one's at level α; reported per relation, with the false-positive rate on the
independents, against the same domain's own calibration (its calibration split), and the cost per source and per
suspect."""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from mgmp.calibration.domains import DomainRows, fit_test
from mgmp.calibration.verdict import DEFAULT_ALPHA, FusedTest

STUDENT_RELATIONS = ("distill", "extract")  # trained from their own initialisation: no weight inherited
CALIBRATION_SPLIT = "calibration"


def relation_group(row: str, related: bool) -> str:
    """weight-inheriting, student (distill/extract, also after a transfer) or independent."""
    if not related:
        return "independent"
    return "student" if any(r in row for r in STUDENT_RELATIONS) else "weight-inheriting"


def decisions(test: FusedTest, rows: DomainRows, alpha: float) -> np.ndarray:
    return np.asarray(test.p_value(test.probability(rows.x), alpha)[0]) <= alpha


def accuracy_table(rows: DomainRows, derived: np.ndarray) -> dict[str, dict]:
    """{relation row or group: {n, acc}} plus "overall"; groups in capitals-free names ("weight-inheriting"...)."""
    buckets: dict[str, list[bool]] = defaultdict(list)
    for row, related, d in zip(rows.rows, rows.related, derived):
        ok = bool(d) == bool(related)
        buckets[row].append(ok)
        buckets[f"all {relation_group(row, related)}"].append(ok)
        buckets["overall"].append(ok)
    return {k: {"n": len(v), "acc": float(np.mean(v))} for k, v in sorted(buckets.items())}


def held_out(domains: list[DomainRows], i: int, alpha: float) -> dict:
    """Domain ``i`` decided by the test fit on the others, and (on its evaluation split) by its own calibration."""
    held = domains[i]
    transferred = fit_test([d for j, d in enumerate(domains) if j != i])
    derived = decisions(transferred, held, alpha)
    out = {"domain": held.domain, "pairs": int(len(held.related)), "table": accuracy_table(held, derived),
           "fpr": float(derived[~held.related].mean()) if (~held.related).any() else math.nan,
           "independents": int((~held.related).sum()),
           "false_positives": int(derived[~held.related].sum()),
           "per_source_seconds": float(np.mean(list(held.source_seconds.values()))),
           "sources": len(set(held.sources)), "unlike_sources": dict(held.unlike),
           "per_pair_seconds": float(np.mean(held.pair_seconds)) if held.pair_seconds else math.nan}
    cal = np.array([s == CALIBRATION_SPLIT for s in held.splits])
    own_rows, ev = held.select(cal), held.select(~cal)
    if own_rows.related.any() and (~own_rows.related).any() and len(ev.related):
        own = fit_test([own_rows])
        out["evaluation_split"] = {"n": int(len(ev.related)),
                                   "transferred": float((decisions(transferred, ev, alpha) == ev.related).mean()),
                                   "own": float((decisions(own, ev, alpha) == ev.related).mean()),
                                   "own_tail": own.p_value(0.5, alpha)[1]}
    return out


def run(domains: list[DomainRows], alpha: float = DEFAULT_ALPHA) -> dict:
    """Every domain held out in turn; the pooled false-positive rate over all held-out independents."""
    if len(domains) < 2:
        raise ValueError("leave-one-domain-out needs at least two domains")
    results = [held_out(domains, i, alpha) for i in range(len(domains))]
    fp = sum(r["false_positives"] for r in results)
    n = sum(r["independents"] for r in results)
    return {"alpha": alpha, "domains": results, "pooled_fpr": fp / n if n else math.nan, "pooled_independents": n}


def markdown(result: dict) -> str:
    lines = [f"Leave-one-domain-out at α = {result['alpha']:g}: pooled false-positive rate "
             f"{result['pooled_fpr']:.3f} over {result['pooled_independents']} held-out independent pairs.", ""]
    for r in result["domains"]:
        lines += [f"**{r['domain']}** held out ({r['pairs']} pairs; FPR {r['fpr']:.3f} = {r['false_positives']}/"
                  f"{r['independents']}; this run's seconds per source {r['per_source_seconds']:.1f}, per suspect "
                  f"{r['per_pair_seconds']:.2f}, ~0 where cached):", "", "| relation | n | accuracy |", "|---|---|---|"]
        if r.get("unlike_sources") is not None:
            lines.append(f"Sources whose references do not perform like them (the CLI's verdict would not read their "
                         f"outputs): {len(r['unlike_sources'])} of {r['sources']}"
                         + "".join(f"; {s}: {why}" for s, why in r["unlike_sources"].items()) + ".\n")
        table = r["table"]
        keys = [k for k in table if not k.startswith("all ") and k != "overall"]
        keys += [k for k in table if k.startswith("all ")] + ["overall"]
        for k in keys:
            bold = "**" if k.startswith("all ") or k == "overall" else ""
            lines.append(f"| {bold}{k}{bold} | {table[k]['n']} | {bold}{table[k]['acc']:.2f}{bold} |")
        if "evaluation_split" in r:
            e = r["evaluation_split"]
            lines.append(f"\nEvaluation split ({e['n']} pairs): transferred {e['transferred']:.2f}, own calibration "
                         f"{e['own']:.2f} (own level: {e['own_tail']}).")
        lines.append("")
    return "\n".join(lines)
