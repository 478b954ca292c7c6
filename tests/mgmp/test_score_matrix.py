"""``mgmp score-matrix``: all pairs of a pool, scheduled on an executor, cached in the registry."""
import json
import math
import shutil

from mgmp.cli import main
from mgmp.commands.score_matrix import show
from mgmp.scores import compute, create_score, load_pair
from mgmp.scores.matrix import MatrixReport, pair_graph, score_matrix
from model_pool.pool import Pool

IDS = ["ft", "ft-q8", "ind", "soup", "src", "tr-10way", "tr-5way"]


def _copy(pool, tmp_path, name):
    """A private copy of the session pool (the matrix writes its scores cache)."""
    return shutil.copytree(pool, tmp_path / name)


def test_pair_graph_runs_each_source_first_pair_first():
    graph = pair_graph([("a", "b"), ("a", "c"), ("b", "a"), ("a", "d")])
    assert graph == {("a", "b"): [], ("a", "c"): [("a", "b")], ("b", "a"): [], ("a", "d"): [("a", "b")]}


def test_matrix_scores_every_pair_once_then_reads_the_cache(tiny_pool, tmp_path, capsys, monkeypatch):
    pool = _copy(tiny_pool, tmp_path, "p")
    monkeypatch.setenv("COLUMNS", "80")
    out = tmp_path / "m.json"
    assert main(["score-matrix", str(pool), "--method", "dna", "--json", str(out)]) == 0
    first = json.loads(out.read_text())
    assert first["n_computed"] == len(IDS) * (len(IDS) - 1) and first["n_cached"] == 0 and first["ok"]
    assert set(first["matrix"]) == set(IDS) and all(len(row) == len(IDS) - 1 for row in first["matrix"].values())
    # the same numbers as one `mgmp score`, which now reads them from the cache
    hit = compute(create_score("dna"), load_pair(f"{pool}::src", f"{pool}::ft"))
    assert hit.cached and hit.value == first["matrix"]["src"]["ft"]
    assert main(["score-matrix", str(pool), "--method", "dna", "--json", str(out)]) == 0
    second = json.loads(out.read_text())
    assert second["n_cached"] == first["n_computed"] and second["n_computed"] == 0
    assert second["matrix"] == first["matrix"]
    # printed 80 wide: the 7 x 7 matrix fits whole; 8 suspects with 18-character ids do not: the most related pairs
    printed = capsys.readouterr().out.splitlines()
    assert max(map(len, printed)) <= 80 and "\u2026" not in "".join(printed)
    assert any(line.split()[:1] == ["suspect"] and sorted(line.split()[1:]) == IDS for line in printed)  # its header
    long = [f"hom-t{i}-ft-heavy-x" for i in range(8)]
    show(MatrixReport("p", "dna", {}, "", long, long, {(a, b): 0.5 for a in long for b in long if a != b}))
    printed = capsys.readouterr().out.splitlines()
    assert max(map(len, printed)) <= 80 and "most related 30" in " ".join(printed)
    assert sum(line.split() == [a, b, "0.500"] for line in printed for a in long for b in long) == 30


def test_sources_suspects_and_bad_ids(tiny_pool, tmp_path, capsys):
    pool = _copy(tiny_pool, tmp_path, "p")
    with Pool.open(pool) as opened:
        rep = score_matrix(opened, "modeldiff", {"n_points": 20}, sources=["src"], suspects=["ft", "ind", "src"])
        assert sorted(rep.values) == [("src", "ft"), ("src", "ind")] and rep.ok
        assert rep.value("src", "ft") > rep.value("src", "ind")  # a fine-tune is closer than an independent model
        assert opened.registry.get_score("src", "ft", "modeldiff", create_score("modeldiff", n_points=20).params_hash())
    assert main(["score-matrix", str(pool), "--method", "dna", "--sources", "nope"]) == 2
    assert "unknown source model 'nope'" in capsys.readouterr().err


def test_ray_matrix_equals_local(ray_session, tiny_pool, tmp_path):
    """The same pair scores from Ray tasks (2 CPUs) as inline; cache counts as in the local run."""
    with Pool.open(_copy(tiny_pool, tmp_path, "local")) as a, Pool.open(_copy(tiny_pool, tmp_path, "ray")) as b:
        local = score_matrix(a, "dna")
        ray = score_matrix(b, "dna", executor="ray", workers=2)
    assert ray.ok and len(ray.computed) == len(local.computed) == len(IDS) * (len(IDS) - 1) and not ray.cached
    assert set(ray.values) == set(local.values)
    for pair, v in local.values.items():
        assert math.isclose(ray.values[pair], v, rel_tol=1e-5, abs_tol=1e-6), pair  # thread counts may reorder sums
