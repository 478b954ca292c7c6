"""Knowledge transfer from a teacher (the parent) into a fresh student, without labels.

``distill``: same-architecture student, feature distillation (MSE on penultimate features) plus
soft-label KL. ``extract``: model stealing, another architecture trained on the teacher's outputs: its
probabilities (soft-label KL at ``temperature``) or, with ``outputs: labels``, only its top-1 labels
(cross-entropy: a thief behind a labels-only API). Both ask the teacher about ``queries`` inputs (the budget)
drawn as ``query_data`` says (:mod:`model_pool.recipes.queries`: the task's own inputs, surrogate data of
another distribution, noise, or Jacobian-based augmentation); budget and query data are recorded in the card's
recipe params. A causal language model teacher is distilled at the sequence level
(:mod:`model_pool.recipes.lm_teach`: ``gen_tokens`` continuation tokens, ``top_k`` log-probabilities per position).
"""
import torch
import torch.nn.functional as F

from model_pool.archs import create_model
from model_pool.archs.causal import is_causal_lm
from model_pool.errors import BadInput
from model_pool.params import Choice, Range
from model_pool.recipes import FIT_PARAMS, RECIPES, TRAIN_KEYS, RecipeContext, reads
from model_pool.recipes.lm_teach import DEFAULT_GEN_TOKENS, DEFAULT_TOP_K, teach_lm
from model_pool.recipes.queries import QUERY_PARAMS, thief_queries
from model_pool.train import fit, predict

# what ``_teach`` reads: the training params, the teacher queries (budget and where they come from) and the
# softmax temperature
TEACH_PARAMS = {**FIT_PARAMS, **QUERY_PARAMS, "queries": (int | None, Range(1, 1_000_000)),
                "temperature": (float, Range(0, 100, open_lo=True)),
                "outputs": (str, Choice("probabilities", "labels")),
                "gen_tokens": (int, Range(1, 4096)), "top_k": (int, Range(1, 1_000_000))}


def _kl(student_logits, teacher_logits, t: float):
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1), reduction="batchmean") * t * t


def _teach(student, teacher, ctx: RecipeContext, feature_weight: float):
    """Train ``student`` to imitate ``teacher`` on its queries; teacher outputs computed once."""
    kw = {k: ctx.p(k) for k in TRAIN_KEYS if ctx.p(k) is not None}
    x = thief_queries(ctx, student, teacher, kw)
    hard = ctx.p("outputs", "probabilities") == "labels"
    if is_causal_lm(teacher):  # feature_weight does not apply: the thief reads tokens and log-probabilities only
        return teach_lm(student, teacher, x, hard=hard, gen_tokens=int(ctx.p("gen_tokens", DEFAULT_GEN_TOKENS)),
                        top_k=int(ctx.p("top_k", DEFAULT_TOP_K)), temperature=float(ctx.p("temperature", 1.0)),
                        seed=ctx.seed, fit_kw=kw)
    t_logits = predict(teacher, x)
    t_feats = predict(teacher, x, features=True) if feature_weight else None
    temp = float(ctx.p("temperature", 2.0))
    t_labels = t_logits.argmax(1)

    def loss(m, xb, idx):
        feats = m.forward_features(xb)
        out = F.cross_entropy(m.head(feats), t_labels[idx]) if hard else _kl(m.head(feats), t_logits[idx], temp)
        if feature_weight:
            out = out + feature_weight * F.mse_loss(feats, t_feats[idx])
        return out

    return fit(student, x, torch.arange(len(x)), loss_fn=loss, seed=ctx.seed, **kw)


@RECIPES.register("distill")
@reads(TEACH_PARAMS, feature_weight=(float, Range(0, 1000)))
def distill(model, ctx: RecipeContext):
    teacher = ctx.start(model).eval()
    card = ctx.parent_cards[0]
    kwargs = teacher.config_kwargs() if is_causal_lm(teacher) else card.arch_kwargs  # a fresh LM, not the pretrained
    student = create_model(card.arch, teacher.head.out_features, **kwargs)
    if student.num_features != teacher.num_features:
        raise BadInput("distill needs a student with the teacher's feature width")
    return _teach(student, teacher, ctx, float(ctx.p("feature_weight", 1.0)))


@RECIPES.register("extract")
@reads(TEACH_PARAMS)
def extract(model, ctx: RecipeContext):
    teacher = ctx.start(model).eval()
    if not ctx.arch:
        raise BadInput("extract needs the thief's arch")
    student = create_model(ctx.arch, teacher.head.out_features, **ctx.arch_kwargs)
    return _teach(student, teacher, ctx, 0.0)
