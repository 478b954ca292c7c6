import pytest
import torch

from mgmp.learned.fragments import Assembly, OutputView, ProvenanceClassifier
from mgmp.learned.generators import create_generator


def test_views_project_only_when_widths_differ():
    v = OutputView("probs", [10, 64, 5], z_dim=64)
    assert set(v.proj) == {"10", "5"}
    y = torch.randn(3, 10)
    assert v(y).shape == (3, 64)
    assert torch.allclose(v.proj["10"](torch.softmax(y, 1)), v(y))
    assert torch.equal(OutputView("logits", [64], 64)(torch.ones(2, 64)), torch.ones(2, 64))
    with pytest.raises(ValueError, match="no projection"):
        v(torch.randn(2, 7))
    with pytest.raises(ValueError, match="known: logits, probs, features"):
        OutputView("soft", [10], 8)


@pytest.mark.parametrize("kind, width", [("add", 8), ("concat", 16), ("mlp", 8)])
def test_assembly(kind, width):
    a = Assembly(kind, 8)
    z, y = torch.randn(4, 8), torch.randn(4, 8)
    o = a(z, y)
    assert o.shape == (4, width) and a.out_dim == width
    if kind == "add":
        assert torch.equal(o, z + y)


def test_classifier_has_three_layers_and_extra_feature_hook():
    c = ProvenanceClassifier(8, hidden=16, n_extra=3)
    assert sum(isinstance(m, torch.nn.Linear) for m in c.modules()) == 3
    o = torch.randn(5, 8)
    assert c(o, o, torch.randn(1, 3)).shape == (5,)
    with pytest.raises(ValueError, match="3 extra"):
        c(o, o)
    cmp = ProvenanceClassifier(8, hidden=16, pair="compare")
    assert cmp.net[0].in_features == 32 and cmp(o, o).shape == (5,)


def test_big_generators_on_tiny_inputs():
    g = create_generator("resnet50", 16, in_channels=1, small_input=True)
    assert g(torch.rand(2, 1, 8, 8)).shape == (2, 16)
    t = create_generator("distilbert", 16, vocab_size=50, max_length=12)
    ids = torch.randint(1, 50, (2, 12))
    assert t(ids).shape == (2, 16)
