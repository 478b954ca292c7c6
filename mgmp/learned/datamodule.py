"""``ModelPoolDataModule``: MGMP episodes over a model pool (SPEC §5).

The source's training data is D_s. Pool models split by the registry's ``split`` column (default
``pool`` for training, ``eval`` for held-out evaluation tasks) or by family; homologous means the
source is an ancestor. Each training batch is one episode: B points of D_s with the outputs of the
source, one homologous and one non-homologous pool model (drawn from one task when
``pair_within_task``). Each evaluation batch is one evaluation pair (a homologous and a
non-homologous held-out model of the same task) on ``eval_points`` test points of the source's task.
All outputs come from the pool's output cache (:meth:`model_pool.pool.Pool.outputs`, computed once).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from mgmp.scores.features import n_features, pool_features
from model_pool.builder import build_pool
from model_pool.data import load_dataset
from model_pool.errors import BadInput
from model_pool.plan import load_plan
from model_pool.pool import Pool
from model_pool.registry import PoolRegistry


class EpisodeDataset(Dataset):
    """``length`` random episodes per epoch; each item is a whole batch (use ``batch_size=None``).

    ``groups`` maps (source id, task) to (homologous ids, non-homologous ids) of that source. Epochs
    are drawn in order from one seeded stream and item ``i`` is episode ``i`` of the current epoch
    (``epoch()``), so under DDP, where a shuffled DistributedSampler gives each rank a share of the
    indices, the ranks together see exactly the episodes of one process, each once."""

    def __init__(self, x, out, groups, batch_size, length, seed, extras=None, epoch: Callable[[], int] = lambda: 0):
        self.x, self.out, self.extras = x, out, extras
        self.keys = sorted(groups)
        self.groups = groups
        self.batch_size, self.length = batch_size, length
        self.rng = np.random.default_rng(seed)
        self.epoch = epoch
        self._epochs: dict[int, list[tuple]] = {}

    def __len__(self) -> int:
        return self.length

    def _draw(self) -> tuple:
        src, task = self.keys[self.rng.integers(len(self.keys))]
        hom, non = self.groups[(src, task)]
        h, n = hom[self.rng.integers(len(hom))], non[self.rng.integers(len(non))]
        idx = torch.from_numpy(self.rng.choice(len(self.x), size=min(self.batch_size, len(self.x)), replace=False))
        return src, h, n, idx

    def _episodes(self, epoch: int) -> list[tuple]:
        if epoch not in self._epochs:
            if self._epochs and epoch < min(self._epochs):
                raise ValueError(f"episodes of epoch {epoch} were already released (now at epoch {min(self._epochs)})")
            while epoch not in self._epochs:  # the stream is consumed one whole epoch at a time, in order
                nxt = max(self._epochs, default=-1) + 1
                self._epochs = {nxt: [self._draw() for _ in range(self.length)]}
        return self._epochs[epoch]

    def __getitem__(self, i):
        src, h, n, idx = self._episodes(self.epoch())[i]
        item = {"x": self.x[idx], "y_s": self.out[src][idx], "y_t": self.out[h][idx], "y_n": self.out[n][idx]}
        if self.extras:
            item |= {"e_t": self.extras[(src, h)], "e_n": self.extras[(src, n)]}
        return item


class PairDataset(Dataset):
    """Fixed evaluation pairs (homologous id, non-homologous id), each on all evaluation points."""

    def __init__(self, x, out, source, pairs, extras=None):
        self.x, self.out, self.source, self.pairs, self.extras = x, out, source, pairs, extras

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i):
        h, n = self.pairs[i]
        item = {"x": self.x, "y_s": self.out[self.source], "y_t": self.out[h], "y_n": self.out[n], "pair": i}
        if self.extras:
            item |= {"e_t": self.extras[(self.source, h)], "e_n": self.extras[(self.source, n)]}
        return item


class ModelPoolDataModule(pl.LightningDataModule):
    def __init__(self, pool_dir: str, source: str = "source", view: str = "logits", train_split: str = "pool",
                 eval_split: str = "eval", holdout: str = "split", batch_size: int = 64, episodes_per_epoch: int = 100,
                 eval_points: int = 200, pair_within_task: bool = True, plan: str | None = None, seed: int = 0,
                 extra_scores: dict[str, dict] | None = None):
        """``holdout``: ``split`` (registry split column) or ``family`` (``source`` names the held-out
        family's root; training uses the other families, see ``_split``). All sources must share D_s. ``plan``: a pool plan built (or resumed)
        into ``pool_dir`` by ``prepare_data`` when the pool is missing or incomplete. ``extra_scores``:
        pair scores ({method: params}) fed to the classifier beside the DNA (see mgmp.scores.features)."""
        super().__init__()
        self.save_hyperparameters()
        if holdout not in ("split", "family"):
            raise BadInput(f"holdout must be 'split' or 'family', got {holdout!r}")
        self._ready = False

    # -- data ------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Local rank 0 only, the other ranks wait: build the pool (when ``plan`` is set) and fill every
        disk cache (model outputs, pair scores) once, so that each rank's ``setup`` only reads them."""
        self._build_pool()
        self.setup()

    def _build_pool(self) -> None:
        if self.hparams.plan:
            with torch.random.fork_rng(devices=[]):  # recipes seed the global RNG; leave the run's stream as it was
                report = build_pool(load_plan(self.hparams.plan), self.hparams.pool_dir, workers=1, resume=True)
            if not report.ok:
                raise BadInput(f"pool build failed: {report.failed}")

    def setup(self, stage: str | None = None) -> None:
        """Load D_s, split the pool and read (or first compute) every output cache. Loading pool models
        draws random initialisations, so the global RNG is forked: a seeded run initialises MGMP the same
        whether or not the caches already existed."""
        if self._ready:
            return
        if not Pool.exists(self.hparams.pool_dir):
            self._build_pool()
        with torch.random.fork_rng(devices=[]):
            self._load()
        self._ready = True

    def _load(self) -> None:
        with Pool.open(self.hparams.pool_dir) as pool:
            self._load_from(pool)

    def _load_from(self, pool: Pool) -> None:
        reg = pool.registry
        src_row = reg.get(self.hparams.source)
        data = load_dataset(src_row.dataset, task=src_row.recipe.get("task"), **src_row.recipe.get("data", {}))
        self.input = data.input
        self.x_train = data.x_train
        self.x_eval = data.x_test[: self.hparams.eval_points]
        kind = "features" if self.hparams.view == "features" else "logits"
        self.train_pairs, self.eval_pairs = self._split(reg)
        ids = {self.hparams.source} | {s for s, _ in self.train_pairs} | \
              {m for hn in self.train_pairs.values() for g in hn for m in g} | {m for p in self.eval_pairs for m in p}
        train_cache, eval_cache = pool.outputs(self.x_train), pool.outputs(self.x_eval)
        self.out_train = {m: train_cache.get(m, kind) for m in ids}
        self.out_eval = {m: eval_cache.get(m, kind) for m in ids}
        self.eval_models = sorted({m for p in self.eval_pairs for m in p})
        self.extras = None
        if self.hparams.extra_scores:
            pairs = [(s, m) for (s, _), hn in self.train_pairs.items() for g in hn for m in g] + \
                    [(self.hparams.source, m) for m in self.eval_models]
            self.extras = pool_features(pool, pairs, self.hparams.extra_scores)

    def _split(self, reg: PoolRegistry):
        """Training groups {(source, task): (homologous, non-homologous)} and evaluation pairs of the source.

        ``split``: one source; its descendants are homologous. ``family``: the other roots tagged
        ``role: source`` train (each with its own descendants as homologous), the source's family is
        held out for evaluation against models outside it; models tagged ``role: independent`` are
        non-homologous on both sides (a plan with one training source has no other negatives)."""
        src = self.hparams.source
        family = self.hparams.holdout == "family"
        rows = [r for r in reg.models() if r.tags.get("role") is None or (family and r.tags.get("role") == "independent")]
        desc = {s: set(reg.descendants(s)) for s in {src} | {r.id for r in reg.models() if r.tags.get("role") == "source"}}
        if self.hparams.holdout == "split":
            train_sources = [src]
            train = [r for r in rows if r.split == self.hparams.train_split]
            evals = [r for r in rows if r.split == self.hparams.eval_split]
        else:
            train_sources = sorted(s for s in desc if s != src and not desc[s] & desc[src])
            train = [r for r in rows if r.id not in desc[src]]
            evals = rows
        groups = defaultdict(lambda: ([], []))
        for s in train_sources:
            for r in train:
                task = r.task if self.hparams.pair_within_task else "*"
                groups[(s, task)][0 if r.id in desc[s] else 1].append(r.id)
        train_groups = {k: (h, n) for k, (h, n) in groups.items() if h and n}
        eval_by_task = defaultdict(lambda: ([], []))
        for r in evals:
            eval_by_task[r.task][0 if r.id in desc[src] else 1].append(r.id)
        eval_pairs = []
        for t, (h, n) in sorted(eval_by_task.items()):
            if h and n:
                k = max(len(h), len(n))
                eval_pairs += [(sorted(h)[i % len(h)], sorted(n)[i % len(n)]) for i in range(k)]
        if not train_groups or not eval_pairs:
            raise BadInput(f"{self.hparams.pool_dir}: need homologous and non-homologous models for training and for "
                            f"evaluation (got {len(train_groups)} training groups, {len(eval_pairs)} eval pairs)")
        return train_groups, eval_pairs

    # -- what the model needs to know -------------------------------------------------------
    @property
    def n_extra(self) -> int:
        return n_features(self.hparams.extra_scores)

    @property
    def output_dims(self) -> list[int]:
        """Widths of every model's outputs in the chosen view (for the projections)."""
        self.setup()
        return sorted({int(t.shape[1]) for t in self.out_train.values()})

    # -- loaders -----------------------------------------------------------------------------
    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self):
        ds = EpisodeDataset(self.x_train, self.out_train, self.train_pairs, self.hparams.batch_size,
                            self.hparams.episodes_per_epoch, self.hparams.seed, self.extras, epoch=self._epoch)
        return DataLoader(ds, batch_size=None, shuffle=False)

    def val_dataloader(self):
        return DataLoader(PairDataset(self.x_eval, self.out_eval, self.hparams.source, self.eval_pairs, self.extras),
                          batch_size=None)

    def test_dataloader(self):
        return self.val_dataloader()

    def predict_dataloader(self):
        return self.val_dataloader()

