"""Cost of the student scores' per-source stage, stage by stage, and of each suspect after it (issue 17).

With a fresh cache: the shared reference stage (the surrogates and independents CAE and ``generated`` train, then
``generated``'s lineage references), CAE's conferrable-example generation, ``generated``'s detector (its probes and
the fit) and dataset inference's regressor (each: the first suspect's seconds minus the mean of the later ones);
then the mean seconds per later suspect of each score. Pairs are scored without their pool, so that every
per-source step lands in the fresh cache.

    python scripts/student_stage_cost.py SOURCE SUSPECT [SUSPECT ...] [--json J]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from unittest import mock

import torch

from mgmp.bench.floor import _cold_pair
from mgmp.scores import create_score, timed_score
from mgmp.scores.references import build_references

SCORES = ("cae", "generated", "dataset_inference")


def run(source: str, suspects: list[str]) -> dict:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    out: dict = {"source": source, "suspects": suspects, "threads": torch.get_num_threads(), "stages": {}, "per_suspect": {}}
    with tempfile.TemporaryDirectory(prefix="mgmp-students-") as cache, mock.patch.dict(os.environ, {"MGMP_CACHE": cache}):
        pair = _cold_pair(source, suspects[0], None)
        surrogates, independents = create_score("cae").references(pair.source_card)
        lineage = [r for r in create_score("generated").references(pair.source_card) if r.kind == "lineage"]
        folder = pair.cache.generated_dir(pair.source_key)
        for label, specs in (("references: surrogates", surrogates), ("references: independents", independents),
                             ("references: lineage", lineage)):
            t0 = time.perf_counter()
            build_references(pair.source, pair.source_card, pair.source_data, specs, folder)
            out["stages"][label] = {"seconds": time.perf_counter() - t0, "models": len(specs)}
        for name in SCORES:
            method = create_score(name)
            seconds = [timed_score(method, _cold_pair(source, s, None)).seconds for s in suspects]
            later = sum(seconds[1:]) / len(seconds[1:])
            out["stages"][f"{name}: per-source"] = {"seconds": max(seconds[0] - later, 0.0)}
            out["per_suspect"][name] = later
    out["per_source_total"] = sum(s["seconds"] for s in out["stages"].values())
    return out


def markdown(r: dict) -> str:
    lines = [f"source {r['source']}, {len(r['suspects']) - 1} later suspects, {r['threads']} threads", "",
             "| stage | seconds |", "|---|---|"]
    for stage, v in r["stages"].items():
        models = f" ({v['models']} models)" if "models" in v else ""
        lines.append(f"| {stage}{models} | {v['seconds']:.1f} |")
    lines.append(f"| **per-source total** | **{r['per_source_total']:.1f}** |")
    lines += [f"| per suspect: {k} | {v:.3f} |" for k, v in r["per_suspect"].items()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source")
    ap.add_argument("suspects", nargs="+", help="two or more: the first pays the per-source work")
    ap.add_argument("--json")
    args = ap.parse_args()
    if len(args.suspects) < 2:
        ap.error("give two suspects or more")
    result = run(args.source, args.suspects)
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
