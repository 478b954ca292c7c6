"""Basin test (TPAMI 2026 extension of lineage closeness): lineage iff both weight vectors lie in one
basin of the source task's loss. Loss barrier along θ(α) = (1−α)θ_A + αθ_B with BatchNorm
statistics recomputed at every α; barrier = max_α L(θ(α)) − max(L(θ_A), L(θ_B)).
Heads of another task (other shape or other classes) are not interpolated: the path moves the
shared body only. ``head="source"`` keeps A's head (SPEC's literal rule; B's body under A's head
has so high a loss that the barrier is ~0 for related and unrelated bodies alike); ``"refit"``
(default for other tasks) fits a fresh source-task head on the body's features at every α (a linear
probe) so that the barrier measures the body's basin."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from mgmp.scores import SCORES
from mgmp.scores.base import Pair, PairScore, ScoreResult
from model_pool.errors import NotApplicable
from model_pool.params import Choice, Range
from model_pool.train import predict, recompute_bn


def _head_names(model) -> set[str]:
    return {f"head.{k}" for k in model.head.state_dict()} if hasattr(model, "head") else set()


@SCORES.register("basin")
class Basin(PairScore):
    """Loss barrier on the source's data along the linear weight path (lower = same basin = lineage)."""

    name = "basin"
    needs = "weights"
    higher_is_related = False
    handles_transfer = True
    param_specs = {"alphas": Range(3, 1000), "n_points": Range(1, 1_000_000), "bn_points": Range(2, 1_000_000),
                   "head": Choice("auto", "source", "interpolate", "refit")}

    def __init__(self, alphas: int = 11, n_points: int = 1000, bn_points: int = 512, head: str = "auto"):
        self.alphas, self.n_points, self.bn_points, self.head = alphas, n_points, bn_points, head

    def score(self, pair: Pair) -> ScoreResult:
        a_card, b_card = pair.source_card, pair.suspect_card
        if (a_card.arch, a_card.arch_kwargs) != (b_card.arch, b_card.arch_kwargs):
            got = ((a_card.arch, b_card.arch) if a_card.arch != b_card.arch else
                   (f"{a_card.arch}({a_card.arch_kwargs})", f"{b_card.arch}({b_card.arch_kwargs})"))
            raise NotApplicable(f"basin compares weights of one architecture; got {got[0]} and {got[1]}")
        sa, sb = pair.source.state_dict(), pair.suspect.state_dict()
        head = _head_names(pair.source)
        mode = self.head if self.head != "auto" else ("interpolate" if pair.same_task else "refit")
        if mode != "interpolate":
            sb = {**sb, **{k: sa[k] for k in head}}
        if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
            raise NotApplicable("basin: the two models' parameters differ in names or shapes")
        data = pair.source_data
        x, y = data.x_test[: self.n_points], data.y_test[: self.n_points]
        x_bn = data.x_train[: self.bn_points]
        model = copy.deepcopy(pair.source)
        losses = []
        for alpha in torch.linspace(0, 1, self.alphas).tolist():
            model.load_state_dict({k: _lerp(sa[k], sb[k], alpha) for k in sa})
            if 0 < alpha < 1:
                recompute_bn(model, x_bn)
            losses.append(_probe_loss(model, data, self.n_points) if mode == "refit"
                          else float(F.cross_entropy(predict(model, x), y)))
        barrier = max(losses) - max(losses[0], losses[-1])
        return self.result(barrier, losses=losses, head=mode)


def _probe_loss(model, data, n_points: int) -> float:
    """Test loss of a logistic-regression head fit on the body's features (the source task)."""
    from sklearn.linear_model import LogisticRegression  # scikit-learn costs a second to import: only when used
    from sklearn.metrics import log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f_tr = predict(model, data.x_train, features=True).numpy()
    f_te = predict(model, data.x_test[:n_points], features=True).numpy()
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    probe.fit(f_tr, data.y_train.numpy())
    return float(log_loss(data.y_test[:n_points].numpy(), probe.predict_proba(f_te), labels=probe.classes_))


def _lerp(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    if not a.is_floating_point():  # BatchNorm's num_batches_tracked
        return a
    return torch.lerp(a, b.to(a.dtype), alpha)
