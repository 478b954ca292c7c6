"""Parameters are checked where they enter (``model_pool.params``): score parameters (API and ``--param``),
a plan's recipe params, index and query options. A bad value is one line (``BadInput``, exit 2), never a
traceback, a silent default or a clamp."""
import json
import math
import time
import types
import typing

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgmp.commands._common import parse_params
from mgmp.index.query import QueryOptions
from mgmp.index.store import build_index, create_index
from mgmp.scores import SCORES, create_score, list_scores
from model_pool.errors import BadInput, TooLarge
from model_pool.params import Choice, Range, check_params, param_types
from model_pool.plan import parse_plan
from model_pool.recipes import RECIPES, RecipeContext, run_recipe

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
# the parameter that sizes each score's work, and cheap companions for scoring a tiny pair with its smallest value
MAIN = {"basin": ("alphas", ["n_points=20", "bn_points=20"]), "closeness": ("k", ["generate=false"]),
        "dna": ("n_points", []), "inheritance": ("n_references", []), "ipguard": ("n_points", ["steps=2"]),
        "modeldiff": ("n_points", []), "dataset_inference": ("n_points", ["k=2"]),
        "cae": ("n_fingerprints", ["n_candidates=8", "steps=1", "n_surrogates=1", "n_independent=1",
                                   "min_conferrability=0"]),
        "generated": ("n_points", ["steps=1", "n_surrogates=1", "n_independent=2", "chunks=1"]),
        "sac": ("n_points", []), "weights": (None, []), "zest": ("n_masks", ["n_points=2", "relative=false"]),
        "lm_tokens": ("n_prompts", []), "lm_logprob": ("n_prompts", []), "lm_cka": ("n_prompts", []),
        "lm_invariant": ("n_tokens", []), "lm_inheritance": ("n_prompts", [])}


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg, msg
    return msg


def _needs_spec(tp) -> bool:
    """Numbers and strings (choices) need a spec; flags, mappings and free text do not."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    return any(a in (int, float, str) for a in args)


@pytest.mark.parametrize("name", list_scores())
def test_every_numeric_or_choice_parameter_of_every_score_has_a_spec(name):
    cls = SCORES.get(name)
    hints = param_types(cls.__init__)
    assert set(cls.param_specs) <= set(hints), f"{name}: specs of parameters it does not take"
    missing = [p for p, tp in hints.items() if _needs_spec(tp) and p not in cls.param_specs]
    assert not missing, f"{name}: parameters without a spec: {missing}"
    create_score(name)  # the defaults satisfy the specs (every construction checks them)


def test_every_recipe_declares_what_it_reads():
    for name in RECIPES.names():
        fn = RECIPES.get(name)
        assert set(fn.param_specs) <= set(fn.param_types), name
        assert all(p in fn.param_specs for p, tp in fn.param_types.items() if _needs_spec(tp)), name


@pytest.mark.parametrize("name, params, msg", [
    ("closeness", {"k": 0}, "closeness: parameter k must be an integer in [1, 100000], got 0"),
    ("zest", {"n_masks": -5}, "zest: parameter n_masks must be an integer in [1, 100000], got -5"),
    ("closeness", {"k": "abc"}, "parameter k must be an integer"),
    ("closeness", {"k": True}, "parameter k must be an integer"),  # a bool is not an int
    ("closeness", {"d_max": math.nan}, "parameter d_max must be a number in (0, 1000], got nan"),
    ("ipguard", {"lr": math.inf}, "parameter lr must be a number"),
    ("closeness", {"kk": 3}, "closeness: unknown parameter 'kk'; known: candidates, d_max,"),
    ("weights", {"k": 3}, "weights: unknown parameter 'k'; it takes none"),
    ("closeness", {"indirect": "sometimes"}, "parameter indirect must be one of auto, always, never"),
    ("zest", {"fit": "ridge"}, "parameter fit must be one of lstsq, lime"),
    ("zest", {"quickshift": {"rng": 3}}, "zest: quickshift: unknown parameter 'rng'"),
    ("sac", {"n_points": 1}, "parameter n_points must be an integer in [2, 100000]"),
    ("basin", {"alphas": 2}, "parameter alphas must be an integer in [3, 1000]"),
])
def test_bad_score_parameters_are_refused_in_one_line(name, params, msg):
    with pytest.raises(BadInput) as e:
        create_score(name, **params)
    assert msg in _one_line(e.value)
    with pytest.raises(BadInput):  # the class itself checks: the Python API, benchmarks and workers too
        SCORES.get(name)(**params)


def test_valid_parameters_keep_their_values_and_cache_keys():
    method = create_score("closeness", k=1, d_max=2, generate=False)
    assert method.params()["k"] == 1 and method.params()["d_max"] == 2  # an int for a float is kept as given
    assert create_score("zest").params_hash() == create_score("zest", n_masks=1000).params_hash()


def test_check_params_types_and_specs():
    def f(a: int = 1, b: float | None = None, c: list[float] | None = None, d: str = "x", e: bool = False):
        """A function whose annotations are the parameter types."""

    specs = {"a": Range(1, 3), "b": Range(0, 1, open_lo=True), "c": Range(0), "d": Choice("x", "y")}
    assert check_params("f", f, {"a": 3, "b": 1, "c": [0, 2.5], "d": "y", "e": True}, specs)["b"] == 1
    for bad in ({"a": 4}, {"a": 2.0}, {"b": 0}, {"c": [1, -1]}, {"c": [1, "2"]}, {"d": "z"}, {"e": 1}, {"b": -math.inf}):
        with pytest.raises(BadInput):
            check_params("f", f, bad, specs)


@SETTINGS
@given(st.sampled_from(list_scores()), st.data())
def test_fuzzed_param_flags_construct_a_score_or_refuse_in_one_line(name, data):
    real = list(param_types(SCORES.get(name).__init__))
    key = data.draw(st.sampled_from(real) if real and data.draw(st.booleans()) else st.text(max_size=12))
    value = data.draw(st.one_of(
        st.text(max_size=20),
        st.sampled_from(["0", "-1", "1", "2", "NaN", "Infinity", "-Infinity", "1e999", "true", "null", "[]", "{}",
                         "[1, 2]", '{"kernel_size": 2}', str(2**80), str(-2**80), "0.5", "1e-300"]),
        st.integers(-2**70, 2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                     max_leaves=6).map(json.dumps)))
    try:
        method = create_score(name, **parse_params([f"{key}={value}"]))
    except BadInput as e:
        _one_line(e)
        return
    assert method.name == name


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    """Two tiny CNNs on 8x8 digits: a source and a perturbed copy, as model directories (no pool)."""
    from model_pool.archs import create_model
    from model_pool.card import ModelCard
    from model_pool.data import load_dataset
    from model_pool.io import save_model_dir
    from model_pool.train import fit

    data = {"n_train": 120, "n_test": 40}
    digits = load_dataset("digits", **data)
    kw = {"in_channels": 1, "image_size": 8, "width": 8}
    torch.manual_seed(0)
    source = fit(create_model("small_cnn", 10, **kw), digits.x_train, digits.y_train, epochs=2, lr=0.01)
    suspect = create_model("small_cnn", 10, **kw)
    with torch.no_grad():
        suspect.load_state_dict({k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
                                 for k, v in source.state_dict().items()})
    root = tmp_path_factory.mktemp("pair")
    card = ModelCard("small_cnn", 10, digits.input, kw, recipe={"dataset": "digits", "data": data})
    for name, model in (("a", source), ("b", suspect)):
        save_model_dir(model, card, root / name)
    return str(root / "a"), str(root / "b")


@pytest.mark.parametrize("param", ["k=0", "k=-1", "k=abc", "k=true", "k=NaN", "k=1e999", "bogus=1", "self=1", "k"])
def test_bad_param_flags_exit_2_with_one_line(tiny_pair, param, capsys):
    from mgmp.cli import main

    assert main(["score", "closeness", *tiny_pair, "--param", param]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "k" in err


@pytest.mark.parametrize("name", list_scores())
def test_smallest_accepted_size_scores_or_refuses_in_one_line(tiny_pair, name, tmp_path, capsys):
    from mgmp.cli import main

    assert set(MAIN) == set(list_scores()), "name the size parameter of every new score in MAIN"
    param, extra = MAIN[name]
    spec = SCORES.get(name).param_specs.get(param)
    sized = [f"{param}={spec.lo}"] if param else []
    out = tmp_path / "s.json"
    args = ["score", name, *tiny_pair, "--no-cache", "--json", str(out)]
    code = main(args + [f"--param={p}" for p in sized + extra])
    err = capsys.readouterr().err.strip()
    assert code in (0, 2) and "Traceback" not in err, err
    if code == 0:
        assert math.isfinite(json.loads(out.read_text())["value"])
    else:  # only a method that cannot compare this pair; the smallest accepted size itself must work
        assert len(err.splitlines()) == 1 and err.startswith("mgmp: not applicable"), err
    if param:  # one below the smallest is refused
        assert main(args + [f"--param={param}={spec.lo - 1}"]) == 2


def _plan(params, **spec):
    return {"name": "t", "models": [{"id": "a", "recipe": "scratch", "arch": "mlp", "dataset": "digits",
                                     "params": params, **spec}]}


@pytest.mark.parametrize("plan, msg", [
    (_plan({"epochs": -1}), "plan: a (scratch): parameter epochs must be an integer in [0, 10000] or null, got -1"),
    (_plan({"lr": "fast"}), "parameter lr must be a number"),
    (_plan({"bits": 8}), "plan: a (scratch): unknown parameter 'bits'; known: batch_size, epochs,"),
    (_plan({"optimizer": "rmsprop"}), "parameter optimizer must be one of adam, sgd"),
    (_plan({"prune": {"amount": 1.5}}, recipe="transfer+prune"), "prune: parameter amount must be a number in [0, 1]"),
    (_plan({}, id="a-{amount}", recipe="prune", grid={"amount": [0.5, 2]}), "plan: a-2 (prune): parameter amount"),
    ({**_plan({}), "defaults": {"epochs": True}}, "plan: defaults: parameter epochs must be an integer"),
    ({**_plan({}), "defaults": {"colour": 1}}, "plan: defaults: unknown parameter 'colour'"),
])
def test_bad_recipe_params_are_refused_when_the_plan_is_parsed(plan, msg):
    with pytest.raises(BadInput) as e:
        parse_plan(plan)
    assert msg in _one_line(e.value)


def test_plain_grid_names_only_name_jobs_and_shared_defaults_pass():
    plan = {"defaults": {"epochs": 2, "lr": 0.01}, "models": [
        {"id": "m-{i}", "recipe": "scratch", "arch": "mlp", "dataset": "digits", "grid": {"i": [1, 2]}},
        {"id": "q-{i}", "recipe": "quantize", "parent": "m-{i}", "dataset": "digits", "grid": {"i": [1, 2]},
         "params": {"bits": 4}}]}
    assert [j.id for j in parse_plan(plan).jobs] == ["m-1", "m-2", "q-1", "q-2"]


def test_a_grid_bomb_is_refused_before_expansion():
    bomb = _plan({}, id="m-{a}-{b}", grid={"a": list(range(1000)), "b": list(range(1000))})
    t0 = time.perf_counter()
    with pytest.raises(TooLarge, match="1,000,000 exceeds the limit of 10,000"):
        parse_plan(bomb)
    assert time.perf_counter() - t0 < 1.0


def test_recipes_check_what_they_read_when_they_run():
    from model_pool.data import load_dataset

    ctx = RecipeContext(load_dataset("digits", n_train=20, n_test=10), params={"bits": 3, "epochs": 5})
    with pytest.raises(BadInput, match="recipe quantize: parameter bits must be one of 4, 8, 16, got 3"):
        run_recipe("quantize", ctx)  # epochs: unread by quantize, passes (shared params)


@pytest.mark.parametrize("options, msg", [
    ({"top_k": 0}, "query: parameter top_k must be an integer in [1, 10000], got 0"),
    ({"min_similarity": 1.5}, "parameter min_similarity must be a number in [-1, 1]"),
    ({"prefer_ancestors": math.nan}, "parameter prefer_ancestors must be a number in [0, 1] or null"),
    ({"candidates_per_index": 0}, "parameter candidates_per_index must be an integer in [1, 100000] or null"),
    ({"kind": "annoy"}, "parameter kind must be one of flat, hnsw, ivfpq"),
    ({"dna": ("gram", "colour")}, "parameter dna must be a tuple of strings, each one of gram, weights, mgmp"),
    ({"dna": ()}, "dna must name at least one DNA kind"),
    ({"support_threshold": -2}, "parameter support_threshold must be a number >= -1 or null"),
])
def test_bad_query_options_are_refused(options, msg):
    with pytest.raises(BadInput) as e:
        QueryOptions(**options)
    assert msg in _one_line(e.value)


def test_bad_index_options_are_refused_before_any_work():
    with pytest.raises(BadInput, match="index: parameter threads must be an integer in"):
        build_index(None, "flat", threads=0)  # refused before the pool is touched
    with pytest.raises(BadInput, match="index: parameter kind must be one of"):
        build_index(None, "annoy")
    with pytest.raises(BadInput, match="index: parameter ef_search must be an integer in"):
        create_index("hnsw", None, None, 8, ef_search=0)
