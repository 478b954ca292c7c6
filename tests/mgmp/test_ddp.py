"""MGMP under Lightning DDP on CPU: ``configs/mgmp/ddp.yaml`` on two gloo processes, against its single-process twin."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler

from mgmp.cli import main
from mgmp.learned.datamodule import EpisodeDataset
from mgmp.learned.evaluation import PairRecord, evaluate, gather_records

REPO = Path(__file__).resolve().parents[2]
GEN = {"in_channels": 1, "image_size": 8, "width": 8}


def test_ranks_share_out_exactly_the_single_process_episodes():
    """Under a shuffled DistributedSampler the two ranks' episodes of an epoch are the one-process episodes."""
    x = torch.arange(40.0).reshape(40, 1)
    out = {m: torch.arange(40.0).reshape(40, 1) + k for k, m in enumerate(["s", "h", "n"])}
    groups = {("s", "t"): (["h"], ["n"])}
    for epoch in (0, 1, 2):
        one = EpisodeDataset(x, out, groups, 4, 6, seed=0, epoch=lambda: epoch)
        ref = sorted(tuple(one[i]["x"].flatten().tolist()) for i in range(6))
        ranks = []
        for rank in (0, 1):
            ds = EpisodeDataset(x, out, groups, 4, 6, seed=0, epoch=lambda: epoch)
            sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
            sampler.set_epoch(epoch)
            ranks += [tuple(ds[i]["x"].flatten().tolist()) for i in sampler]
        assert sorted(ranks) == ref


def test_gathered_records_drop_padding_repeats_and_keep_pair_order():
    rec = lambda i, p: PairRecord(i, f"h{i}", f"n{i}", torch.full((4,), p), torch.full((4,), 1 - p), {})  # noqa: E731
    records = gather_records([rec(1, 0.9), rec(0, 0.2), rec(1, 0.9)])  # DistributedSampler pads with repeats
    assert [r.pair for r in records] == [0, 1]
    ev = evaluate(records, {"h0", "h1"})
    assert ev.pair_acc == [0.0, 1.0] and ev.metrics["frag_acc"] == 0.5 and ev.model_scores["h1"] == pytest.approx(0.9)


@pytest.mark.slow
def test_ddp_fit_runs_two_processes_and_matches_single_process(mgmp_pool, tmp_path, monkeypatch):
    """DDP (2 ranks x 1 episode per step) against its twin (1 process x 2 accumulated episodes per step):
    both take 40 optimizer steps over the same 80 episodes and start from the same weights. They differ
    only in which episodes share a step (Lightning shuffles the DDP sampler), dropout masks, and BatchNorm
    running statistics (DDP keeps rank 0's). Measured on seeds 0-4 (2-core CPU): DDP's final train/loss
    is 0.021-0.049 above the twin's while a change of seed moves either by up to 0.25; val/frag_acc
    differs by at most 0.05 (one pair's threshold flips; 1/40 per fragment); both AUROCs are 1.0.
    Tolerances: 0.1 on train/loss (twice the largest measured gap, well inside the seed spread),
    0.1 on val/frag_acc, 0.05 on the AUROCs."""
    monkeypatch.chdir(tmp_path)
    tiny = ["--config", str(REPO / "configs/mgmp/ddp.yaml"), "--data.pool_dir", str(mgmp_pool), "--data.plan", "null",
            "--data.eval_points", "20", "--data.episodes_per_epoch", "20", "--data.batch_size", "16",
            "--model.generator_kwargs", json.dumps(GEN), "--model.z_dim", "16", "--trainer.max_epochs", "4",
            "--trainer.check_val_every_n_epoch", "4", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_checkpointing", "false"]
    run = subprocess.run([sys.executable, "-m", "mgmp.cli", "fit", *tiny, "--trainer.default_root_dir", str(tmp_path / "ddp")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert main(["fit", *tiny, "--trainer.devices", "1", "--trainer.strategy", "auto", "--trainer.accumulate_grad_batches", "2",
                 "--trainer.default_root_dir", str(tmp_path / "single")]) == 0
    ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    one = json.loads((tmp_path / "single" / "summary.json").read_text())
    assert ddp["world_size"] == 2 and ddp["strategy"] == "DDPStrategy" and len(set(ddp["pids"])) == 2
    assert ddp["train_batches_per_rank"] == [10, 10] and one["train_batches_per_rank"] == [20] and one["world_size"] == 1
    assert ddp["global_step"] == one["global_step"] == 40
    a, b = ddp["metrics"], one["metrics"]
    assert abs(a["train/loss"] - b["train/loss"]) <= 0.1
    assert abs(a["val/frag_acc"] - b["val/frag_acc"]) <= 0.1
    for k in ("val/frag_auroc", "val/model_auroc"):
        assert abs(a[k] - b[k]) <= 0.05, k
