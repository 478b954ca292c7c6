"""Dataset Inference (Blind Walk) on tiny models: the walk against a known boundary, the membership test on
an overfit source, the source-side cache, transfer suspects, parameters and refusals."""
import copy
import dataclasses
import math
import shutil

import pytest
import torch
from torch import nn

from mgmp.scores import compute, create_score, load_pair
from mgmp.scores.base import Pair
from mgmp.scores.dataset_inference import blind_walk, directions, order_statistics, welch_greater
from model_pool.archs import create_model
from model_pool.card import ModelCard
from model_pool.data import load_dataset
from model_pool.data.base import TaskData
from model_pool.errors import BadInput, NotApplicable
from model_pool.pool import Pool
from model_pool.train import fit

FAST = {"n_points": 20, "n_fit": 20, "k": 6}  # on the lineage pool (300 training, 120 test points)


class MeanThreshold(nn.Module):
    """Label 1 where an input's mean exceeds ``t``, else 0: its boundary along any direction is known."""

    def __init__(self, t: float):
        super().__init__()
        self.t = t

    def forward(self, x):
        m = x.flatten(1).mean(1)
        return torch.stack([torch.zeros_like(m), m - self.t], 1)


def test_blind_walk_finds_a_known_boundary_caps_and_zeroes_misclassified_points():
    x = torch.full((3, 1, 4, 4), 0.1)
    dirs = torch.stack([torch.ones(1, 4, 4), -torch.ones(1, 4, 4)])
    d = blind_walk(MeanThreshold(0.3), x, dirs, max_distance=0.5, bounds=(0.0, 1.0))
    assert d.shape == (3, 2)
    assert torch.allclose(d[:, 0], torch.full((3,), 0.2), atol=1e-3)  # mean 0.1 + d crosses 0.3 at d = 0.2
    assert (d[:, 1] == 0.5).all()  # clipped at 0, the mean never rises: capped
    y = torch.tensor([0, 1, 0])  # the model labels every point 0: the second is misclassified
    assert torch.equal(blind_walk(MeanThreshold(0.3), x, dirs, 0.5, (0.0, 1.0), y)[1], torch.zeros(2))
    # a threshold beyond the cap is never reached
    assert (blind_walk(MeanThreshold(0.9), x, dirs, 0.5, (0.0, 1.0)) == 0.5).all()


def test_directions_are_seeded_unit_rms_and_sorted_per_family():
    a = directions(6, (1, 8, 8), "mixed", seed=3)
    assert a.shape == (6, 1, 8, 8) and torch.equal(a, directions(6, (1, 8, 8), "mixed", seed=3))
    assert not torch.equal(a, directions(6, (1, 8, 8), "mixed", seed=4))
    assert torch.allclose(a.flatten(1).pow(2).mean(1), torch.ones(6))
    assert a[0].abs().max() <= 3 ** 0.5 + 1e-6  # uniform family (column 0): |U(-1, 1)| / RMS(1/sqrt 3)
    d = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])  # families: columns (0, 3), (1, 4), (2, 5)
    assert order_statistics(d, "mixed").tolist() == [[2.0, 5.0, 1.0, 4.0, 0.0, 3.0]]
    assert order_statistics(d, "gaussian").tolist() == [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]]


def test_welch_test_is_one_sided_and_gives_no_evidence_on_constant_samples():
    hi, lo = torch.tensor([3.0, 3.5, 4.0, 4.5]), torch.tensor([1.0, 1.5, 2.0, 2.5])
    assert welch_greater(hi, lo) < 0.01 and welch_greater(lo, hi) > 0.99
    assert welch_greater(torch.ones(5), torch.ones(5)) == 1.0


@pytest.fixture(scope="module")
def overfit():
    """An MLP that memorises 160 digits (train 100%, test ~90%), a copy of it fine-tuned on 160 other
    digits, and an independent MLP trained on those other digits (never on the source's)."""
    full = load_dataset("digits")
    perm = torch.randperm(len(full.x_train), generator=torch.Generator().manual_seed(0))
    own, other = perm[:160], perm[160:320]
    kw = {"in_channels": 1, "image_size": 8}

    def train(idx, seed, model=None, epochs=60, lr=0.01):
        torch.manual_seed(seed)
        model = model if model is not None else create_model("mlp", 10, **kw)
        return fit(model, full.x_train[idx], full.y_train[idx], epochs=epochs, lr=lr, seed=seed).eval()

    source = train(own, 0)
    tuned = train(other, 1, copy.deepcopy(source), epochs=5, lr=0.001)
    independent = train(other, 2)
    data = TaskData("digits", full.x_train[own], full.y_train[own], full.x_test, full.y_test, 10, dict(full.input))
    card = ModelCard("mlp", 10, dict(full.input), kw, recipe={"dataset": "digits"})
    return {name: Pair(source, model, card, card, data)
            for name, model in (("self", source), ("tuned", tuned), ("independent", independent))}


def test_an_overfit_source_and_its_fine_tuned_copy_are_flagged_an_independent_model_is_not(overfit):
    method = create_score("dataset_inference", n_points=100, n_fit=60, k=30)
    r = {name: compute(method, pair) for name, pair in overfit.items()}
    assert r["self"].extra["decision"] == "stolen" and r["tuned"].extra["decision"] == "stolen"
    assert r["independent"].extra["decision"] == "not shown"
    assert min(r["self"].value, r["tuned"].value) > r["independent"].value + 1.0
    for res in r.values():
        e = res.extra
        assert {"p_value", "decision", "alpha", "confidence_gap", "n_points", "n_fit", "fit_accuracy"} <= set(e)
        assert res.value == pytest.approx(min(300.0, -math.log10(e["p_value"])))
        assert e["alpha"] == 0.01 and e["n_points"] == 100 and e["n_fit"] == 60 and e["start"] == "label"
        assert e["queries"] > 2 * 100 * 30  # at least one scan per (point, direction), labels only
        assert (e["confidence_gap"] > 0) == (e["p_value"] < 0.5)
    # seeded: the same call gives the same result
    assert compute(method, overfit["self"]).value == r["self"].value


def test_source_side_is_cached_and_suspects_of_another_output_space_are_tested(lineage_pool, tmp_path):
    root = shutil.copytree(lineage_pool, tmp_path / "pool")  # isolated: the first call must build the cache
    method = create_score("dataset_inference", **FAST)
    with Pool.open(root) as pool:
        first = compute(method, load_pair(pool.ref("sa"), pool.ref("sa-ft"), pool=pool))
        assert first.extra["start"] == "label" and math.isfinite(first.value)
        pair = load_pair(pool.ref("sa"), pool.ref("ind-e1"), pool=pool)
        calls = []
        pair.source.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
        cached = compute(method, pair)
        assert calls == []  # directions and g came from the pool's cache: the source was not queried
        # the cached g is the one a fresh fit gives (the pair without its pool rebuilds it)
        fresh = compute(method, dataclasses.replace(pair, pool=None, source_id=None, suspect_id=None), cache=False)
        assert fresh.value == pytest.approx(cached.value) and len(calls) > 0
        # another output space (5 classes): walks start from the suspect's own label, the test still runs
        tr = compute(method, load_pair(pool.ref("sa"), pool.ref("sa-tr"), pool=pool))
        assert tr.extra["start"] == "prediction" and 0 <= tr.value <= 300 and 0 < tr.extra["p_value"] <= 1


@pytest.mark.parametrize("params", [{"alpha": 0}, {"alpha": 0.7}, {"noise": "pink"}, {"start": "truth"},
                                    {"n_points": 1}, {"k": 0}, {"max_distance": 0}])
def test_bad_parameters_are_refused(params):
    with pytest.raises(BadInput):
        create_score("dataset_inference", **params)


def test_small_splits_shrink_the_fit_set_or_refuse_and_text_is_not_applicable(lineage_pool):
    with Pool.open(lineage_pool) as pool:
        pair = load_pair(pool.ref("sa"), pool.ref("sa-q8"), pool=pool)
        with pytest.raises(BadInput, match="120 test points") as e:
            create_score("dataset_inference", n_points=119, k=3).score(pair)
        assert "\n" not in str(e.value)
        r = compute(create_score("dataset_inference", n_points=100, n_fit=200, k=3), pair, cache=False)
        assert r.extra["n_fit"] == 20 and "shrunk to 20" in r.extra["note"]
        text = dataclasses.replace(pair, source_card=dataclasses.replace(
            pair.source_card, input={"kind": "text", "shape": [16], "tokenizer": "bytes"}))
        with pytest.raises(NotApplicable, match="text"):
            create_score("dataset_inference").score(text)
