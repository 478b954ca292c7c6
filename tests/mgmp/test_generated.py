"""The per-source detector (``generated``): trained once per source on its generated descendants and independents."""
import pytest
import torch

from mgmp.scores import compute, create_score, load_pair
from mgmp.scores.generated import Generated, rank_correlation
from model_pool.pool import Pool

SMALL = {"n_points": 60, "steps": 3, "n_surrogates": 2, "n_independent": 2, "chunks": 2}


def test_rank_correlation_is_spearman_per_row():
    a = torch.tensor([[0.1, 0.5, 0.2, 0.9], [1.0, 2.0, 3.0, 4.0]])
    b = torch.tensor([[1.0, 3.0, 2.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    assert rank_correlation(a, b).tolist() == pytest.approx([1.0, -1.0])


@pytest.fixture(scope="module")
def pool(lineage_copy):
    return lineage_copy


def test_a_fine_tune_scores_above_independents_and_the_detector_is_fit_once(pool, monkeypatch):
    method = create_score("generated", **SMALL)
    with Pool.open(pool) as p:
        child = compute(method, load_pair(p.ref("sa"), p.ref("sa-ft"), pool=p), cache=False)
        monkeypatch.setattr(Generated, "detector", lambda *a: pytest.fail("detector refit for a second suspect"))
        others = [compute(method, load_pair(p.ref("sa"), p.ref(m), pool=p), cache=False) for m in ("ind-e1", "ind-e2")]
    assert all(child.value > o.value for o in others), (child.value, [o.value for o in others])
    assert child.extra["agreement_test"] >= max(o.extra["agreement_test"] for o in others)
    assert {r["kind"] for r in child.extra["references"]} == {"lineage", "surrogate", "independent-surrogate"}
    assert "rank_correlation_noise" in child.extra


def test_a_labels_only_suspect_gets_the_label_detector_and_another_task_is_refused(pool):
    from model_pool.errors import NotApplicable

    method = create_score("generated", **SMALL)
    with Pool.open(pool) as p:
        pair = load_pair(p.ref("sa"), p.ref("sa-q8"), pool=p)
        pair.suspect.labels_only = True
        result = compute(method, pair, cache=False)
        assert 0 <= result.value <= 1 and not any(k.startswith("rank_correlation") for k in result.extra)
        with pytest.raises(NotApplicable, match="output space"):
            compute(method, load_pair(p.ref("sa"), p.ref("sa-tr"), pool=p), cache=False)
