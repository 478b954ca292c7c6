"""Pool builder: a tiny plan end to end, failures isolated, resume refused without --resume (kill -9 and resume: test_reliability)."""
import json

import pytest

from model_pool.builder import build_pool
from model_pool.errors import MgmpError
from model_pool.io import load_model_dir
from model_pool.plan import parse_plan
from model_pool.registry import PoolRegistry
from tests.conftest import TINY_CNN, TINY_PLAN


def test_tiny_pool_is_complete_and_consistent(tiny_pool):
    with PoolRegistry(tiny_pool) as reg:
        rows = {r.id: r for r in reg.models()}
        assert set(rows) == {"src", "ft", "tr-10way", "tr-5way", "ft-q8", "soup", "ind"}
        assert reg.parents("soup") == ["src", "ft"]
        assert reg.ancestors("ft-q8") == {"ft": 1, "src": 2}
        assert rows["tr-5way"].task == "digits-tasks/2:5" and rows["tr-5way"].split == "eval"
        assert rows["ft-q8"].relation == "quantize" and set(reg.roots()) == {"src", "ind"}
        for r in rows.values():
            model, card = load_model_dir(tiny_pool / r.path)
            assert card.sha256 == r.sha256
            chance = 1 / card.num_classes
            assert r.metrics["test_acc"] > chance + 0.2, (r.id, r.metrics)


def test_failed_job_does_not_poison_the_rest(tmp_path):
    plan = parse_plan({"models": [
        {"id": "src", "recipe": "scratch", **TINY_CNN, "dataset": "digits", "data": {"n_train": 200}, "params": {"epochs": 1}},
        {"id": "bad", "recipe": "finetune", "parent": "src", "dataset": "digits-tasks", "task": "1:5", "params": {"epochs": 1}},
        {"id": "bad-child", "recipe": "quantize", "parent": "bad", "dataset": "digits"},
        {"id": "good", "recipe": "quantize", "parent": "src", "dataset": "digits", "data": {"n_test": 50}},
    ]})
    report = build_pool(plan, tmp_path / "p")
    assert set(report.built) == {"src", "good"}
    assert "use transfer" in report.failed["bad"] and report.blocked == ["bad-child"]
    assert not report.ok


def test_second_build_needs_resume_and_plan_changes_are_caught(tiny_pool, tmp_path):
    with pytest.raises(MgmpError, match="--resume"):
        build_pool(parse_plan(TINY_PLAN), tiny_pool)
    report = build_pool(parse_plan(TINY_PLAN), tiny_pool, resume=True)
    assert report.built == [] and len(report.skipped) == len(parse_plan(TINY_PLAN).jobs)
    changed = json.loads(json.dumps(TINY_PLAN))
    changed["models"][0]["seed"] = 5
    with pytest.raises(MgmpError, match="another plan entry"):
        build_pool(parse_plan(changed), tiny_pool, resume=True)
