"""``mgmp bench mgmp``: Table-1-style MGMP results on a pool's held-out evaluation tasks.

Rows: MGMP variants (output view, with and without generator), the two controls (target-only:
source outputs zeroed; shuffled: source outputs of another x) and training-free baselines
(top-1 agreement with the source, linear CKA of logits). Each trained row is mean ± std over seeds.
Also reports the homologous and non-homologous evaluation groups' accuracy and confidence, so that
a confidence confound is visible.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.metrics import roc_auc_score

from mgmp.learned.datamodule import ModelPoolDataModule
from mgmp.learned.module import MGMPModule
from mgmp.representations.similarity import linear_cka, top1_agreement
from model_pool.errors import BadInput
from model_pool.pool import Pool

# name -> (view, MGMPModule overrides)
VARIANTS: dict[str, tuple[str, dict]] = {
    "mgmp logits (paper)": ("logits", {}),
    "mgmp logits no-generator": ("logits", {"generator": None}),
    "target-only control (logits)": ("logits", {"control": "target_only"}),
    "shuffled control (logits)": ("logits", {"control": "shuffled"}),
    "mgmp features": ("features", {}),
    "mgmp features no-generator": ("features", {"generator": None}),
    "target-only control (features)": ("features", {"control": "target_only"}),
    "shuffled control (features)": ("features", {"control": "shuffled"}),
    "mgmp features compare": ("features", {"pair": "compare"}),
    "target-only control (features compare)": ("features", {"pair": "compare", "control": "target_only"}),
}


DOMAINS = {  # plan, generator, generator kwargs of the embedded pools
    "image": ("digits.yaml", "small_cnn", {"in_channels": 1, "image_size": 8, "width": 32}),
    "text": ("topics.yaml", "distilbert", {"vocab_size": 512, "max_length": 48}),
}


def train_mgmp(dm: ModelPoolDataModule, overrides: dict, generator: str, generator_kwargs: dict, epochs: int,
               seed: int) -> tuple[MGMPModule, pl.Trainer]:
    """Fit one MGMP variant on ``dm`` quietly (no logger, no checkpoints, no validation)."""
    _quiet()
    pl.seed_everything(seed, workers=True)
    dm.hparams.seed = seed
    model = MGMPModule(dm.output_dims, **{"generator": generator, "generator_kwargs": generator_kwargs,
                                          "view": dm.hparams.view, **overrides})
    trainer = pl.Trainer(max_epochs=epochs, accelerator="auto", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0)
    trainer.fit(model, dm)
    return model, trainer


def _train_eval(dm: ModelPoolDataModule, overrides: dict, generator: str, generator_kwargs: dict, epochs: int,
                seed: int) -> dict:
    model, trainer = train_mgmp(dm, overrides, generator, generator_kwargs, epochs, seed)
    res = trainer.test(model, dm, verbose=False)[0]
    return {k.split("/", 1)[1]: v for k, v in res.items()} | {"pair_acc": model.last_eval["pair_acc"]}


def _summary(runs: list[dict]) -> dict:
    pair = np.array([a for r in runs for a in r["pair_acc"]])
    out = {"frag_acc": float(pair.mean()), "frag_acc_std": float(pair.std()), "seeds": len(runs)}
    for k in ("model_acc", "model_auroc", "frag_auroc"):
        v = np.array([r[k] for r in runs])
        out[k], out[k + "_std"] = float(v.mean()), float(v.std())
    return out


def _threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The accuracy-maximising threshold on (training-pool) scores."""
    cands = np.unique(scores)
    accs = [((scores >= t) == labels).mean() for t in cands]
    return float(cands[int(np.argmax(accs))])


def training_free(dm: ModelPoolDataModule) -> dict[str, dict]:
    """Top-1 agreement and logit CKA with the source: thresholds fit on training-pool models, scored on eval models."""
    src = dm.hparams.source
    train = [(s, m, True) for (s, _), (h, _) in dm.train_pairs.items() for m in h] + \
            [(s, m, False) for (s, _), (_, n) in dm.train_pairs.items() for m in n]
    eval_hom = {h for h, _ in dm.eval_pairs}
    out = {}
    for name, fn in {"baseline: top-1 agreement": lambda a, b: float(top1_agreement(a, b).float().mean()),
                     "baseline: linear CKA of outputs": linear_cka}.items():
        tr = np.array([fn(dm.out_train[s], dm.out_train[m]) for s, m, _ in train])
        thr = _threshold(tr, np.array([lab for _, _, lab in train]))
        ev = np.array([fn(dm.out_eval[src], dm.out_eval[m]) for m in dm.eval_models])
        lab = np.array([m in eval_hom for m in dm.eval_models])
        row = {"model_acc": float(((ev >= thr) == lab).mean()), "model_auroc": float(roc_auc_score(lab, ev)), "threshold": thr}
        if "agreement" in name:  # a fragment is called homologous when the labels agree
            pair = [(float(top1_agreement(dm.out_eval[src], dm.out_eval[h]).float().mean())
                     + float((~top1_agreement(dm.out_eval[src], dm.out_eval[n])).float().mean())) / 2 for h, n in dm.eval_pairs]
            row |= {"frag_acc": float(np.mean(pair)), "frag_acc_std": float(np.std(pair))}
        out[name] = row
    return out


def groups(dm: ModelPoolDataModule) -> dict[str, dict]:
    """Accuracy on own task (registry) and mean max-softmax confidence on the probe points, per eval group."""
    with Pool.open(dm.hparams.pool_dir) as pool:
        acc = {m: pool.registry.get(m).metrics.get("test_acc") for m in dm.eval_models}
    eval_hom = {h for h, _ in dm.eval_pairs}
    out = {}
    for name, ids in (("homologous", [m for m in dm.eval_models if m in eval_hom]),
                      ("non-homologous", [m for m in dm.eval_models if m not in eval_hom])):
        logits = {m: dm.out_eval[m] for m in ids} if dm.hparams.view == "logits" else None
        conf = [float(torch.softmax(logits[m], 1).max(1).values.mean()) for m in ids] if logits else []
        out[name] = {"n": len(ids), "test_acc": float(np.mean([acc[m] for m in ids])),
                     "confidence_on_probe": float(np.mean(conf)) if conf else None}
    return out


def _quiet() -> None:
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run(pool_dir: str, seeds: int = 3, epochs: int = 20, episodes: int = 100, eval_points: int = 200,
        variants: list[str] | None = None, domain: str = "image", holdout: str = "split", source: str = "source",
        generator: str | None = None, generator_kwargs: dict | None = None,
        on_row: Callable[[str, dict], None] | None = None) -> dict[str, Any]:
    """The table on ``pool_dir``; ``generator`` / ``generator_kwargs``: the DNA generator (default: the domain's,
    ``DOMAINS``; given kwargs replace the defaults, e.g. a pretrained backbone as its initialisation)."""
    _quiet()
    t0 = time.perf_counter()
    names = variants or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise BadInput(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    _, default_generator, default_kw = DOMAINS[domain]
    generator = generator or default_generator
    gen_kw = generator_kwargs if generator_kwargs is not None else (default_kw if generator == default_generator else {})
    dms = {}
    rows: dict[str, dict] = {}
    for name in names:
        view, overrides = VARIANTS[name]
        if view not in dms:
            dms[view] = ModelPoolDataModule(pool_dir, source=source, view=view, episodes_per_epoch=episodes,
                                            eval_points=eval_points, holdout=holdout)
            dms[view].setup()
        t = time.perf_counter()
        runs = [_train_eval(dms[view], overrides, generator, gen_kw, epochs, seed) for seed in range(seeds)]
        rows[name] = _summary(runs) | {"seconds_per_seed": (time.perf_counter() - t) / seeds}
        if on_row:
            on_row(name, rows[name])
    logits_dm = dms.get("logits") or ModelPoolDataModule(pool_dir, source=source, view="logits", eval_points=eval_points,
                                                         holdout=holdout)
    logits_dm.setup()
    baselines = training_free(logits_dm)
    return {"pool": pool_dir, "domain": domain, "holdout": holdout, "source": source, "generator": generator,
            "generator_kwargs": gen_kw, "rows": rows, "baselines": baselines, "groups": groups(logits_dm),
            "eval_pairs": len(logits_dm.eval_pairs), "eval_models": len(logits_dm.eval_models),
            "seeds": seeds, "epochs": epochs, "episodes_per_epoch": episodes, "eval_points": eval_points,
            "seconds": time.perf_counter() - t0}


def markdown(result: dict) -> str:
    """The Table-1-style table as markdown."""
    def f(row, k):
        v = row.get(k)
        if v is None:
            return "-"
        s = row.get(k + "_std")
        return f"{v:.3f} ± {s:.3f}" if s is not None else f"{v:.3f}"

    lines = ["| method | fragment acc | model acc | model AUROC |", "|---|---|---|---|"]
    for name, row in {**result["rows"], **result["baselines"]}.items():
        lines.append(f"| {name} | {f(row, 'frag_acc')} | {f(row, 'model_acc')} | {f(row, 'model_auroc')} |")
    g = result["groups"]
    lines.append("")
    lines.append("| eval group | models | test acc (own task) | mean max-softmax on probe |")
    lines.append("|---|---|---|---|")
    for name, row in g.items():
        conf = "-" if row["confidence_on_probe"] is None else f"{row['confidence_on_probe']:.3f}"
        lines.append(f"| {name} | {row['n']} | {row['test_acc']:.3f} | {conf} |")
    return "\n".join(lines)
