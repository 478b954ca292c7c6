import json

import pytest

from model_pool.errors import MgmpError
from model_pool.plan import load_plan, parse_plan


def _plan(*models):
    return {"name": "t", "models": list(models)}


def test_grid_expands_and_keeps_types():
    p = parse_plan(_plan(
        {"id": "a", "recipe": "scratch", "arch": "mlp", "dataset": "digits"},
        {"id": "b-{task}-{v}", "recipe": "transfer", "parent": "a", "dataset": "digits-tasks", "task": "{task}",
         "grid": {"task": [1, 2], "v": [{"name": "x", "lr": 0.1, "seed": 3}]}},
    ))
    jobs = p.by_id()
    assert set(jobs) == {"a", "b-1-x", "b-2-x"}
    assert jobs["b-1-x"].task == 1 and jobs["b-1-x"].seed == 3 and jobs["b-1-x"].params["lr"] == 0.1
    assert p.order()[0] == "a"


@pytest.mark.parametrize("bad, msg", [
    (_plan({"id": "a", "recipe": "nope", "dataset": "digits"}), "unknown recipe"),
    (_plan({"id": "a", "recipe": "finetune", "parent": "zz", "dataset": "digits"}), "not in the plan"),
    (_plan({"id": "a", "recipe": "scratch", "dataset": "digits"}, {"id": "a", "recipe": "scratch", "dataset": "digits"}), "twice"),
    (_plan({"id": "../x", "recipe": "scratch", "dataset": "digits"}), "invalid model id"),
    (_plan({"id": "a", "recipe": "finetune", "parent": "b", "dataset": "digits"},
           {"id": "b", "recipe": "finetune", "parent": "a", "dataset": "digits"}), "cycle"),
    (_plan({"id": "a", "recipe": "scratch"}), "needs a recipe and a dataset"),
    (_plan({"id": "a", "recipe": "scratch", "dataset": "digits", "colour": 1}), "unknown field"),
    ({"models": 3}, "models"),
])
def test_bad_plans_get_one_clear_error(bad, msg):
    with pytest.raises(MgmpError, match=msg):
        parse_plan(bad)


def test_shipped_plans_expand():
    digits = load_plan("configs/pool/digits.yaml")
    assert len(digits.jobs) >= 40
    groups = [j.tags.get("group") for j in digits.jobs]
    assert groups.count("homologous") == groups.count("non-homologous")
    pool_tasks = {j.task for j in digits.jobs if j.split == "pool"}
    eval_tasks = {j.task for j in digits.jobs if j.split == "eval"}
    assert pool_tasks and eval_tasks and not pool_tasks & eval_tasks
    lineage = load_plan("configs/pool/digits_lineage.yaml")
    relations = {step for j in lineage.jobs for step in j.recipe.split("+")}
    assert relations >= {"scratch", "finetune", "finetune_last", "retrain_last", "transfer", "prune", "quantize",
                         "adv_train", "distill", "extract", "adapter", "merge"}
    assert {"transfer+prune", "transfer+quantize", "transfer+distill"} <= {j.recipe for j in lineage.jobs}
    assert any(j.split == "calibration" for j in lineage.jobs)
    for recipe in ("scratch", "distill", "extract", "transfer+distill"):  # trained from their own initialisation
        inits = [(j.arch, j.seed) for j in lineage.jobs if j.recipe == recipe]
        assert len(inits) == len(set(inits)), f"{recipe} models of one architecture share an initial seed"
    fresh = [j for j in lineage.jobs if j.recipe in ("retrain_last", "adapter") or j.recipe.startswith("transfer")]
    assert len({j.seed for j in fresh}) == len(fresh), "new heads or adapters of two models start equal"


@pytest.mark.parametrize("name", ["real_image", "real_text"])
def test_real_plans_expand_with_disjoint_backbones_per_split(name):
    """Every relation that applies, one calibration family, a from-scratch independent of every source's and
    thief's architecture in its split (or fusion learns what 'not comparable' means from one relation), and no
    two unrelated models of a split sharing a pretrained backbone (siblings via a public backbone are not
    independents)."""
    plan = load_plan(f"configs/pool/{name}.yaml")
    jobs = plan.by_id()
    relations = {j.recipe for j in plan.jobs}
    assert relations >= {"scratch", "finetune", "finetune_last", "transfer", "prune", "quantize", "adapter", "distill",
                         "extract"}
    assert {j.split for j in plan.jobs} == {"eval", "calibration"} and any(j.tags.get("copy") for j in plan.jobs)
    for split in ("eval", "calibration"):
        roots = [j for j in plan.jobs if j.split == split and not j.parents and j.arch_kwargs.get("pretrained")]
        sources = [j for j in roots if j.tags.get("role") == "source"]
        assert sources, split
        backbones = [j.arch_kwargs["pretrained"] for j in roots]
        assert len(backbones) == len(set(backbones)), (split, backbones)
        scratch = {j.arch for j in plan.jobs if j.split == split and j.tags.get("role") == "independent"
                   and not j.arch_kwargs.get("pretrained")}
        thieves = {j.arch for j in plan.jobs if j.split == split and j.recipe == "extract"}
        assert {j.arch for j in sources} | thieves <= scratch, f"{split}: an architecture without an independent"
    assert all(jobs[p].split == j.split for j in plan.jobs for p in j.parents)


def test_tv_lineage_plan_is_plain_torchvision_with_every_relation_and_an_independent_per_architecture():
    """Domain (b) of ``mgmp bench transfer``: only plain torchvision classifiers, heavy fine-tunes and
    cross-architecture thieves (labels and probabilities) in both splits, and each split's sources' and thieves'
    architectures among its from-scratch independents."""
    plan = load_plan("configs/pool/tv_lineage.yaml")
    jobs = plan.by_id()
    assert {j.arch for j in plan.jobs} - {None} == {"torchvision:resnet18", "torchvision:mobilenet_v2"}  # None: the parent's
    assert {j.recipe for j in plan.jobs} >= {"scratch", "finetune", "finetune_last", "prune", "quantize", "transfer",
                                              "distill", "extract"}
    for split in ("eval", "calibration"):
        sources = [j for j in plan.jobs if j.split == split and j.tags.get("role") == "source"]
        assert sources and any(j.id.endswith("ft-heavy") and j.split == split for j in plan.jobs)
        thieves = [j for j in plan.jobs if j.split == split and j.recipe == "extract"]
        assert {j.params.get("outputs") for j in thieves} == {"probabilities", "labels"}
        assert all(j.arch != jobs[j.parents[0]].arch for j in thieves), "thieves cross architectures"
        scratch = {j.arch for j in plan.jobs if j.split == split and j.tags.get("role") == "independent"
                   and not j.parents}
        assert {j.arch for j in sources} | {j.arch for j in thieves} <= scratch, split
    assert all(jobs[p].split in (j.split, None) for j in plan.jobs for p in j.parents)  # None: the unrelated root


def test_shapes_lineage_plan_has_realistic_thieves_and_controls():
    """Issue 33: thieves and students that never query the owner's data (but the tagged controls), with budgets,
    enough evaluation pairs per kind, and from-scratch models that share no initial seed."""
    plan = load_plan("configs/pool/shapes_lineage.yaml")
    students = [j for j in plan.jobs if j.recipe in ("extract", "distill")]
    controls = [j for j in students if j.tags.get("control")]
    realistic = [j for j in students if not j.tags.get("control")]
    assert controls and all(j.params["query_data"] == "task" for j in controls)
    assert all(j.params["query_data"] in ("surrogate", "noise", "jbda") and j.params["queries"] for j in realistic)
    evaluation = [j for j in realistic if j.split == "eval"]
    for recipe, outputs in (("extract", "labels"), ("extract", "probabilities"), ("distill", None)):
        n = sum(j.recipe == recipe and j.params.get("outputs") == outputs for j in evaluation)
        assert n >= 9, (recipe, outputs, n)
    assert {j.params["queries"] for j in realistic if j.recipe == "extract"} >= {1000, 4000}
    for recipe in ("scratch", "distill", "extract"):
        inits = [(j.arch, json.dumps(j.arch_kwargs, sort_keys=True), j.seed) for j in plan.jobs if j.recipe == recipe]
        assert len(inits) == len(set(inits)), recipe
    assert {j.dataset for j in plan.jobs} == {"shapes", "shapes-tasks"}
