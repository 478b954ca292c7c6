"""Pair scores on tiny models: batched primitives against hand-computed values, behaviour on the tiny pool."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from mgmp.calibration.fusion import FusedScore
from mgmp.calibration.thresholds import decide, fit_threshold
from mgmp.scores import compute, create_score, list_scores, load_pair
from mgmp.scores.baselines import correlation_matrix, cutmix
from mgmp.scores.boundary import boundary_distance
from mgmp.scores.closeness import farthest_points
from mgmp.scores.zest import align_classes, fit_linear, lime_kernel, lime_masks, masked_copies
from model_pool.errors import MgmpError, NotApplicable
from model_pool.io import load_model_dir
from model_pool.registry import PoolRegistry

FAST = {"closeness": {"k": 20, "candidates": 200}, "zest": {"n_points": 8, "n_masks": 64},
        "basin": {}, "modeldiff": {"n_points": 40}, "ipguard": {"n_points": 20, "steps": 20}, "sac": {"n_points": 20}}


def ref(pool, model_id):
    return f"{pool}::{model_id}"


def test_registry_lists_every_contract_method():
    from mgmp.cli import SCORE_METHODS

    assert list_scores() == ["basin", "cae", "closeness", "dataset_inference", "dna", "generated", "inheritance", "ipguard",
                             "lm_cka", "lm_inheritance", "lm_invariant", "lm_logprob", "lm_tokens",
                             "modeldiff", "sac", "weights", "zest"]
    assert list(SCORE_METHODS) == list_scores()  # the CLI's list, read without importing the scores


def test_boundary_distance_matches_a_known_threshold():
    thresholds = torch.tensor([0.3, 0.55, 0.9, 1.5])
    x = torch.stack([torch.zeros(4), thresholds], 1)  # the second coordinate carries each point's threshold
    direction = torch.tensor([[1.0, 0.0]] * 4)
    d, far = boundary_distance(lambda z: (z[:, 0] > z[:, 1]).long(), x, direction, d_max=1.0, steps=16, iters=12)
    assert torch.allclose(d[:3], thresholds[:3], atol=1 / 16 / 2**12 + 1e-6)
    assert torch.isinf(d[3]) and far.tolist() == [1, 1, 1, 0]


def test_farthest_points_are_spread():
    x = torch.tensor([[0.0], [0.1], [1.0], [0.5], [0.9]])
    assert farthest_points(x, 3).tolist() == [0, 2, 3]


def test_closeness_identity_and_black_box(tiny_pool):
    pair = load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "src"))
    res = create_score("closeness", generate=False, k=40).score(pair)
    assert res.extra["mean_gap"] == 0 and res.value == pytest.approx(res.extra["match_rate"]) and res.value > 0.8

    grad_seen = []

    class Spy(nn.Module):  # records whether the suspect is ever run with gradients
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            grad_seen.append(torch.is_grad_enabled())
            return self.m(x)

    pair.suspect = Spy(load_pair(ref(tiny_pool, "ft"), ref(tiny_pool, "ft")).source)
    create_score("closeness", generate=False, k=40).score(pair)
    assert grad_seen and not any(grad_seen)


def test_closeness_generated_set_separates_and_is_cached(tiny_pool, monkeypatch):
    method = create_score("closeness", **FAST["closeness"])
    s_ft = compute(method, load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "ft")), cache=False)
    s_ind = compute(method, load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "ind")), cache=False)
    assert s_ft.value > s_ind.value
    with PoolRegistry(tiny_pool) as reg:
        names = [r[0] for r in reg.conn.execute("SELECT name FROM probes WHERE name LIKE 'closeness-testset-%'")]
    assert names
    import mgmp.scores.closeness as closeness

    monkeypatch.setattr(closeness, "reference_models", lambda *a, **k: pytest.fail("test set regenerated"))
    again = compute(method, load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "ft")), cache=False)
    assert again.value == s_ft.value


def test_closeness_indirect_for_another_task_and_unknown_mapping(tiny_pool):
    pair = load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "tr-5way"))
    assert not pair.same_task
    res = create_score("closeness", **FAST["closeness"]).score(pair)
    assert res.extra["indirect"] and 0 <= res.value <= 1
    pair.suspect_data = None
    with pytest.raises(MgmpError, match="unknown output mapping"):
        create_score("closeness", **FAST["closeness"]).score(pair)


def test_score_cache_roundtrip(tiny_pool):
    method = create_score("modeldiff", **FAST["modeldiff"])
    pair = load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "ft-q8"))
    first = compute(method, pair)
    second = compute(method, pair)
    assert not first.cached and second.cached and second.value == first.value


def test_basin(tiny_pool):
    same = create_score("basin").score(load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "src")))
    assert same.value == pytest.approx(0, abs=1e-6)
    ind = create_score("basin").score(load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "ind")))
    ft = create_score("basin").score(load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "ft")))
    assert ind.value > ft.value and len(ind.extra["losses"]) == 11
    tr = create_score("basin").score(load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "tr-5way")))
    assert tr.extra["head"] == "refit"


def test_basin_refuses_other_architectures(tiny_pool):
    pair = load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "src"))
    pair.suspect_card = type(pair.suspect_card)(**{**pair.suspect_card.__dict__, "arch": "mlp"})
    with pytest.raises(NotApplicable, match="one architecture"):
        create_score("basin").score(pair)


def test_weight_cosine_sketch_and_transfer(tiny_pool):
    from mgmp.representations.weights import weight_cosine, weight_sketch

    value = {m: create_score("weights").score(load_pair(ref(tiny_pool, "src"), ref(tiny_pool, m))) for m in
             ("src", "ft", "ft-q8", "tr-5way", "ind")}
    assert value["src"].value == pytest.approx(1.0)
    assert min(value[m].value for m in ("ft", "ft-q8", "tr-5way")) > 0.5 > 0.2 > abs(value["ind"].value)
    assert value["tr-5way"].extra["shared_tensors"] == value["src"].extra["shared_tensors"] - 1  # the new head
    src, _ = load_model_dir(tiny_pool / "models" / "src")
    for m in ("ft", "tr-5way", "ind"):
        other, _ = load_model_dir(tiny_pool / "models" / m)
        exact = weight_cosine(src, other)[0]
        assert float(weight_sketch(src) @ weight_sketch(other)) == pytest.approx(exact, abs=0.25)
        assert float(weight_sketch(src, dim=1 << 14) @ weight_sketch(other, dim=1 << 14)) == pytest.approx(exact, abs=0.05)
    pair = load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "src"))
    pair.suspect = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with pytest.raises(NotApplicable, match="share no weight tensor"):
        create_score("weights").score(pair)


def test_lime_masks_and_apply():
    m = lime_masks([3, 5], 10, seed=0)
    assert m.shape == (2, 10, 5) and (m[:, 0, :3] == 1).all() and (m[0, :, 3:] == 0).all()
    expected = np.random.RandomState(1).randint(0, 2, 50).reshape(10, 5)
    assert (m[1, 1:].numpy() == expected[1:]).all()  # LIME's draw for point 1, seed + 1
    x = torch.arange(8.0).view(2, 1, 2, 2)
    seg = torch.tensor([[[0, 0], [1, 1]], [[0, 1], [2, 2]]])
    masks = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])  # one mask row per copy, copy r of point r
    out = masked_copies(x, seg, masks, torch.tensor([0, 1]), baseline=-1.0).view(2, 1, 2, 2)
    assert out[0].flatten().tolist() == [0, 1, -1, -1] and out[1].flatten().tolist() == [-1, 5, 6, 7]
    tokens = torch.tensor([[5, 6, 0]])
    assert masked_copies(tokens, torch.tensor([[0, 1, -1]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0]), 0).tolist() == [[0, 6, 0]]


def test_fit_linear_recovers_coefficients_and_matches_sklearn_ridge():
    from sklearn.linear_model import Ridge

    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 2, (3, 200, 4), generator=g).float()
    coef = torch.randn(3, 4, 2, generator=g)
    y = masks @ coef + 0.5
    assert torch.allclose(fit_linear(masks, y), coef, atol=1e-4)
    w = lime_kernel(masks)
    ours = fit_linear(masks, y, "lime", alpha=1.0, weights=w)
    for i in range(3):
        sk = Ridge(alpha=1.0).fit(masks[i].numpy(), y[i].numpy(), sample_weight=w[i].numpy())
        assert np.allclose(ours[i].numpy(), sk.coef_.T, atol=1e-4)


def test_lime_kernel_matches_lime_formula():
    from sklearn.metrics import pairwise_distances

    masks = lime_masks([6], 50, seed=3)
    d = pairwise_distances(masks[0].numpy(), masks[0, :1].numpy(), metric="cosine").ravel()
    assert np.allclose(lime_kernel(masks)[0].numpy(), np.sqrt(np.exp(-(d**2) / 0.25**2)), atol=1e-5)


def test_align_classes_recovers_a_permutation():
    sig = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(0))
    perm = torch.tensor([3, 0, 4, 1, 2])
    a, b = align_classes(sig, sig[..., perm])
    assert torch.equal(a, b)


def test_zest_identity_relative_and_ordering(tiny_pool):
    method = create_score("zest", **FAST["zest"])
    same = method.score(load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "src")))
    assert same.extra["distance"] == pytest.approx(0, abs=1e-6) and same.value == pytest.approx(0, abs=1e-5)
    ft = method.score(load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "ft")))
    ind = method.score(load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "ind")))
    assert ft.value < ind.value and ft.extra["reference_distance"] > 0
    tr = method.score(load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "tr-5way")))
    assert tr.extra["indirect"]


def test_zest_batching_and_adaptive_masks(tiny_pool):
    """The batch size changes how, not what (same signature, same cache key); adaptive L stops once the
    suspect's signature settles, fits both signatures on the masks used, and stays near the fixed-L distance."""
    pair = load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "ind"))
    small, big = create_score("zest", n_points=6, n_masks=200, batch_size=7), create_score("zest", n_points=6, n_masks=200)
    x, seg, masks = small.setup(pair)
    assert torch.allclose(small.signature(pair.source, x, seg, masks), big.signature(pair.source, x, seg, masks), atol=1e-6)
    assert small.params_hash() == big.params_hash()
    fixed = create_score("zest", n_points=6, n_masks=400, relative=False).score(pair)
    loose = create_score("zest", n_points=6, n_masks=400, relative=False, tolerance=0.5, mask_step=50).score(pair)
    strict = create_score("zest", n_points=6, n_masks=400, relative=False, tolerance=1e-12, mask_step=50).score(pair)
    assert fixed.extra["masks_used"] == 400 and loose.extra["masks_used"] == 100 and strict.extra["masks_used"] == 400
    assert strict.value == pytest.approx(fixed.value, rel=1e-4)
    assert loose.value == pytest.approx(fixed.value, rel=0.5) and loose.value != fixed.value
    # a suspect's truncated outputs are never taken for its full outputs when it becomes a source
    swapped = create_score("zest", n_points=6, n_masks=400, relative=False, tolerance=0.5, mask_step=50).score(
        load_pair(ref(tiny_pool, "ind"), ref(tiny_pool, "src")))
    assert swapped.extra["masks_used"] == 100


def test_forward_counter_counts_outermost_calls_of_the_suspect_only(tiny_pool):
    from mgmp.bench.floor import ForwardCounter, model_types

    a, _ = load_model_dir(tiny_pool / "models" / "src")
    b, _ = load_model_dir(tiny_pool / "models" / "ind")
    x = torch.rand(5, 1, 8, 8)
    with ForwardCounter(model_types(b), exclude=a) as counter, torch.no_grad():
        a(x), b(x), b.forward_features(x[:2])
        copy = __import__("copy").deepcopy(a)  # a model built from the source (basin's path) is counted
        copy(x[:3])
    assert counter.rows == 5 + 2 + 3


def test_baselines_identity_and_transfer(tiny_pool):
    same = load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "src"))
    assert create_score("modeldiff", **FAST["modeldiff"]).score(same).value == pytest.approx(1.0)
    assert create_score("ipguard", **FAST["ipguard"]).score(same).value == 1.0
    assert create_score("sac", **FAST["sac"]).score(same).value == pytest.approx(0.0)
    tr = load_pair(ref(tiny_pool, "src"), ref(tiny_pool, "tr-5way"))
    with pytest.raises(NotApplicable):
        create_score("ipguard").score(tr)
    assert np.isfinite(create_score("sac", **FAST["sac"]).score(tr).value)
    with pytest.raises(ValueError):
        create_score("sac", mode="x")


def test_cutmix_and_correlation():
    x = torch.stack([torch.zeros(1, 8, 8), torch.ones(1, 8, 8)])
    mixed = cutmix(x, 20, seed=0)
    assert mixed.shape == (20, 1, 8, 8) and set(mixed.unique().tolist()) <= {0.0, 1.0}
    c = correlation_matrix(torch.eye(3))
    assert torch.allclose(c, torch.eye(3, dtype=torch.float64))


def test_fit_threshold_and_decide_both_orientations():
    v, r = [0.1, 0.2, 0.8, 0.9], [False, False, True, True]
    t = fit_threshold(v, r, True)
    assert 0.2 < t < 0.8 and decide(0.85, t, True) and not decide(0.15, t, True)
    t2 = fit_threshold([0.9, 0.8, 0.2, 0.1], r, False)
    assert 0.2 < t2 < 0.8 and decide(0.15, t2, False) and not decide(float("nan"), t2, False)


def test_fused_score_handles_missing_and_roundtrips():
    rng = np.random.default_rng(0)
    related = np.array([True] * 20 + [False] * 20)
    a = np.where(related, 0.8, 0.2) + rng.normal(0, 0.05, 40)
    b = np.where(related, 0.1, 0.9) + rng.normal(0, 0.05, 40)  # lower = related
    b[::7] = np.nan
    values = np.stack([a, b], 1)
    fused = FusedScore(["a", "b"], [True, False]).fit(values, related)
    assert ((fused.predict_proba(values) >= 0.5) == related).mean() == 1.0
    again = FusedScore.from_dict(json.loads(json.dumps(fused.describe())))
    assert np.allclose(again.predict_proba(values), fused.predict_proba(values))


def _save(model, card, path):
    from model_pool.io import save_model_dir

    save_model_dir(model, card, path)
    return str(path)


@pytest.fixture(scope="module")
def bad_suspects(tiny_pool, tmp_path_factory):
    """Suspects a user might hand in: NaN weights, another input shape, an unknown output space."""
    from model_pool.archs import create_model
    from model_pool.card import ModelCard

    root = tmp_path_factory.mktemp("bad")
    model, card = load_model_dir(tiny_pool / "models" / "src")
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    plain = lambda **kw: ModelCard(**{"arch": card.arch, "num_classes": 10, "input": card.input,  # noqa: E731
                                      "arch_kwargs": card.arch_kwargs, **kw})
    rgb = {"in_channels": 3, "image_size": 8, "width": 8}
    return {
        "nan": _save(model, plain(), root / "nan"),
        "shape": _save(create_model("small_cnn", 10, **rgb),
                       plain(arch_kwargs=rgb, input={**card.input, "shape": [3, 8, 8]}), root / "shape"),
        "mapping": _save(create_model("small_cnn", 5, **card.arch_kwargs), plain(num_classes=5), root / "mapping"),
    }


@pytest.mark.parametrize("method, kind, msg", [
    ("closeness", "nan", "NaN"), ("zest", "nan", "NaN"), ("modeldiff", "nan", "NaN"),
    ("closeness", "shape", "cannot take inputs"), ("sac", "shape", "cannot take inputs"),
    ("closeness", "mapping", "unknown output mapping"),
])
def test_bad_suspects_get_one_line_and_exit_2(tiny_pool, bad_suspects, method, kind, msg, capsys):
    from mgmp.cli import main

    assert main(["score", method, f"{tiny_pool}::src", bad_suspects[kind], "--param", "k=20"
                 if method == "closeness" else "seed=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1


def test_score_cli_json_and_cache(tiny_pool, tmp_path, capsys):
    from mgmp.cli import main

    out = tmp_path / "s.json"
    args = ["score", "sac", f"{tiny_pool}::src", f"{tiny_pool}::soup", "--param", "n_points=20", "--json", str(out)]
    assert main(args) == 0
    first = json.loads(out.read_text())
    assert main(args) == 0
    second = json.loads(out.read_text())
    assert second["cached"] and second["value"] == first["value"] and first["params"]["n_points"] == 20
    assert main(["score", "sac", f"{tiny_pool}::src", f"{tiny_pool}::soup", "--param", "bogus"]) == 2


def test_zest_on_text_models_masks_tokens():
    from mgmp.scores.base import Pair
    from model_pool.archs import create_model
    from model_pool.card import ModelCard
    from model_pool.data import load_dataset

    data = load_dataset("synthetic-topics", task=0, n_train=50, n_test=20)
    kw = {"vocab_size": 512, "max_length": 48, "embed_dim": 16, "hidden_dim": 16}
    torch.manual_seed(0)
    a, b = create_model("bilstm", 4, **kw), create_model("bilstm", 4, **kw)
    card = ModelCard("bilstm", 4, data.input, kw, task="synthetic-topics/0")
    method = create_score("zest", n_points=4, n_masks=32, relative=False)
    same = method.score(Pair(a, a, card, card, data))
    other = method.score(Pair(a, b, card, card, data))
    assert same.value == pytest.approx(0, abs=1e-6) and other.value > 0.01
    assert same.extra["mean_segments"] == pytest.approx(float((data.x_test[:4] != 0).sum(1).float().mean()), rel=0.5)
    with pytest.raises(NotApplicable, match="token ids"):
        create_score("closeness").score(Pair(a, b, card, card, data))


def test_inheritance_tells_a_child_of_a_fine_tune_from_its_sibling(tiny_pool, tmp_path):
    """ft-q8 is made from ft: it carries what ft owns beyond its recipe (ρ ≈ 1); another fine-tune of src
    (a sibling of ft) carries none of it; an independent model does not even start from src (0)."""
    from mgmp.scores import task_data
    from model_pool.io import save_model_dir
    from model_pool.recipes import RecipeContext, run_recipe

    method = create_score("inheritance", n_references=2)
    child = method.score(load_pair(ref(tiny_pool, "ft"), ref(tiny_pool, "ft-q8")))
    src, src_card = load_model_dir(tiny_pool / "models" / "src")
    _, ft_card = load_model_dir(tiny_pool / "models" / "ft")
    ctx = RecipeContext(task_data(ft_card), parents=[src], parent_cards=[src_card], seed=77,
                        params=dict(ft_card.recipe["params"]))
    sibling = run_recipe("finetune", ctx)
    save_model_dir(sibling, dataclasses.replace(ft_card, seed=77), tmp_path / "sib")
    sib = method.score(load_pair(ref(tiny_pool, "ft"), str(tmp_path / "sib")))
    assert child.value > 0.9 and sib.value < 0.75, (child.value, sib.value)
    assert child.extra["recipe"] == "finetune" and len(child.extra["per_reference"]) == 2
    assert method.score(load_pair(ref(tiny_pool, "ft"), ref(tiny_pool, "ind"))).value == 0.0
    # outside a pool the starting point is given as --base; without it the score says what it needs
    models = tiny_pool / "models"
    outside = load_pair(str(models / "ft"), str(models / "ft-q8"), base=str(models / "src"))
    assert method.score(outside).value > 0.9
    with pytest.raises(NotApplicable, match="starting point"):
        method.score(load_pair(str(models / "ft"), str(models / "ft-q8")))
