"""Conferrable adversarial examples (``cae``): fingerprints generated once per source from the shared references."""
import pytest
import torch

from mgmp.representations.outputs import labels
from mgmp.scores import compute, create_score, load_pair
from mgmp.scores.cae import CAE
from model_pool.errors import BadInput, NotApplicable
from model_pool.pool import Pool

# tiny: 2 + 2 references, 60 candidates, 20 steps (the tiny pool's weak models reach a low σ: no threshold)
SMALL = {"n_candidates": 60, "steps": 20, "lr": 0.02, "eps": 0.25, "n_surrogates": 2, "n_independent": 2,
         "n_fingerprints": 30, "min_conferrability": 0.0}


@pytest.fixture(scope="module")
def pool(lineage_copy):
    return lineage_copy


def test_a_fine_tune_keeps_the_fingerprint_independents_do_not_and_it_is_generated_once(pool, monkeypatch):
    method = create_score("cae", **SMALL)
    with Pool.open(pool) as p:
        child = compute(method, load_pair(p.ref("sa"), p.ref("sa-ft"), pool=p), cache=False)
        assert list((pool / "cache" / "fingerprints").glob("cae-fingerprints-*.safetensors"))
        monkeypatch.setattr(CAE, "_generate", lambda *a: pytest.fail("fingerprints regenerated for a second suspect"))
        others = [compute(method, load_pair(p.ref("sa"), p.ref(m), pool=p), cache=False) for m in ("ind-e1", "ind-e2")]
        copy = compute(method, load_pair(p.ref("sa"), p.ref("sa-q8"), pool=p), cache=False)
    assert all(child.value > o.value + 0.1 for o in others), (child.value, [o.value for o in others])
    assert copy.value >= 0.9 and child.higher_is_related
    assert 0 < child.extra["n_fingerprints"] <= SMALL["n_fingerprints"]
    assert child.extra["n_fingerprints"] == others[0].extra["n_fingerprints"]
    assert 0 < child.extra["conferrability"] <= 1
    kinds = [r["kind"] for r in child.extra["references"]]
    assert kinds == ["surrogate"] * 2 + ["independent-surrogate"] * 2
    assert child.extra["generation"]["eps"] == SMALL["eps"] and child.extra["queries"] == child.extra["n_fingerprints"]


def test_every_fingerprint_is_adversarial_for_the_source_within_eps_and_ranked(pool):
    method = create_score("cae", **SMALL)
    with Pool.open(pool) as p:
        pair = load_pair(p.ref("sa"), p.ref("ind-e1"), pool=p)
        fp = method.fingerprints(pair)
    x = fp[:, :-3].reshape(len(fp), *pair.source_data.x_test.shape[1:])
    idx, y, sigma = fp[:, -3].long(), fp[:, -2].long(), fp[:, -1]
    x0 = method.candidates(pair.source_data)[idx]
    assert len(fp) > 0 and len(set(idx.tolist())) == len(fp)
    assert (x - x0).abs().max() <= SMALL["eps"] + 1e-6 and x.min() >= 0 and x.max() <= 1
    assert torch.equal(labels(pair.source, x), y)
    assert (labels(pair.source, x0) != y).all()
    assert (sigma[:-1] >= sigma[1:]).all() and (sigma > 0).all()


def test_other_output_spaces_text_sources_and_no_survivors_are_not_applicable(pool):
    with Pool.open(pool) as p:
        with pytest.raises(NotApplicable, match="output space"):
            compute(create_score("cae", **SMALL), load_pair(p.ref("sa"), p.ref("sa-tr"), pool=p), cache=False)
        text = load_pair(p.ref("sa"), p.ref("ind-e1"), pool=p)
        text.source_card.input = {**text.source_card.input, "kind": "text"}
        with pytest.raises(NotApplicable, match="token ids"):
            compute(create_score("cae", **SMALL), text, cache=False)
        never = create_score("cae", **{**SMALL, "steps": 1, "min_conferrability": 1.0})
        with pytest.raises(NotApplicable, match="none of the source's 60 candidates"):
            compute(never, load_pair(p.ref("sa"), p.ref("ind-e1"), pool=p), cache=False)


@pytest.mark.parametrize("bad", [{"eps": 0.0}, {"eps": 1.5}, {"n_fingerprints": 0}, {"min_conferrability": 1.5},
                                 {"alpha": -1.0}, {"steps": 0}, {"eps": "0.1"}])
def test_bad_params_are_refused(bad):
    with pytest.raises(BadInput):
        create_score("cae", **bad)
