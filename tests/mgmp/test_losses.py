"""Losses against values computed by hand (explicit loops over the equations) on tiny tensors."""
import math

import pytest
import torch

from mgmp.learned.losses import loss_bce, loss_i, loss_s, weight_penalty


def cos(u, v):
    return float(u @ v / (u.norm() * v.norm()))


@pytest.fixture
def frags():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(3, 4, generator=g) for _ in range(3)]


def test_loss_s_paper_form_by_hand(frags):
    o_s, o_t, o_n = frags
    tau = 0.5
    total = 0.0
    for i in range(3):
        num = math.exp(cos(o_s[i], o_t[i]) / tau)
        den = sum(math.exp(cos(o_s[i], o_n[k]) / tau) for k in range(3))
        total += -math.log(num / den)
    assert loss_s(o_s, o_t, o_n, tau, reduction="sum") == pytest.approx(total, rel=1e-5)
    assert loss_s(o_s, o_t, o_n, tau, reduction="mean") == pytest.approx(total / 3, rel=1e-5)


def test_loss_s_infonce_form_by_hand(frags):
    o_s, o_t, o_n = frags
    tau, total = 0.2, 0.0
    for i in range(3):
        num = math.exp(cos(o_s[i], o_t[i]) / tau)
        den = num + sum(math.exp(cos(o_s[i], o_n[k]) / tau) for k in range(3))
        total += -math.log(num / den)
    got = loss_s(o_s, o_t, o_n, tau, reduction="sum", form="infonce")
    assert got == pytest.approx(total, rel=1e-5) and got > 0


def test_loss_i_by_hand(frags):
    o_s, o_t, o_n = frags
    tau, total = 0.3, 0.0
    for i in range(3):
        for k in range(3):
            if k != i:
                total += -math.log(sum(math.exp(cos(o[i], o[k]) / tau) for o in (o_s, o_t, o_n)))
    assert loss_i(o_s, o_t, o_n, tau, reduction="sum") == pytest.approx(total, rel=1e-5)
    assert loss_i(o_s, o_t, o_n, tau, reduction="mean") == pytest.approx(total / 6, rel=1e-5)
    assert loss_i(o_s, o_t, o_n, tau, reduction="sum", form="repel") == pytest.approx(-total, rel=1e-5)


def test_penalty_and_bce():
    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0]]))
        lin.bias.fill_(3.0)
    assert float(weight_penalty(lin)) == pytest.approx(14.0)
    assert float(weight_penalty(None)) == 0.0
    logits, labels = torch.tensor([0.0, 2.0]), torch.tensor([1, 0])
    expected = (math.log(2) + math.log(1 + math.exp(2))) / 2
    assert float(loss_bce(logits, labels)) == pytest.approx(expected, rel=1e-6)


def test_unknown_options_are_clear(frags):
    with pytest.raises(ValueError, match="known: paper, infonce"):
        loss_s(*frags, form="x")
    with pytest.raises(ValueError, match="known: sum, mean"):
        loss_i(*frags, reduction="x")
