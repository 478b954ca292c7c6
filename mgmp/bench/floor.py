"""``mgmp bench speed --floor``: what each score costs per pair on any models, next to the forward-pass floor.

Per method, with a fresh cache: the first suspect of the source pays the per-source work (generated
test sets, reference models, fingerprints, the source's signature); each later suspect costs its own
side only. The forwards of that per-suspect work are counted (rows entering the suspect, or the models
a weight-space method builds from it; never the source's), and the floor is the time of exactly that
many forwards at the best batch size measured on the same machine. Ratio = per-suspect seconds / floor:
1.0 means the score costs nothing but the forwards it needs.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import replace
from typing import Any
from unittest import mock

import torch
from torch import nn

from mgmp.scores import create_score, load_pair, timed_score
from model_pool.errors import NotApplicable

FLOOR_METHODS = {"closeness": {}, "zest": {}, "ipguard": {}, "modeldiff": {}, "sac": {}, "dna": {}, "basin": {},
                 "weights": {}}
BATCH_SIZES = (32, 64, 128, 256, 512)


class ForwardCounter:
    """Rows through models while the block runs: each outermost call of a module of ``types`` (a model and
    the modules its ``forward_features`` calls) counts its batch, except modules of ``exclude``."""

    def __init__(self, types: set[type], exclude: nn.Module | None = None):
        self.types, self.rows, self._depth = tuple(types), 0, 0
        self._excluded = {id(m) for m in exclude.modules()} if exclude is not None else set()
        self._handles = []

    def _counted(self, module: nn.Module) -> bool:
        return isinstance(module, self.types) and id(module) not in self._excluded

    def _pre(self, module: nn.Module, args: tuple) -> None:
        if not self._counted(module):
            return
        if self._depth == 0 and args and hasattr(args[0], "__len__"):
            self.rows += len(args[0])
        self._depth += 1

    def _post(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self._counted(module):
            self._depth -= 1

    def __enter__(self) -> "ForwardCounter":
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        self._handles = [register_module_forward_pre_hook(self._pre), register_module_forward_hook(self._post)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()


def model_types(model: nn.Module) -> set[type]:
    """The classes whose outermost calls are a model's forwards: the model's and its direct children's."""
    return {type(model)} | {type(m) for m in model.children() if not isinstance(m, (nn.Linear, nn.Identity))}


@torch.no_grad()
def throughput(model: nn.Module, x: torch.Tensor, batch_sizes: tuple[int, ...] = BATCH_SIZES,
               seconds: float = 1.0) -> tuple[float, int]:
    """Best rows per second of ``model``'s eval forward on inputs like ``x`` over ``batch_sizes``, and that size."""
    model.eval()
    best = (0.0, batch_sizes[0])
    for bs in batch_sizes:
        batch = x[torch.arange(bs) % len(x)]
        model(batch)  # warm-up
        n, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            model(batch)
            n += bs
        best = max(best, (n / elapsed, bs))
    return best


def _cold_pair(source: str, suspect: str, data: str | None):
    """The pair without its pool, so that every per-source step lands in the (fresh) user cache."""
    return replace(load_pair(source, suspect, data=data), pool=None, source_id=None, suspect_id=None)


def run(source: str, suspects: list[str], methods: dict[str, dict] | None = None, data: str | None = None,
        seconds: float = 1.0) -> dict[str, Any]:
    """Per method: per-source and per-suspect seconds, per-suspect forwards, the floor and the ratio."""
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    rates = {}
    for suspect in suspects[1:]:
        pair = _cold_pair(source, suspect, data)
        rates[suspect] = throughput(pair.suspect, pair.source_data.x_test, seconds=seconds)
    rows = {}
    for name, params in (methods or FLOOR_METHODS).items():
        with tempfile.TemporaryDirectory(prefix="mgmp-floor-") as cache, mock.patch.dict(os.environ, {"MGMP_CACHE": cache}):
            rows[name] = _one_method(create_score(name, **params), source, suspects, data, rates)
    return {"source": source, "suspects": suspects, "threads": torch.get_num_threads(),
            "floor": {s: {"forwards_per_second": r, "best_batch_size": b} for s, (r, b) in rates.items()}, "rows": rows}


def _one_method(method, source: str, suspects: list[str], data: str | None, rates: dict) -> dict[str, Any]:
    row: dict[str, Any] = {"params": method.params(), "seconds": [], "values": [], "forwards": [], "floor_seconds": []}
    for suspect in suspects:
        pair = _cold_pair(source, suspect, data)
        counter = ForwardCounter(model_types(pair.suspect), exclude=pair.source)
        try:
            with counter if row["seconds"] else contextlib.nullcontext():  # the first suspect: per-source work too
                t0 = time.perf_counter()
                row["values"].append(timed_score(method, pair).value)
                row["seconds"].append(time.perf_counter() - t0)
        except NotApplicable as e:
            return {"params": method.params(), "not_applicable": str(e)}
        if suspect in rates and row["seconds"][1:]:
            row["forwards"].append(counter.rows)
            row["floor_seconds"].append(counter.rows / rates[suspect][0])
    first, later = row["seconds"][0], row["seconds"][1:]
    per_suspect = sum(later) / len(later)
    floor = sum(row["floor_seconds"]) / len(later)
    return row | {"first_seconds": first, "per_source_seconds": max(first - per_suspect, 0.0),
                  "per_suspect_seconds": per_suspect, "later_over_first": per_suspect / first if first else None,
                  "forwards_per_suspect": sum(row["forwards"]) / len(later), "floor_per_suspect": floor,
                  "ratio_to_floor": per_suspect / floor if floor > 0 else None}


def markdown(result: dict) -> str:
    rates = ", ".join(f"{s}: {f['forwards_per_second']:.0f}/s at batch {f['best_batch_size']}"
                      for s, f in result["floor"].items())
    lines = [f"forward-pass floor ({result['threads']} threads): {rates}", "",
             "| score | first suspect (s) | per-source (s) | per-suspect (s) | later / first | forwards per suspect | "
             "floor (s) | per-suspect / floor |", "|---|---|---|---|---|---|---|---|"]
    for name, r in result["rows"].items():
        if "not_applicable" in r:
            lines.append(f"| {name} | n/a: {r['not_applicable']} | | | | | | |")
            continue
        ratio = "no forwards" if r["ratio_to_floor"] is None else f"{r['ratio_to_floor']:.2f}x"
        lines.append(f"| {name} | {r['first_seconds']:.2f} | {r['per_source_seconds']:.2f} | "
                     f"{r['per_suspect_seconds']:.3f} | {r['later_over_first']:.3f} | {r['forwards_per_suspect']:.0f} | "
                     f"{r['floor_per_suspect']:.3f} | {ratio} |")
    return "\n".join(lines)
