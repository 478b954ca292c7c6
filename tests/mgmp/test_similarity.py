import torch

from mgmp.representations.similarity import linear_cka, top1_agreement


def test_cka_invariances_and_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    assert abs(linear_cka(x, x @ q * 3.0 + 1.0) - 1.0) < 1e-9  # orthogonal, scale and shift invariant
    y = torch.randn(50, 4, generator=g)
    xc, yc = x - x.mean(0), y - y.mean(0)
    ref = float(torch.trace(xc @ xc.T @ yc @ yc.T) / (torch.trace(xc @ xc.T @ xc @ xc.T) * torch.trace(yc @ yc.T @ yc @ yc.T)).sqrt())
    assert abs(linear_cka(x, y) - ref) < 1e-6


def test_top1_agreement():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    b = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert top1_agreement(a, b).tolist() == [True, False, False]
