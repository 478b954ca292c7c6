"""``mgmp score``'s entry: weight cosine of two model directories read as files (their safetensors arrays, sha256
checked: no model built, no torch imported, so the command answers in well under a second of work), every other
case handed to :mod:`mgmp.commands.score`, which builds the pair."""
from __future__ import annotations

import time

from rich.console import Console

from mgmp.calibration.thresholds import decide
from model_pool.errors import NotApplicable
from model_pool.model_files import weight_arrays
from model_pool.registry import REF_SEP

# what the file route computes: the weights score (mgmp.scores.weights) at its only parameters
METHOD = "weights"


def _file_route(args) -> dict | None:
    """The weights score of two plain model directories from their files, or None where the pair must be built
    (a pool reference, an endpoint, parameters, a calibration, a data option, or files only a model can read)."""
    if args.method != METHOD or args.param or args.calibration or args.base or args.max_queries is not None:
        return None
    if args.data or args.task or args.suspect_data or args.suspect_task:  # data named: read (and checked) as asked
        return None
    if any(REF_SEP in ref or ref.startswith("endpoint:") for ref in (args.source, args.suspect)):
        return None
    from mgmp.representations.weights import matrices_cosine, weight_matrices

    t0 = time.perf_counter()
    arrays = [weight_arrays(ref) for ref in (args.source, args.suspect)]
    if any(a is None for a in arrays):
        return None
    cos, shared = matrices_cosine(*(weight_matrices(a) for a in arrays))
    if shared == 0:
        raise NotApplicable("weights: the two models share no weight tensor of the same name and shape")
    return {"method": METHOD, "value": cos, "higher_is_related": True, "extra": {"shared_tensors": shared, "queries": 0},
            "seconds": time.perf_counter() - t0, "cached": False}


def run(args) -> dict:
    result = _file_route(args)
    if result is None:
        from mgmp.commands.score import run as run_pair

        return run_pair(args)
    out = {"source": args.source, "suspect": args.suspect, "params": {}, **result}
    line = (f"{METHOD}({args.source}, {args.suspect}) = {result['value']:.4f} (weight space: its own rule, not read "
            "against the references)")
    if args.threshold is not None:
        out["threshold"] = args.threshold
        out["related"] = decide(result["value"], args.threshold, True)
        line += f" (threshold {args.threshold:.4f}) -> [bold]{'lineage' if out['related'] else 'no lineage'}[/]"
    Console().print(line + f"\n  shared_tensors {result['extra']['shared_tensors']}, queries 0")
    return out
