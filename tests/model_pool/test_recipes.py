"""Every registered recipe, run on tiny data: it produces a working model of the right shape."""
import copy

import pytest
import torch
from torch import nn

from model_pool.archs import create_model
from model_pool.card import ModelCard
from model_pool.data import load_dataset
from model_pool.recipes import RECIPES, RecipeContext, run_recipe
from model_pool.recipes.quantize import quantize_weight
from model_pool.train import accuracy, fit

KW = {"in_channels": 1, "image_size": 8, "width": 16}


@pytest.fixture(scope="module")
def parent():
    data = load_dataset("digits", n_train=600)
    torch.manual_seed(0)
    model = fit(create_model("small_cnn", 10, **KW), data.x_train, data.y_train, epochs=10, lr=0.003)
    card = ModelCard(arch="small_cnn", arch_kwargs=KW, num_classes=10, input=data.input)
    assert accuracy(model, data.x_test, data.y_test) > 0.8
    return model, card


def _ctx(parent, relation, dataset="digits", task=None, parents=1, **params):
    model, card = parent
    return RecipeContext(data=load_dataset(dataset, task=task, n_train=200, n_test=100),
                         parents=[copy.deepcopy(model) for _ in range(parents)], parent_cards=[card] * parents,
                         arch="mlp" if relation == "extract" else None, arch_kwargs={"in_channels": 1, "image_size": 8},
                         seed=1, params={"epochs": 5, "lr": 0.003, **params})


CASES = {
    "finetune": {}, "finetune_last": {}, "retrain_last": {}, "prune": {"amount": 0.5}, "quantize": {"bits": 8},
    "adv_train": {"eps": 0.1, "steps": 2}, "distill": {"epochs": 15}, "extract": {"epochs": 15}, "adapter": {"r": 2}, "merge": {"parents": 2},
    "transfer": {"dataset": "digits-tasks", "task": "1:5"},
}


LM_ONLY = {"finetune_top"}  # tests/model_pool/test_causal_lm.py runs it on a tiny Llama


def test_every_recipe_has_a_case():
    assert set(RECIPES.names()) - {"scratch"} - LM_ONLY == set(CASES)


@pytest.mark.parametrize("relation", sorted(CASES))
def test_recipe_produces_valid_model(parent, relation):
    args = dict(CASES[relation])
    ctx = _ctx(parent, relation, dataset=args.pop("dataset", "digits"), task=args.pop("task", None),
               parents=args.pop("parents", 1), **args)
    child = run_recipe(relation, ctx)
    x = ctx.data.x_test
    out = child(x)
    assert out.shape == (len(x), ctx.data.num_classes) and torch.isfinite(out).all()
    first = child.body[0] if relation != "extract" else child.body[1]
    assert isinstance(first, nn.Linear if relation == "extract" else nn.Conv2d)  # extract: the thief is an MLP
    assert not any("lora" in n for n, _ in child.named_parameters())  # adapters are merged into the weights
    assert accuracy(child, x, ctx.data.y_test) > 0.2  # chance is 0.1 (0.2 for 5 classes)


def test_finetune_changes_weights_but_quantize_stays_on_grid(parent):
    child = run_recipe("quantize", _ctx(parent, "quantize", bits=4))
    w = child.head.weight
    scale = w.abs().amax(1, keepdim=True) / 7
    assert torch.allclose(w / scale, (w / scale).round(), atol=1e-4)
    ft = run_recipe("finetune", _ctx(parent, "finetune"))
    assert not torch.equal(ft.head.weight, parent[0].head.weight)


def test_prune_zeroes_the_requested_fraction(parent):
    child = run_recipe("prune", _ctx(parent, "prune", amount=0.8, epochs=0))
    ws = [m.weight for m in child.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    zero = sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)
    assert 0.79 < zero < 0.81
    assert not any(n.endswith("_orig") for n, _ in child.named_parameters())


def test_combination_runs_steps_in_order_with_step_params(parent):
    ctx = _ctx(parent, "transfer+prune", dataset="digits-tasks", task="3:4", amount=0.3, transfer={"epochs": 2})
    child = run_recipe("transfer+prune", ctx)
    assert child.head.out_features == 4
    assert ctx.p("epochs") == 5 and ctx.params["transfer"]["epochs"] == 2


def test_finetune_refuses_other_class_count(parent):
    with pytest.raises(ValueError, match="use transfer"):
        run_recipe("finetune", _ctx(parent, "finetune", dataset="digits-tasks", task="1:5"))


def test_quantize_weight_matches_reference():
    w = torch.tensor([[0.5, -1.0, 0.26], [2.0, 0.1, -0.3]])
    q = quantize_weight(w, 8)
    ref = torch.stack([torch.round(r / (r.abs().max() / 127)) * (r.abs().max() / 127) for r in w])
    assert torch.allclose(q, ref)


def test_merge_averages_weights(parent):
    a, card = parent
    b = copy.deepcopy(a)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
    ctx = _ctx(parent, "merge", parents=2, recompute_bn=False)
    ctx.parents = [a, b]
    m = run_recipe("merge", ctx)
    assert torch.allclose(m.head.weight, a.head.weight + 0.5)


@pytest.mark.parametrize("query_data,extra", [("surrogate", {"surrogate": "digits-tasks", "surrogate_task": 3}),
                                              ("noise", {}), ("jbda", {"seed_queries": 40, "jbda_step": 0.2})])
def test_thieves_query_within_their_budget_from_data_they_were_given(parent, query_data, extra, monkeypatch):
    """The teacher is asked about exactly ``queries`` inputs of the chosen kind, none of its training inputs (but
    JBDA's seed set), and the thief learns its answers."""
    from model_pool.recipes import distill as distill_mod

    asked = []
    real_predict = distill_mod.predict
    monkeypatch.setattr(distill_mod, "predict", lambda m, x, **kw: asked.append(x) or real_predict(m, x, **kw))
    ctx = _ctx(parent, "extract", epochs=15, queries=120, query_data=query_data, outputs="labels", **extra)
    thief = run_recipe("extract", ctx)
    x = asked[0]
    assert len(x) == 120 and x.shape[1:] == ctx.data.x_train.shape[1:]
    train = {tuple(r.flatten().tolist()) for r in ctx.data.x_train}
    from_train = sum(tuple(r.flatten().tolist()) in train for r in x)
    assert from_train == (40 if query_data == "jbda" else 0)
    teacher_labels = real_predict(parent[0], x).argmax(1)
    assert float((thief(x).argmax(1) == teacher_labels).float().mean()) > 0.5  # it learned the teacher's answers


def test_a_torchvision_victim_and_thief_on_surrogate_shapes():
    data = load_dataset("shapes", n_train=64, n_test=32)
    torch.manual_seed(0)
    victim = create_model("torchvision:mobilenet_v3_small", 10)
    card = ModelCard(arch="torchvision:mobilenet_v3_small", num_classes=10, input=data.input)
    ctx = RecipeContext(data=data, parents=[victim], parent_cards=[card], arch="torchvision:resnet18",
                        seed=2, params={"epochs": 1, "queries": 48, "query_data": "surrogate",
                                        "surrogate": "shapes-textures", "outputs": "probabilities"})
    thief = run_recipe("extract", ctx)
    assert thief(data.x_test).shape == (32, 10)
    bad = RecipeContext(data=load_dataset("synthetic-topics", n_train=16, n_test=8), parents=[victim], parent_cards=[card],
                        arch="small_cnn", seed=2, params={"query_data": "noise", "queries": 8})
    with pytest.raises(Exception, match="needs image inputs"):
        run_recipe("extract", bad)


def test_grouped_quantization_has_one_scale_per_block_of_inputs():
    w = torch.randn(4, 64)
    w[:, 40] = 50.0  # one outlier per channel: per channel it coarsens the whole row, per group only its block
    g = quantize_weight(w, 4, group_size=32)
    blocks = w.reshape(-1, 32)
    scale = blocks.abs().amax(1, keepdim=True) / 7
    assert torch.allclose(g.reshape(-1, 32) / scale, (blocks / scale).round(), atol=1e-4)
    assert (g - w)[:, :32].abs().max() < (quantize_weight(w, 4) - w)[:, :32].abs().max() / 4
    with pytest.raises(Exception, match="does not divide"):
        quantize_weight(torch.randn(2, 10), 4, group_size=32)
