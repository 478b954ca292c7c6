"""Weight-space cosine, a baseline beside the four papers' methods: fine-tuning, pruning, quantization,
adapters and transfer keep the source's weights; models trained from their own initialisation
(independent, distilled, extracted) do not, so it is blind to distillation and extraction.

Both models' weight matrices (float tensors of ≥ 2 dims: convolution, linear and embedding weights;
normalisation and bias vectors start equal in every model) are aligned by parameter name and shape;
a tensor without a partner counts as orthogonal (a transferred model's new head lowers the cosine
by its share of the norm). The index's ``weights`` DNA (``mgmp.representations.weights.weight_sketch``)
estimates the same cosine.
"""
from __future__ import annotations

from mgmp.representations.weights import weight_cosine
from mgmp.scores import SCORES
from mgmp.scores.base import Pair, PairScore, ScoreResult
from model_pool.errors import NotApplicable


@SCORES.register("weights")
class WeightCosine(PairScore):
    """Cosine of the two models' aligned weight matrices (higher = related); needs white-box suspects."""

    name = "weights"
    needs = "weights"
    handles_transfer = True

    def score(self, pair: Pair) -> ScoreResult:
        cos, shared = weight_cosine(pair.source, pair.suspect)
        if shared == 0:
            raise NotApplicable("weights: the two models share no weight tensor of the same name and shape")
        return self.result(cos, shared_tensors=shared)
