"""``mgmp bench scan``: every model of the real pools scanned against the shipped catalog. The truth is the public
base each model's weights descend from: its card's ``recipe.init`` or its plan row's ``pretrained``, inherited
along weight-inheriting edges; students (distill, extract) and models trained from scratch have none. Also the
scan time of a model with ~135 M parameters (synthetic weights in a Llama layout, bfloat16, read twice: the
second read is the one with a warm page cache), and the catalog's size on disk.
"""
from __future__ import annotations

import math
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from mgmp.calibration.fit import STUDENT_RELATIONS
from mgmp.catalog.scan import scan
from mgmp.catalog.store import Catalog
from model_pool.plan import load_plan
from model_pool.real import PREFIX
from model_pool.registry import PoolRegistry

FROM_SCRATCH = ("scratch",) + STUDENT_RELATIONS  # relations that start from their own initialisation


def true_bases(registry: PoolRegistry, plan_file: str | Path | None) -> dict[str, str | None]:
    """{model id: the catalog name of the public base its weights descend from, or None}."""
    rows = {r.id: r for r in registry.models()}
    jobs = load_plan(plan_file).by_id() if plan_file else {}
    out: dict[str, str | None] = {}

    def base(model_id: str) -> str | None:
        if model_id not in out:
            row = rows[model_id]
            start = row.recipe.get("init") or (jobs[model_id].arch_kwargs.get("pretrained") if model_id in jobs else None)
            if start:
                out[model_id] = start[len(PREFIX):] if start.startswith(PREFIX) else start
            elif row.relation in FROM_SCRATCH or not row.parents:
                out[model_id] = None
            else:
                out[model_id] = base(row.parents[0])
        return out[model_id]

    for model_id in rows:
        base(model_id)
    return out


def _group(truth: str | None, relation: str) -> str:
    if truth is not None:
        return "derived from a catalog base"
    return "student of a derived model" if relation in STUDENT_RELATIONS else "from scratch (no catalog base)"


def _relation(relation: str, truth: str | None) -> str:
    """The registry's relation, except a root built on a public base (its plan recipe is 'scratch')."""
    return "root fine-tuned from the base" if relation == "scratch" and truth else relation


def scan_pool(pool: str | Path, plan_file: str | Path | None, catalogs: list[Catalog]) -> list[dict]:
    with PoolRegistry(pool) as registry:
        truths = true_bases(registry, plan_file)
        rows = {r.id: r for r in registry.models()}
        paths = {m: str(registry.model_dir(m)) for m in rows}
    out = []
    for model_id, truth in sorted(truths.items()):
        result = scan(paths[model_id], catalogs)
        answer = result.answer.base if result.answer else None
        out.append({"pool": Path(pool).name, "model": model_id, "relation": rows[model_id].relation, "truth": truth,
                    "answer": answer, "correct": answer == truth, "group": _group(truth, rows[model_id].relation),
                    "seconds": result.seconds})
    return out


def llama_shapes(params: float, vocab: int = 49152, hidden: int = 576, inter: int = 1536, kv: int = 192) -> dict:
    """Tensor shapes of a Llama with SmolLM2-135M's widths and as many layers as reach ~``params`` weights."""
    per_layer = 2 * hidden * hidden + 2 * kv * hidden + 3 * inter * hidden
    layers = max(1, round((params - vocab * hidden) / per_layer))
    shapes = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes |= {p + "self_attn.q_proj.weight": (hidden, hidden), p + "self_attn.k_proj.weight": (kv, hidden),
                   p + "self_attn.v_proj.weight": (kv, hidden), p + "self_attn.o_proj.weight": (hidden, hidden),
                   p + "mlp.gate_proj.weight": (inter, hidden), p + "mlp.up_proj.weight": (inter, hidden),
                   p + "mlp.down_proj.weight": (hidden, inter)}
    return shapes


def _write_bf16(path: Path, shapes: dict, seed: int, base: dict | None = None, noise: float = 0.0) -> dict:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in shapes.items():
        t = torch.randn(shape, generator=g) * 0.02
        tensors[name] = (base[name].float() + noise * t if base is not None else t).to(torch.bfloat16)
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "model.safetensors"))
    return tensors


def large_scan_seconds(params: float, catalogs: list[Catalog]) -> dict:
    """Scan time of a ~``params``-weight bfloat16 model (a 'fine-tune' of a synthetic base added to a temporary
    catalog beside ``catalogs``): cold (just written) and warm (read again)."""
    from mgmp.catalog.files import open_model
    from mgmp.catalog.fingerprint import fingerprint

    shapes = llama_shapes(params)
    with tempfile.TemporaryDirectory(prefix="mgmp-bench-scan-") as tmp:
        tmp = Path(tmp)
        base = _write_bf16(tmp / "base", shapes, seed=0)
        _write_bf16(tmp / "suspect", shapes, seed=1, base=base, noise=0.3)
        del base
        own = Catalog(tmp / "catalog")
        own.add("synthetic-llama", fingerprint(open_model(str(tmp / "base"))), "synthetic", [], "bench")
        runs = [scan(str(tmp / "suspect"), catalogs + [own]) for _ in range(2)]
    n = sum(math.prod(s) for s in shapes.values())
    return {"params": n, "layers": (len(shapes) - 1) // 7, "answer": runs[-1].answer.base if runs[-1].answer else None,
            "seconds_first": runs[0].seconds, "seconds_warm": runs[1].seconds}


def summarise(rows: list[dict]) -> dict:
    by: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        by[f"{r['pool']}: {r['group']}"].append(r["correct"])
        by[r["group"]].append(r["correct"])
        by[f"relation {_relation(r['relation'], r['truth'])}"].append(r["correct"])
    return {k: {"n": len(v), "acc": float(np.mean(v))} for k, v in sorted(by.items())}


def markdown(result: dict) -> str:
    lines = ["| models | n | top-1 correct |", "|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {v['acc']:.3f} |" for k, v in result["summary"].items()]
    misses = [r for r in result["rows"] if not r["correct"]]
    lines.append("")
    lines.append("Misses: " + (", ".join(f"{r['pool']}::{r['model']} (truth {r['truth']}, answered {r['answer']})"
                                         for r in misses) or "none") + ".")
    secs = [r["seconds"] for r in result["rows"]]
    if secs:
        lines.append(f"Scan time per pool model: median {np.median(secs):.2f} s, max {max(secs):.2f} s.")
    if large := result.get("large"):
        lines.append(f"Scan of a {large['params'] / 1e6:.0f} M-weight bfloat16 model ({large['layers']} Llama layers): "
                     f"{large['seconds_first']:.2f} s just written, {large['seconds_warm']:.2f} s read again "
                     f"(answer: {large['answer']}).")
    lines.append(f"Shipped catalog: {result['catalog_bases']} bases, {result['catalog_bytes'] / 1e6:.2f} MB.")
    return "\n".join(lines)


def run(pools: list[str], plans: list[str | None], catalogs: list[Catalog], large_params: float = 0) -> dict:
    t0 = time.perf_counter()
    rows = [r for pool, plan in zip(pools, plans) for r in scan_pool(pool, plan, catalogs)]
    result = {"rows": rows, "summary": summarise(rows), "catalog_bases": sum(len(c) for c in catalogs),
              "catalog_bytes": sum(c.bytes() for c in catalogs)}
    if large_params:
        result["large"] = large_scan_seconds(large_params, catalogs)
    result["seconds"] = time.perf_counter() - t0
    return result
