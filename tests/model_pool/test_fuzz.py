"""Property-based fuzzing (hypothesis) of untrusted inputs: model.json, pool plans, CLI model references.
Whatever the input, the outcome is a valid object or one of the errors the CLI turns into one line."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_pool.card import ModelCard
from model_pool.errors import MgmpError
from model_pool.plan import parse_plan

CLEAN_ERRORS = (MgmpError,)  # the only errors mgmp.cli reports in one line; anything else is a bug
SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])  # CI-stable

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)
CARD_KEYS = ["arch", "num_classes", "input", "arch_kwargs", "task", "relation", "parents", "parent", "seed",
             "recipe", "metrics", "sha256", "files"]
card_like = st.dictionaries(st.sampled_from(CARD_KEYS), json_values, max_size=len(CARD_KEYS))


@SETTINGS
@given(st.one_of(json_values, card_like))
def test_model_json_is_parsed_or_refused_cleanly(data):
    try:
        card = ModelCard.from_dict(data)
    except MgmpError:
        return
    assert isinstance(card.arch, str) and isinstance(card.num_classes, int) and card.num_classes >= 1
    assert card.input["kind"] in ("image", "text") and all(isinstance(p, str) for p in card.parents)
    json.loads(card.to_json())  # whatever was accepted serialises back


@SETTINGS
@given(st.fixed_dictionaries({"arch": st.sampled_from(["small_cnn", "mlp"]), "num_classes": st.integers(1, 5),
                              "input": st.just({"kind": "image", "shape": [1, 8, 8]})}), card_like)
def test_valid_core_with_random_extras(core, extra):
    """A valid core survives any extra fields: accepted with the core intact, or refused naming an extra field."""
    try:
        card = ModelCard.from_dict({**extra, **core})
    except MgmpError as e:
        assert any(k in str(e) for k in extra), str(e)
        return
    assert (card.arch, card.num_classes, card.input) == (core["arch"], core["num_classes"], core["input"])


MODEL_KEYS = ["id", "recipe", "dataset", "task", "arch", "arch_kwargs", "parent", "parents", "seed", "params",
              "grid", "split", "tags", "data"]
plan_like = st.fixed_dictionaries(
    {"models": st.lists(st.dictionaries(st.sampled_from(MODEL_KEYS), json_values, max_size=6), max_size=4)},
    optional={"name": json_values, "defaults": json_values})


@SETTINGS
@given(st.one_of(json_values, plan_like))
def test_pool_plan_is_parsed_or_refused_cleanly(data):
    try:
        plan = parse_plan(data)
    except CLEAN_ERRORS:
        return
    assert len({j.id for j in plan.jobs}) == len(plan.jobs)


@pytest.fixture(scope="module")
def pool(tiny_pool):
    return tiny_pool


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=40), st.text(max_size=30))
def test_cli_model_references_resolve_or_refuse_cleanly(pool, prefix, model_id):
    from model_pool.pool import load_ref

    for ref in (prefix, f"{pool}::{model_id}", f"{prefix}::{model_id}", f"{pool}::../{model_id}"):
        try:
            load_ref(ref)
        except CLEAN_ERRORS:
            pass
