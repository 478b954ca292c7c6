"""``mgmp bench lm``: the language-model scores of one source against every other model of an LM pool, per relation.

Every column of the LM test (:func:`mgmp.calibration.bonferroni.lm_test`) is read against the source's null
(``references`` models made like the source: fine-tunes of its public start with its recipe where it has one, else
small LMs of its vocabulary trained from scratch on its data: :mod:`mgmp.calibration.null`); a column calls a
suspect derived when its p-value is at most ``alpha``. Two combinations state their level without any fitted
weight: ``black-box`` (Bonferroni over the next-token scores: the Model-Provenance-Testing setting, the suspect
queried only) and ``verdict`` (the LM test itself, as ``mgmp score fused`` decides: Bonferroni over every column
that applies, or the weights alone where the references do not perform like the source).
Ground truth from the registry: a descendant of the source is derived; a model sharing only an ancestor with it
(a sibling fine-tune of the public base) and a model of another family are not.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

from mgmp.calibration.bonferroni import LM_COLUMNS, lm_test
from mgmp.calibration.null import source_null
from mgmp.calibration.verdict import decide
from mgmp.scores import compute, create_score, load_pair
from model_pool.errors import BadInput, NotApplicable
from model_pool.pool import Pool

BLACK_BOX = ("lm_tokens", "lm_logprob", "lm_inheritance")


def relation_of(pool: Pool, source: str, suspect: str) -> tuple[str, bool]:
    """(row label, derived?) of ``suspect`` seen from ``source``."""
    reg = pool.registry
    if source in reg.ancestors(suspect):
        return reg.get(suspect).relation, True
    if set(reg.ancestors(source)) & set(reg.ancestors(suspect)) or suspect in reg.ancestors(source):
        return "sibling / ancestor", False
    return "independent", False


def run(pool: Pool, source: str, references: int = 4, alpha: float = 0.01,
        on_progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Every column on (source, each other model), the null, per-pair decisions and cost."""
    if not pool.registry.has(source):
        raise BadInput(f"{source}: no such model in {pool.root}")
    suspects = [m for m in pool.registry.ids() if m != source]
    t0 = time.perf_counter()
    first = load_pair(pool.ref(source), pool.ref(suspects[0]), pool=pool)
    null = source_null(first, references, LM_COLUMNS, on_progress)
    null_seconds = time.perf_counter() - t0
    rows = []
    for i, suspect in enumerate(suspects):
        pair = load_pair(pool.ref(source), pool.ref(suspect), pool=pool)
        values, seconds = {}, {}
        for col, (name, params) in LM_COLUMNS.items():
            try:
                result = compute(create_score(name, **params), pair)
                values[col], seconds[col] = result.value, result.seconds
            except NotApplicable:
                values[col], seconds[col] = math.nan, 0.0
        stats = null.statistics(values)
        label, derived = relation_of(pool, source, suspect)
        rows.append({"suspect": suspect, "relation": label, "derived": derived, "values": values, "seconds": seconds,
                     "p": {c: stats[c]["p"] for c in LM_COLUMNS}, "z": {c: stats[c]["z"] for c in LM_COLUMNS},
                     "decisions": decisions(stats, values, alpha, null.unlike_source)})
        if on_progress:
            on_progress("scoring suspects", i + 1, len(suspects))
    return {"pool": str(pool.root), "source": source, "references": references, "alpha": alpha, "rows": rows,
            "null": null.to_dict(), "null_seconds": null_seconds, "table": table(rows),
            "seconds": time.perf_counter() - t0}


def decisions(stats: dict[str, dict], values: dict[str, float], alpha: float, unlike: str | None) -> dict[str, bool]:
    """Each column's call at ``alpha``, the black-box combination and the LM test's verdict."""
    p = {c: stats[c]["p"] for c in LM_COLUMNS}
    out = {c: bool(p[c] <= alpha) for c in LM_COLUMNS}
    finite = [p[c] for c in BLACK_BOX if math.isfinite(p[c])]
    out["black-box"] = bool(finite) and min(finite) <= alpha / len(finite)
    out["verdict"] = bool(decide(lm_test(), stats, values, alpha, unlike)[0])
    return out


def table(rows: list[dict]) -> dict[str, dict[str, Any]]:
    """Accuracy per relation and column (NaN-free: a column that did not apply counts as "not derived")."""
    out: dict[str, dict[str, Any]] = {}
    for label in sorted({r["relation"] for r in rows}) + ["overall"]:
        members = [r for r in rows if label in (r["relation"], "overall")]
        cols = members[0]["decisions"].keys()
        out[label] = {"n": len(members), **{c: sum(r["decisions"][c] == r["derived"] for r in members) / len(members)
                                            for c in cols}}
    return out


def markdown(result: dict) -> str:
    cols = [c for c in next(iter(result["table"].values())) if c != "n"]
    null, lines = result["null"], []
    if acc := null.get("accuracy"):
        refs = ", ".join(f"{a[1]:.3f}" for a in acc["references"])
        lines.append(f"Null of {result['source']}: {null['references']} references "
                     f"({'fine-tunes of ' + null['start'] if null.get('start') else 'from scratch'}) in "
                     f"{result['null_seconds']:.0f} s; next-token test accuracy: source {acc['source'][1]:.3f}, "
                     f"references {refs}.")
    if null.get("unlike_source"):
        lines.append(f"The references are unlike the source: {null['unlike_source']}.")
    lines += ["", "| relation | n | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for label, row in result["table"].items():
        lines.append(f"| {label} | {row['n']} | " + " | ".join(f"{row[c]:.2f}" for c in cols) + " |")
    lines += ["", "| suspect | relation | " + " | ".join(LM_COLUMNS) + " |", "|---|---|" + "---|" * len(LM_COLUMNS)]
    for r in result["rows"]:
        cells = [f"{r['values'][c]:.3f} (p {r['p'][c]:.2g})" for c in LM_COLUMNS]
        lines.append(f"| {r['suspect']} | {r['relation']} | " + " | ".join(cells) + " |")
    cost = {c: sum(r["seconds"][c] for r in result["rows"]) / len(result["rows"]) for c in result["rows"][0]["seconds"]}
    lines += ["", "Seconds per suspect (mean, after the per-source work): " +
              ", ".join(f"{c} {v:.1f}" for c, v in cost.items()) + f"; total {sum(cost.values()):.1f}."]
    return "\n".join(lines)
