"""Verdicts that travel (SPEC §13): each score against the source's own null, the fused test at a stated level,
the calibration shipped in the package, and the zero-setup verdict from the CLI."""
import json
import math
import shutil
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from mgmp.bench import transfer
from mgmp.calibration import null as null_mod
from mgmp.calibration import verdict as verdict_mod
from mgmp.calibration.domains import DomainRows, fit_test, score_domain
from mgmp.calibration.fit import pair_specs
from mgmp.calibration.null import ScoreNull, source_null
from mgmp.calibration.verdict import FusedTest, compress, verdict
from mgmp.scores import load_pair
from model_pool.errors import BadInput
from model_pool.pool import Pool

CHEAP_NULL = {"sac": ("sac", {"n_points": 16}), "dna": ("dna", {"n_points": 16})}
RAW = {"weights": ("weights", {})}


def test_a_score_against_its_null_is_oriented_and_has_both_p_values():
    null = ScoreNull([0.2, 0.3, 0.25, 0.35], higher_is_related=True)
    s = null.statistic(0.9)
    sd = np.std([0.2, 0.3, 0.25, 0.35], ddof=1)
    assert s["z"] == pytest.approx((0.9 - 0.275) / sd)
    assert s["p"] == pytest.approx(stats.t.sf(s["z"] / math.sqrt(1.25), df=3))
    assert s["p_empirical"] == pytest.approx(1 / 5)  # above every reference: the smallest it can be
    assert null.statistic(0.3)["p_empirical"] == pytest.approx(3 / 5)  # 0.3 and 0.35 are at least as related
    distance = ScoreNull([0.8, 0.9, 0.85], higher_is_related=False)  # lower = related: small distances give z > 0
    assert distance.statistic(0.1)["z"] > 10 and distance.statistic(1.5)["z"] < 0
    assert math.isnan(ScoreNull([0.1], True).statistic(0.5)["z"])  # one reference gives no spread
    assert ScoreNull([0.5, 0.5, 0.5], True).sd == null_mod.SD_FLOOR


def test_a_null_of_references_unlike_the_source_is_not_read():
    nulls = {"sac": ScoreNull([0.1, 0.2], True)}
    made_alike = null_mod.SourceNull(2, nulls, accuracy={"source": [0.9, 0.8], "references": [[1.0, 0.85], [0.95, 0.7]]})
    assert made_alike.unlike_source is None
    untrained = null_mod.SourceNull(2, nulls, accuracy={"source": [0.1, 0.1], "references": [[1.0, 0.12], [0.9, 0.1]]})
    assert "0.95 train accuracy" in untrained.unlike_source
    assert null_mod.SourceNull(2, nulls).unlike_source is None  # unknown (no labels): read as before
    assert verdict_mod.weights_alone(0.97)[0] and not verdict_mod.weights_alone(0.02)[0]
    assert verdict_mod.weights_alone(math.nan)[1].startswith("cannot tell")


def test_the_fused_test_holds_its_level_on_independents_it_was_not_fit_on():
    rng = np.random.default_rng(0)
    cols = {f"s{i}": (f"s{i}", {}) for i in range(3)}

    def draw(n, related):
        z = rng.normal(3 if related else 0, 1, (n, 3))
        return np.concatenate([compress(z), rng.uniform(0.5, 1, (n, 1)) if related else rng.normal(0, 0.02, (n, 1))], 1)

    x = np.concatenate([draw(300, True), draw(400, False)])
    related = np.r_[np.ones(300, bool), np.zeros(400, bool)]
    test = FusedTest.fit(x, related, cols, RAW)
    fresh = draw(4000, False)
    for alpha in (0.01, 0.05):
        fpr = (test.p_value(test.probability(fresh), alpha)[0] <= alpha).mean()
        assert fpr <= alpha + 0.01, (alpha, fpr)
    assert (test.p_value(test.probability(draw(200, True)))[0] <= 0.01).mean() > 0.9
    again = FusedTest.from_dict(json.loads(json.dumps(test.to_dict())))
    assert np.allclose(again.probability(fresh[:5]), test.probability(fresh[:5])) and again.columns == test.columns
    # too few independents for an empirical 1 %: the normal tail of their logit, said so
    few = FusedTest.fit(x[290:320], related[290:320], cols, RAW)
    assert few.min_alpha() > 0.01 and "normal tail" in few.p_value(0.99)[1]
    with pytest.raises(BadInput, match="both"):
        FusedTest.fit(x[:10], related[:10], cols, RAW)


def test_the_package_ships_a_default_fused_test_fit_on_several_domains():
    test = FusedTest.load()
    assert len(test.fitted_on["domains"]) >= 2 and set(test.raw_columns) == {"weights"}
    assert test.min_alpha() <= 0.01  # enough independents for an empirical p-value at the default level
    assert test.model.coef.shape == (len(test.columns),)
    assert verdict_mod.DEFAULT_PATH.parent.name == "calibration"


def test_the_null_is_built_once_per_source_and_a_pools_own_test_decides(tiny_pool, tmp_path, monkeypatch):
    pool_dir = tmp_path / "pool"
    shutil.copytree(tiny_pool, pool_dir)
    with Pool.open(pool_dir) as pool:
        pair = load_pair(pool.ref("src"), pool.ref("ft"), pool=pool)
        assert source_null(pair, 3, CHEAP_NULL, build=False) is None
        seen = []
        built = source_null(pair, 3, CHEAP_NULL, on_progress=lambda stage, i, n: seen.append(stage))
        assert "training references" in seen and len(built.nulls["sac"].finite) == 3
        monkeypatch.setattr(null_mod, "build_references", lambda *a, **k: pytest.fail("references retrained"))
        assert source_null(pair, 3, CHEAP_NULL, build=False).to_dict() == built.to_dict()
        specs = pair_specs(pool.registry)
        rows = score_domain(pool, specs, 3, CHEAP_NULL, RAW)
    assert rows.x.shape == (len(specs), 3) and rows.related.sum() == sum(s.related for s in specs)
    test = fit_test([rows], references=3)
    with Pool.open(pool_dir) as pool:
        derived = verdict(load_pair(pool.ref("src"), pool.ref("ft-q8"), pool=pool), test, references=3)
        independent = verdict(load_pair(pool.ref("src"), pool.ref("ind"), pool=pool), test, references=3)
    assert derived["derived"] and derived["verdict"] == "derived from the source"
    assert not independent["derived"] and independent["verdict"] == "not derived"
    assert independent["scores"]["dna"]["references"] == 3 and "normal tail" in independent["tail"]


def test_leave_one_domain_out_reports_each_domain_against_the_others():
    rng = np.random.default_rng(1)

    def domain(name, shift, sources=("s",)):
        n = 60
        related = np.arange(n) < 30
        x = np.c_[compress(rng.normal(np.where(related, 4, 0)[:, None] + shift, 1, (n, 2))), np.where(related, 0.9, 0.0)]
        rows = ["finetune"] * 20 + ["distill"] * 10 + ["independent: other source"] * 30
        return DomainRows(name, x, related, rows, ["calibration", "eval"] * 30, list(sources) * (n // len(sources)),
                          CHEAP_NULL, RAW, {"s": 2.0}, [0.1] * n)

    result = transfer.run([domain("a", 0), domain("b", 0.5), domain("c", -0.5)], alpha=0.05)
    assert [r["domain"] for r in result["domains"]] == ["a", "b", "c"] and result["pooled_independents"] == 90
    a = result["domains"][0]
    assert a["table"]["all weight-inheriting"]["n"] == 20 and a["table"]["all student"]["n"] == 10
    assert a["table"]["overall"]["acc"] > 0.9 and a["per_source_seconds"] == 2.0
    assert {"transferred", "own"} <= set(a["evaluation_split"])
    assert "| **overall** | 60 |" in transfer.markdown(result)
    # the MGMP head as the combiner: its independents' P out of fold (by source), shipped as JSON numbers
    both = transfer.run([domain("a", 0), domain("b", 0.5, ("s", "t"))], alpha=0.05, combiners=("logistic", "mgmp-head"))
    assert set(both["pooled"]) == {"logistic", "mgmp-head"} and "transferred (mgmp-head)" in transfer.markdown(both)
    assert both["domains"][0]["combiners"]["mgmp-head"]["table"]["overall"]["acc"] > 0.9
    head = fit_test([domain("b", 0.5)], combiner="mgmp-head")
    x = domain("a", 0).x
    assert np.allclose(FusedTest.from_dict(json.loads(json.dumps(head.to_dict()))).probability(x), head.probability(x))
    with pytest.raises(ValueError):
        transfer.run([domain("a", 0)])
    shipped = fit_test([domain("b", 0.5), domain("c", -0.5)])  # a new domain under a test fit elsewhere
    a = domain("a", 0)
    k = len(a.null_columns)  # the shipped test reads its columns by name, in whatever order a domain holds them
    swapped = replace(a, x=np.c_[a.x[:, :k][:, ::-1], a.x[:, k:]], null_columns=dict(reversed(a.null_columns.items())))
    assert (transfer.decisions(shipped, swapped, 0.05) == transfer.decisions(shipped, a, 0.05)).all()
    alone = transfer.run([a], alpha=0.05, shipped=shipped)["domains"][0]
    assert "table" not in alone and alone["shipped"]["table"]["overall"]["acc"] > 0.9
    assert alone["shipped"]["independents"] == 30 and "| relation | n | shipped |" in transfer.markdown(
        {"alpha": 0.05, "pooled_independents": 0, "domains": [alone]})


def test_a_fine_tune_of_a_public_backbone_gets_references_from_that_backbone(tmp_path, monkeypatch):
    """The null of a source built on a packaged pretrained root: its start is found by its weights (or read off
    its card), and its independent references are other fine-tunes of that root, not models from scratch."""
    import torch

    from mgmp.representations.weights import weight_cosine
    from mgmp.scores.references import build_references, public_start, reference_specs
    from model_pool.archs import create_model
    from model_pool.card import ModelCard
    from model_pool.data import load_dataset
    from model_pool.recipes import RecipeContext, run_recipe
    from tests.model_pool.test_real_image import RGB32, TINY, _package_state

    torch.save(_package_state(), tmp_path / "efficientnet-lite0.pth")
    monkeypatch.setenv("MGMP_REAL_DIR", str(tmp_path))
    root = "real:efficientnet-lite0"
    data = load_dataset("digits", **{**RGB32, "n_train": 40, "n_test": 20})
    params = {"epochs": 1, "lr": 1e-3}
    src = run_recipe("scratch", RecipeContext(data, arch="efficientnet_lite0", arch_kwargs={**TINY, "pretrained": root},
                                              seed=0, params=params))
    card = ModelCard("efficientnet_lite0", 10, data.input, dict(TINY), recipe={"params": params}, sha256="1" * 64)
    assert public_start(src, card) == root
    assert public_start(create_model("efficientnet_lite0", 10, **TINY), ModelCard(**{**card.__dict__, "sha256": None})) is None
    assert public_start(src, ModelCard(**{**card.__dict__, "sha256": None, "recipe": {"init": "real:x"}})) == "real:x"
    spec = reference_specs(card, "independent", 1, seed=5000, start=root)
    assert spec[0].arch_kwargs == {**TINY, "pretrained": root} and spec[0].relation == "scratch"
    sibling = build_references(src, card, data, spec, tmp_path / "refs")[0]
    base = create_model("efficientnet_lite0", 10, **TINY, pretrained=root)
    assert weight_cosine(sibling, base)[0] > 0.5 > weight_cosine(create_model("efficientnet_lite0", 10, **TINY), base)[0]
