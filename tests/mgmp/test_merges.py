"""Merges (issue 34): a model between two others' weights has both as parents, in the forest and in the query."""
import numpy as np
import pytest
import torch

from mgmp.bench.forest import metrics
from mgmp.forest import Forest
from mgmp.forest.arborescence import Edge, arborescence
from mgmp.forest.recover import constrain, near_copy_parents, pruning_parents, second_parents, two_hops
from mgmp.index.query import Hit, QueryResult, _rank, _verdict_explains, _verdict_strength, merged_parents
from mgmp.representations.merges import Merge, best_merge, find_merges, merge_fit
from mgmp.representations.weights import pruned_from, weight_state, zeros_selected
from model_pool.pool import Pool


def _gram(*vectors):
    x = np.stack(vectors)
    return x @ x.T


def test_merge_fit_finds_the_segment_and_nothing_else():
    rng = np.random.default_rng(0)
    u = rng.normal(size=500)
    v = u + 0.1 * rng.normal(size=500)  # a fine-tune of u
    lam, explained = merge_fit(_gram(0.7 * u + 0.3 * v, u, v))
    assert lam == pytest.approx(0.3) and explained == pytest.approx(1.0)
    child = u + 0.1 * rng.normal(size=500)  # another fine-tune of u: its own direction
    assert merge_fit(_gram(child, u, v))[1] < 0.6
    assert merge_fit(_gram(u, u, v))[1] == 0.0  # a copy is not a merge
    assert np.isnan(merge_fit(_gram(child, u, u))[0])


def test_the_tiny_pools_soup_is_found_as_a_merge_of_its_two_parents(tiny_pool):
    with Pool.open(tiny_pool) as pool:
        ids = pool.registry.ids()
        weights = lambda m: weight_state(pool.load(m)[0])  # noqa: E731
        found = find_merges(ids, {m: [o for o in ids if o != m] for m in ids}, weights)
        assert set(found) == {"soup"} and set(found["soup"].parents) == set(pool.registry.parents("soup"))
        assert found["soup"].weight == pytest.approx(0.5, abs=0.01) and found["soup"].explained > 0.99
        assert best_merge("soup", ["ft", "ind"], weights) is None  # the other parent is not a candidate


def test_the_forest_gives_a_merge_both_parents():
    p = {("a", "m"): 0.6, ("b", "m"): 0.5, ("m", "a"): 0.7, ("x", "m"): 0.9, ("s", "a"): 0.9, ("s", "b"): 0.9}
    merges = {"m": Merge("m", ("a", "b"), 0.5, 0.99)}
    kept, roots = constrain(p, dict.fromkeys(["s", "a", "b", "m", "x"], 0.3), merges)
    assert set(kept) == {("a", "m"), ("b", "m"), ("s", "a"), ("s", "b")} and roots["m"] == 0.0
    assert kept[("b", "m")] == 0.99  # a parent's edge weighs at least the merge's explained share
    assert two_hops({"m": ["c"], "c": ["m", "a"], "a": ["c"]})["m"] == ["c", "a"]  # a: a candidate's candidate
    edges, _ = arborescence(["s", "a", "b", "m", "x"], kept, roots)
    edges = second_parents(edges, merges, p)
    assert {(e.parent, e.child) for e in edges} == {("s", "a"), ("s", "b"), ("a", "m"), ("b", "m")}
    forest = Forest(["s", "a", "b", "m", "x"], edges, ["s", "x"], 4, "test", 1.0)
    assert forest.parents()["m"] == ["a", "b"]
    m = metrics(forest, {("s", "a"), ("s", "b"), ("a", "m"), ("b", "m")})
    assert m["merges"] == 1 and m["merges both parents"] == 1.0 and m["f1"] == 1.0
    one = Forest(forest.models, [e for e in edges if e.parent != "b" or e.child != "m"], ["s", "x"], 4, "t", 1.0)
    assert metrics(one, {("s", "a"), ("s", "b"), ("a", "m"), ("b", "m")})["merges both parents"] == 0.0


def test_the_query_answers_a_merge_with_both_parents(tiny_pool):
    with Pool.open(tiny_pool) as pool:
        hits = [Hit(m, 0.9, pool.registry.chain(m), supported=True) for m in ("ft", "src", "ft-q8", "ind")]
        result = QueryResult(f"{tiny_pool}::soup", hits, "most likely parent: ft", "ft", ["ft", "src"], "test")
        merged = merged_parents(pool, f"{tiny_pool}::soup", result)
        assert set(merged.parents) == {"src", "ft"} and merged.parent == merged.parents[0]
        assert merged.verdict.startswith("most likely parents:") and "merge" in merged.verdict
        ft = merged_parents(pool, f"{tiny_pool}::ft-q8", QueryResult(
            f"{tiny_pool}::ft-q8", hits[:2] + hits[3:], "most likely parent: ft", "ft", ["ft"], "test"))
        assert ft.parents == [] and ft.parent == "ft"  # a quantised copy of ft is no merge


def test_weight_state_keeps_matrices_without_copying():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    state = weight_state(model)
    assert list(state) == ["0.weight"] and state["0.weight"].data_ptr() == model[0].weight.data_ptr()


def test_of_two_claims_that_are_each_others_parent_the_stronger_stays():
    g = torch.Generator().manual_seed(0)
    s, d, e1, e2 = (torch.randn(1, 400, generator=g) for _ in range(4))
    w = {"src": s, "light": s + 0.3 * d + 0.01 * e1, "heavy": s + d + 0.01 * e2}
    w["soup"] = (w["light"] + w["heavy"]) / 2  # the light fine-tune lies near the line from src to the soup
    weights = lambda m: {"w": w[m]}  # noqa: E731
    claims = {m: best_merge(m, [o for o in w if o != m], weights, min_explained=0.5) for m in w}
    assert claims["light"] is not None and set(claims["light"].parents) == {"src", "soup"}
    found = find_merges(list(w), {m: [o for o in w if o != m] for m in w}, weights, min_explained=0.5)
    assert set(found) == {"soup"} and set(found["soup"].parents) == {"light", "heavy"}


def test_the_forest_hangs_a_model_from_the_ancestor_its_parent_copies():
    """A model recovered under its parent's int8-like twin moves up to the parent (the twin's change is not visible
    in it); a real grandchild stays; a merge keeps both parents."""
    g = torch.Generator().manual_seed(0)
    w = {"s": {"w": torch.randn(64, 64, generator=g)}}
    w["twin"] = {"w": w["s"]["w"] + 1e-3 * torch.randn(64, 64, generator=g)}
    w["child"] = {"w": w["s"]["w"] + 0.3 * torch.randn(64, 64, generator=g)}
    w["ft"] = {"w": w["s"]["w"] + 0.3 * torch.randn(64, 64, generator=g)}
    w["grandchild"] = {"w": w["ft"]["w"] + 0.1 * torch.randn(64, 64, generator=g)}
    w["m"] = {"w": (w["ft"]["w"] + w["twin"]["w"]) / 2}
    edges = [Edge("s", "twin", 0.9), Edge("twin", "child", 0.8), Edge("s", "ft", 0.9), Edge("ft", "grandchild", 0.9),
             Edge("twin", "m", 0.9), Edge("ft", "m", 0.9)]
    moved = {(e.parent, e.child) for e in near_copy_parents(edges, lambda m: w[m])}
    assert moved == {("s", "twin"), ("s", "child"), ("s", "ft"), ("ft", "grandchild"), ("twin", "m"), ("ft", "m")}


def _magnitude_pruned(w: torch.Tensor, amount: float, g: torch.Generator, noise: float = 0.05) -> torch.Tensor:
    """Global magnitude pruning of ``w`` then a fine-tune that keeps the mask (noise on the kept weights)."""
    keep = w.abs() > w.abs().flatten().kthvalue(int(amount * w.numel())).values
    return torch.where(keep, w + noise * torch.randn(w.shape, generator=g), torch.zeros(()))


def test_a_pruned_model_goes_to_the_model_whose_smallest_weights_it_zeroed():
    """A 50 % pruning of src sits nearer src's 20 % pruning (which kept a subset of the same zeros) than src, but only
    src's smallest weights are exactly its zeros: the query and the forest name src; a 50 % pruning of the 20 % one
    stays under it; a dense model shows no mask."""
    g = torch.Generator().manual_seed(0)
    w = {"src": {"w": torch.randn(64, 64, generator=g)}}
    w["p20"] = {"w": _magnitude_pruned(w["src"]["w"], 0.2, g)}
    w["p50"] = {"w": _magnitude_pruned(w["src"]["w"], 0.5, g)}
    w["p20-p50"] = {"w": _magnitude_pruned(w["p20"]["w"], 0.5, g)}
    w["ft"] = {"w": w["src"]["w"] + 0.05 * torch.randn(64, 64, generator=g)}
    assert zeros_selected(w["p50"], w["src"]) == 1.0 and not pruned_from(zeros_selected(w["p50"], w["p20"]))
    assert pruned_from(zeros_selected(w["p20-p50"], w["p20"]))
    assert not pruned_from(zeros_selected(w["p20-p50"], w["src"]))
    assert zeros_selected(w["ft"], w["src"]) is None

    def ranked(suspect: str) -> list[str]:
        hits = [Hit("p20", 0.9, ["p20", "src"], probability=0.999, derived=True, supported=True,
                    zeros=zeros_selected(w[suspect], w["p20"])),
                Hit("src", 0.9, ["src"], probability=0.998, derived=True, supported=True,
                    zeros=zeros_selected(w[suspect], w["src"]))]
        return [h.model_id for h in _rank(hits, _verdict_strength, _verdict_explains)]

    assert ranked("p50") == ["src", "p20"] and ranked("p20-p50") == ["p20", "src"]
    edges = [Edge("src", "p20", 0.9), Edge("p20", "p50", 0.8), Edge("p20", "p20-p50", 0.8)]
    moved, roots = pruning_parents(edges, ["src"], {}, lambda m: w[m])
    assert {(e.parent, e.child) for e in moved} == {("src", "p20"), ("src", "p50"), ("p20", "p20-p50")}
    # a pruning the edge model left as a root hangs from the candidate whose smallest weights are its zeros
    moved, roots = pruning_parents([Edge("src", "ft", 0.9)], ["src", "p50"], {"p50": ["ft", "src"]}, lambda m: w[m])
    assert roots == ["src"] and ("src", "p50") in {(e.parent, e.child) for e in moved}
    assert near_copy_parents(moved, lambda m: w[m]) == moved
