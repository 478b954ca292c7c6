"""``mgmp provenance SOURCE SUSPECT --ckpt CKPT``."""
from __future__ import annotations

from rich.console import Console

from mgmp.commands._common import pool_of
from mgmp.learned.provenance import load_mgmp, probe_inputs, provenance
from mgmp.scores import load_pair
from mgmp.scores.features import pair_features
from model_pool.pool import load_ref


def run(args) -> dict:
    module = load_mgmp(args.ckpt)
    with pool_of(args.source) as pool:
        source, src_card = load_ref(args.source, pool)
        suspect, _ = load_ref(args.suspect, pool)
        x = probe_inputs(src_card, args.points, args.data, args.task)
        extra = None
        if module.hparams.get("extra_scores"):
            pair = load_pair(args.source, args.suspect, pool, args.data, args.task)
            extra = pair_features(pair, module.hparams.extra_scores)
    result = provenance(module, source, suspect, x, extra)
    verdict = "derived from the source" if result.decision else "not derived from the source"
    Console().print(f"P(derived) = {result.probability:.3f} (threshold {result.threshold}) -> [bold]{verdict}[/]; "
                    f"{result.fragments_above:.0%} of {result.n_fragments} fragments above threshold")
    return {"source": args.source, "suspect": args.suspect, **result.to_dict()}
