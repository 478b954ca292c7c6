"""MGMP data module, LightningModule and CLI on a tiny pool."""
import glob
import json
import os

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from mgmp.cli import main
from mgmp.learned.datamodule import ModelPoolDataModule
from mgmp.learned.evaluation import evaluate
from mgmp.learned.module import MGMPModule

GEN = {"in_channels": 1, "image_size": 8, "width": 8}


def _trainer(**kw):
    return pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, **kw)


def test_datamodule_splits_pairs_and_caches(mgmp_pool):
    dm = ModelPoolDataModule(str(mgmp_pool), batch_size=16, episodes_per_epoch=3, eval_points=20)
    dm.setup()
    assert dm.output_dims == [10]
    assert set(dm.train_pairs) == {("source", "digits-tasks/0"), ("source", "digits-tasks/1")}
    assert all(h[0].startswith("hom") and n[0].startswith("non") for h, n in dm.train_pairs.values())
    assert dm.eval_pairs == [("hom-2-a", "non-2-a"), ("hom-2-b", "non-2-b")]
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (16, 1, 8, 8) and batch["y_t"].shape == (16, 10)
    cached = glob.glob(str(mgmp_pool / "cache" / "outputs" / "*" / "*-logits-*.npy"))
    assert len(cached) == 2 * 13  # every model, train and eval probes
    assert sorted({np.load(f).shape for f in cached}) == [(20, 10), (300, 10)]
    stamps = {f: os.stat(f).st_mtime_ns for f in cached}
    dm2 = ModelPoolDataModule(str(mgmp_pool), eval_points=20)
    dm2.setup()
    assert torch.equal(dm2.out_eval["hom-2-a"], dm.out_eval["hom-2-a"])
    assert {f: os.stat(f).st_mtime_ns for f in cached} == stamps  # served from the cache, not recomputed


@pytest.mark.parametrize("opts", [
    {},
    {"generator": None},
    {"control": "target_only"},
    {"control": "shuffled", "assembly": "concat", "view": "probs"},
    {"schedule": "two_stage", "stage1_epochs": 1, "assembly": "mlp", "ls_form": "infonce", "li_form": "repel"},
])
def test_module_trains_and_reports_pair_metrics(mgmp_pool, opts):
    dm = ModelPoolDataModule(str(mgmp_pool), view=opts.pop("view", "logits"), batch_size=16, episodes_per_epoch=4,
                             eval_points=20)
    dm.setup()
    pl.seed_everything(0)
    model = MGMPModule(dm.output_dims, generator_kwargs=GEN, z_dim=16, view=dm.hparams.view, **opts)
    before = [p.detach().clone() for p in model.classifier.parameters()]
    trainer = _trainer(max_epochs=2)
    trainer.fit(model, dm)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.classifier.parameters()))
    res = trainer.test(model, dm, verbose=False)[0]
    assert {"test/frag_acc", "test/frag_acc_std", "test/model_acc", "test/model_auroc", "test/frag_auroc"} <= set(res)
    assert 0.0 <= res["test/frag_acc"] <= 1.0 and len(model.last_eval["pair_acc"]) == 2
    assert set(model.last_eval["model_scores"]) == {"hom-2-a", "hom-2-b", "non-2-a", "non-2-b"}


def test_family_holdout_trains_each_family_against_its_own_source(tmp_path):
    """Two source families: hold one out, train on the other with its own source's outputs."""
    from model_pool.builder import build_pool
    from model_pool.plan import parse_plan

    data = {"dataset": "digits", "data": {"n_train": 200, "n_test": 40}}
    plan = {"defaults": {"epochs": 2}, "models": [
        {"id": "src-{s}", "recipe": "scratch", "arch": "small_cnn", "arch_kwargs": GEN, **data,
         "tags": {"role": "source"}, "grid": {"s": [{"name": "a", "seed": 0}, {"name": "b", "seed": 1}]}},
        {"id": "src-{s}-ft{v}", "recipe": "finetune", "parent": "src-{s}", **data, "grid": {"s": ["a", "b"], "v": [1, 2]}},
        {"id": "ind-{seed}", "recipe": "scratch", "arch": "small_cnn", "arch_kwargs": GEN, **data, "grid": {"seed": [5, 6]}},
        {"id": "ind-tagged", "recipe": "scratch", "arch": "small_cnn", "arch_kwargs": GEN, **data, "seed": 7,
         "tags": {"role": "independent"}},  # lineage plans tag their independents
    ]}
    assert build_pool(parse_plan(plan), tmp_path / "fam").ok
    dm = ModelPoolDataModule(str(tmp_path / "fam"), source="src-b", holdout="family", eval_points=10, batch_size=8)
    dm.setup()
    assert set(dm.train_pairs) == {("src-a", "digits")}
    hom, non = dm.train_pairs[("src-a", "digits")]
    assert sorted(hom) == ["src-a-ft1", "src-a-ft2"] and sorted(non) == ["ind-5", "ind-6", "ind-tagged"]
    assert {h for h, _ in dm.eval_pairs} == {"src-b-ft1", "src-b-ft2"}  # the held-out family unseen in training
    assert {n for _, n in dm.eval_pairs} <= {"src-a-ft1", "src-a-ft2", "ind-5", "ind-6", "ind-tagged"}
    batch = next(iter(dm.train_dataloader()))
    rows_of = lambda y, table: (y[:, None, :] == table[None]).all(-1).any(1)  # noqa: E731
    assert rows_of(batch["y_s"], dm.out_train["src-a"]).all()  # the training family's own source
    assert not rows_of(batch["y_s"], dm.out_train["src-b"]).any()


def test_fragment_accuracy_is_the_pair_formula():
    """(A_o + A_n) / 2N on a hand-made batch with a classifier that ignores its input."""
    model = MGMPModule([4], generator=None, z_dim=4)
    with torch.no_grad():
        for p in model.classifier.parameters():
            p.zero_()
        model.classifier.net[-1].bias.fill_(1.0)  # every fragment p = sigmoid(1) > 0.5: A_o = N, A_n = 0
    batch = {"x": torch.zeros(6, 1), "y_s": torch.randn(6, 4), "y_t": torch.randn(6, 4), "y_n": torch.randn(6, 4), "pair": 0}
    model.trainer = type("T", (), {"datamodule": None})()
    model._eval_step(batch)
    assert evaluate(model._records, {"h0"}).pair_acc == [0.5]


def test_cli_fit_with_config_then_provenance(mgmp_pool, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", _repo("configs/mgmp/digits.yaml"),
            "--data.pool_dir", str(mgmp_pool), "--data.plan", "null", "--data.eval_points", "20",
            "--data.episodes_per_epoch", "3", "--model.generator_kwargs", json.dumps(GEN), "--trainer.max_epochs", "1",
            "--trainer.check_val_every_n_epoch", "1", "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)]
    assert main(args) == 0
    ckpt = glob.glob(str(tmp_path / "**" / "*.ckpt"), recursive=True)[0]
    out = tmp_path / "p.json"
    assert main(["provenance", f"{mgmp_pool}::source", f"{mgmp_pool}::hom-2-a", "--ckpt", ckpt, "--points", "30",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["n_fragments"] == 30 and 0 <= res["probability"] <= 1 and isinstance(res["decision"], bool)
    assert main(["provenance", f"{mgmp_pool}::source", f"{mgmp_pool}::hom-2-a", "--ckpt", str(tmp_path / "none.ckpt")]) == 2


def _repo(rel):
    from pathlib import Path

    return str(Path(__file__).resolve().parents[2] / rel)


@pytest.mark.parametrize("config, overrides", [
    ("configs/mgmp/digits.yaml", {}),
    ("configs/mgmp/digits_features.yaml", {}),
    ("configs/mgmp/lineage_family.yaml", {"--data.holdout": "split", "--data.source": "source"}),
    ("configs/mgmp/cifar_resnet50.yaml", {"--model.generator_kwargs": json.dumps({"in_channels": 1, "small_input": True})}),
])
def test_configs_fast_dev_run(mgmp_pool, tmp_path, monkeypatch, config, overrides):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", _repo(config), "--data.pool_dir", str(mgmp_pool), "--data.plan", "null",
            "--data.eval_points", "20", "--trainer.fast_dev_run", "true", "--trainer.logger", "false"]
    for k, v in overrides.items():
        args += [k, v]
    assert main(args) == 0


def test_text_config_instantiates_its_generator(mgmp_pool, tmp_path, monkeypatch):
    from mgmp.learned.lightning_cli import MGMPCLI

    monkeypatch.chdir(tmp_path)
    cli = MGMPCLI(MGMPModule, ModelPoolDataModule, run=False, args=[
        "--config", _repo("configs/mgmp/agnews_distilbert.yaml"), "--data.pool_dir", str(mgmp_pool),
        "--model.generator_kwargs", json.dumps({"vocab_size": 100, "max_length": 16}), "--trainer.logger", "false"])
    assert type(cli.model.generator.encoder).__name__ == "DistilBertModel"


def test_wandb_offline_run_and_csv_fallback(mgmp_pool, tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.chdir(tmp_path)
    base = ["fit", "--config", _repo("configs/mgmp/digits.yaml"), "--data.pool_dir", str(mgmp_pool), "--data.plan", "null",
            "--data.eval_points", "20", "--data.episodes_per_epoch", "2", "--trainer.max_epochs", "1",
            "--trainer.check_val_every_n_epoch", "1", "--model.generator_kwargs", json.dumps(GEN)]
    assert main(base) == 0
    runs = glob.glob(str(tmp_path / "runs" / "wandb" / "offline-run-*" / "*.wandb"))
    assert runs
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert main(base + ["--trainer.default_root_dir", str(tmp_path / "csv")]) == 0
    metrics = glob.glob(str(tmp_path / "runs" / "lightning_logs" / "*" / "metrics.csv"))
    assert metrics and "val/frag_acc" in open(metrics[0]).read()
    log_dir = os.path.dirname(metrics[0])
    assert os.path.getsize(os.path.join(log_dir, "dna_tsne.png")) > 1000
    assert "hom-2-a,homologous" in open(os.path.join(log_dir, "model_scores.csv")).read()
