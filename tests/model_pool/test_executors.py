"""Executors and the DAG loop: inline and Ray runs of the same plan give the same pool (real local Ray)."""
import os
import sys
from concurrent.futures import Future

import pytest

from mgmp.cli import main
from model_pool.builder import build_pool
from model_pool.dag import run_dag
from model_pool.errors import MgmpError
from model_pool.executors import RAY_HINT, InlineExecutor, create_executor, local_processes
from model_pool.plan import parse_plan
from model_pool.registry import PoolRegistry
from tests.conftest import TINY_PLAN


def _boom(x):
    raise ValueError(f"bad {x}")


def test_run_dag_runs_parents_first_and_hands_every_outcome_to_the_driver():
    graph = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "skip": ["a"]}
    started, outcomes = [], {}

    def start(node):
        started.append(node)
        if node == "skip":
            return None
        return (_boom, node) if node == "c" else (str.upper, node)

    run_dag(graph, InlineExecutor(), start, lambda n, res, err: outcomes.setdefault(n, (res, err)))
    assert started[0] == "a" and started[-1] == "d" and set(started) == set(graph)
    assert outcomes["a"] == ("A", None) and outcomes["d"] == ("D", None) and "skip" not in outcomes
    assert isinstance(outcomes["c"][1], ValueError) and outcomes["c"][0] is None


def test_inline_executor_returns_finished_futures():
    fut = InlineExecutor().submit(_boom, 1)
    assert isinstance(fut, Future) and fut.done() and str(fut.exception()) == "bad 1"


def test_local_workers_size_every_thread_pool_to_their_share_of_the_cores():
    """OpenMP (torch's) and BLAS pools of each worker: cores // workers (a BLAS pool per core per worker
    made parallel pair scores slower than one process). The probe is a library function, so the worker
    imports no test code (conftest sets torch's threads itself)."""
    from threadpoolctl import threadpool_info

    share = max(1, (os.cpu_count() or 1) // 2)
    ex = local_processes(2)
    try:
        pools = ex.submit(threadpool_info).result(timeout=120)
    finally:
        ex.shutdown()
    assert any(p["user_api"] == "blas" for p in pools)
    assert {p["num_threads"] for p in pools} == {share}


@pytest.mark.parametrize("kw, msg", [({"kind": "dask"}, "unknown executor"), ({"workers": 0}, "at least 1"),
                                     ({"address": "auto"}, "with --executor ray")])
def test_bad_executor_arguments_are_mgmp_errors(kw, msg):
    with pytest.raises(MgmpError, match=msg):
        create_executor(**kw)


def test_missing_ray_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    import yaml

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    cfg = tmp_path / "plan.yaml"
    cfg.write_text(yaml.safe_dump(TINY_PLAN))
    assert main(["pool", "build", str(cfg), "--out", str(tmp_path / "p"), "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mgmp: error: {RAY_HINT}"]


def _lineage(pool):
    with PoolRegistry(pool) as reg:
        return {r.id: (r.relation, tuple(r.parents), r.task, r.split) for r in reg.models()}


def test_ray_build_gives_the_local_model_set_and_isolates_failures(ray_session, tiny_pool, tmp_path):
    """TINY_PLAN plus a failing job and its child, built as Ray tasks: the same models, ids, relations and
    parents as the inline build; the failure comes back as the job's own one-line error; resume skips all."""
    plan = {**TINY_PLAN, "models": TINY_PLAN["models"] + [
        {"id": "bad", "recipe": "finetune", "parent": "src", "dataset": "digits-tasks", "task": "1:5", "params": {"epochs": 1}},
        {"id": "bad-child", "recipe": "quantize", "parent": "bad", "dataset": "digits"}]}
    report = build_pool(parse_plan(plan), tmp_path / "ray", workers=2, executor="ray")
    assert set(report.built) == set(_lineage(tiny_pool))
    assert report.failed["bad"].startswith("BadInput: finetune: parent has 10 classes") and "use transfer" in report.failed["bad"]
    assert report.blocked == ["bad-child"]
    assert _lineage(tmp_path / "ray") == _lineage(tiny_pool)
    assert ray_session.is_initialized()  # a session it did not start is left running
    again = build_pool(parse_plan(TINY_PLAN), tmp_path / "ray", workers=2, executor="ray", resume=True)
    assert again.built == [] and set(again.skipped) == set(_lineage(tiny_pool))
