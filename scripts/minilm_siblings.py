"""Derived from A, or A's sibling via the public MiniLM? ``inheritance`` and ``weights`` on the real text pool (issue 21).

A = minilm-a (all-MiniLM-L6-v2 fine-tuned on a topic task); P = the public MiniLM with a fresh head, given as the
pair's base (the backbone the pool's roots were initialised from); derived = minilm-a's descendants; siblings =
minilm-c and its descendants (another fine-tune of the same public MiniLM); each inheritance value with the
verdict of the default (digits-calibrated) backbone rule. Needs the `real` extra and the pool of
``configs/pool/real_text.yaml``.

    python scripts/minilm_siblings.py runs/pools/real_text --json minilm_siblings.json
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace

import torch

from mgmp.calibration.backbone import DEFAULT_RULE
from mgmp.scores import create_score, load_pair, timed_score
from model_pool.archs import create_model
from model_pool.errors import NotApplicable
from model_pool.pool import Pool


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pool")
    ap.add_argument("--source", default="minilm-a")
    ap.add_argument("--sibling-root", default="minilm-c")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    with Pool.open(args.pool) as pool:
        reg = pool.registry
        derived = sorted(reg.descendants(args.source))
        siblings = [args.sibling_root, *sorted(reg.descendants(args.sibling_root))]
        card = pool.load(args.source)[1]
        torch.manual_seed(0)
        base = create_model("bert", card.num_classes, pretrained="real:minilm-l6", max_length=card.arch_kwargs["max_length"])
        base_card = replace(card, sha256="public:all-MiniLM-L6-v2", relation="scratch", parents=[])
        for method in (create_score("inheritance"), create_score("weights")):
            for b in derived + siblings:
                pair = replace(load_pair(pool.ref(args.source), pool.ref(b), pool=pool), base=base, base_card=base_card)
                try:
                    r = timed_score(method, pair)
                except NotApplicable as e:
                    rows.append({"method": method.name, "suspect": b, "not_applicable": str(e)})
                    continue
                drift = r.extra.get("drift")
                rows.append({"method": method.name, "suspect": b, "truth": "derived" if b in derived else "sibling",
                             "value": r.value, "seconds": r.seconds, "drift": drift,
                             "verdict": DEFAULT_RULE.decide(r.value, drift) if drift is not None else None})
                print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
