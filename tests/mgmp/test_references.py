"""The shared reference stage (``mgmp.scores.references``): which models are generated for a source, and once."""
import pytest
import torch

from mgmp.representations.outputs import labels
from mgmp.scores import load_pair
from mgmp.scores.references import build_references, reference_specs
from model_pool.pool import Pool


def test_surrogates_are_students_in_each_architecture_and_independents_follow_them(tiny_pool):
    with Pool.open(tiny_pool) as pool:
        card = pool.load("src")[1]
    assert card.arch == "small_cnn"
    surrogates = reference_specs(card, "surrogate", 10)
    assert [(r.relation, r.arch, r.params.get("outputs", r.params.get("temperature"))) for r in surrogates] == [
        ("distill", "small_cnn", 2.0), ("extract", "mlp", "probabilities"), ("extract", "mlp", "labels"),
        ("distill", "small_cnn", 8.0)]
    assert surrogates[1].arch_kwargs == {"in_channels": 1, "image_size": 8}
    independents = reference_specs(card, "independent-surrogate", 3, seed=7)
    assert [(r.relation, r.arch, r.seed) for r in independents] == [("scratch", "small_cnn", 7), ("scratch", "mlp", 8),
                                                                    ("scratch", "small_cnn", 9)]
    assert len({r.seed for r in surrogates}) == 4 and reference_specs(card, "lineage", 5)[0].relation == "finetune"
    with pytest.raises(ValueError, match="unknown reference kind"):
        reference_specs(card, "cousins", 1)


def test_cae_and_generated_share_their_students_and_independents_at_the_defaults(tiny_pool):
    from mgmp.scores import create_score

    with Pool.open(tiny_pool) as pool:
        card = pool.load("src")[1]
    surrogates, independents = create_score("cae").references(card)
    generated = create_score("generated").references(card)
    assert set(surrogates) | set(independents) <= set(generated)
    assert {r.kind for r in set(generated) - set(surrogates) - set(independents)} == {"lineage"}


def test_a_labels_only_thief_is_trained_once_and_reloaded(tiny_pool, tmp_path, monkeypatch):
    from mgmp.scores import references

    with Pool.open(tiny_pool) as pool:
        pair = load_pair(pool.ref("src"), pool.ref("src"), pool=pool)
    card = pair.source_card
    spec = [r for r in reference_specs(card, "surrogate", 3) if r.params.get("outputs") == "labels"]
    spec = [type(spec[0])(**{**spec[0].to_dict(), "params": {**spec[0].params, "epochs": 3}})]
    (thief,) = build_references(pair.source, card, pair.source_data, spec, tmp_path)
    x = pair.source_data.x_test
    agreement = float((labels(thief, x) == labels(pair.source, x)).float().mean())
    assert sum(p.numel() for p in thief.parameters()) != sum(p.numel() for p in pair.source.parameters())  # an MLP
    assert agreement > 0.5, agreement
    monkeypatch.setattr(references, "run_recipe", lambda *a: pytest.fail("reference retrained"))
    (again,) = build_references(pair.source, card, pair.source_data, spec, tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(thief.state_dict().values(), again.state_dict().values()))
