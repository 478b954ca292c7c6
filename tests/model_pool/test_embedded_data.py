import pytest
import torch

from model_pool.data import list_datasets, load_dataset
from model_pool.data.digits import task_spec
from model_pool.errors import BadInput


def test_digits_is_real_and_split():
    d = load_dataset("digits")
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert d.x_train.dtype == torch.float32 and 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    assert sorted(d.y_test.unique().tolist()) == list(range(10))


def test_digits_tasks_are_deterministic_and_distinct():
    a, b = load_dataset("digits-tasks", task=3), load_dataset("digits-tasks", task=3)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    specs = {(tuple(task_spec(k)["transforms"]), tuple(task_spec(k)["permutation"])) for k in range(12)}
    assert len(specs) == 12
    src = load_dataset("digits")
    for k in range(10):
        t = load_dataset("digits-tasks", task=k)
        assert t.num_classes == 10 and not torch.equal(t.x_train, src.x_train)
        # labels are a permutation of the source labels
        perm = torch.tensor(task_spec(k)["permutation"])
        assert torch.equal(t.y_train, perm[src.y_train])


def test_digits_class_subset():
    t = load_dataset("digits-tasks", task="2:5")
    assert t.num_classes == 5 and t.y_train.max() == 4 and len(t.classes) == 5
    assert t.name == "digits-tasks/2:5"
    with pytest.raises(ValueError):
        load_dataset("digits-tasks", task="2:x")


def test_subsets_are_seeded():
    a = load_dataset("digits", n_train=100, seed=1)
    b = load_dataset("digits", n_train=100, seed=1)
    assert len(a.y_train) == 100 and torch.equal(a.x_train, b.x_train)


def test_synthetic_topics_tasks():
    a = load_dataset("synthetic-topics", task=0)
    b = load_dataset("synthetic-topics", task=4)
    assert a.kind == "text" and a.x_train.dtype == torch.int64 and a.x_train.shape[1] == a.input["max_length"]
    assert (a.x_train[:, 0] == a.meta["tokenizer"].token_to_id("[CLS]")).all()
    assert a.num_classes == 4 and a.classes != b.classes
    assert a.input["vocab_size"] == b.input["vocab_size"]  # one shared tokenizer across tasks


def test_registry_lists_embedded_and_user_side_datasets():
    names = list_datasets()
    for n in ["digits", "digits-tasks", "synthetic-topics", "cifar10", "cifar100", "mnist", "fashion-mnist",
              "ag_news", "dbpedia", "yelp", "yahoo_answers", "amazon", "20newsgroups"]:
        assert n in names
    with pytest.raises(BadInput, match="unknown dataset"):
        load_dataset("nope")


def test_topics_token_ids_are_identical_across_processes():
    import os
    import subprocess
    import sys

    code = ("from model_pool.data import load_dataset; d = load_dataset('synthetic-topics', task=2); "
            "print(int(d.x_train.sum()), d.input['vocab_size'])")
    # another process with another string-hash seed than this one's
    env = {**os.environ, "PYTHONHASHSEED": str(int(os.environ.get("PYTHONHASHSEED", "0") or 0) + 1)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    here = load_dataset("synthetic-topics", task=2)
    assert out == f"{int(here.x_train.sum())} {here.input['vocab_size']}\n"


def test_the_shapes_task_is_deterministic_and_its_surrogate_has_no_labelled_shape():
    from model_pool.data import load_dataset

    a, b = load_dataset("shapes"), load_dataset("shapes")
    assert a.x_train.shape == (4000, 3, 32, 32) and a.x_test.shape == (1000, 3, 32, 32) and a.num_classes == 10
    assert torch.equal(a.x_train, b.x_train) and 0 <= float(a.x_train.min()) and float(a.x_train.max()) <= 1
    assert sorted(torch.bincount(a.y_train).tolist())[0] > 300  # every class present
    t = load_dataset("shapes-tasks", task="1:5", channels=1, image_size=16)
    assert t.num_classes == 5 and t.x_train.shape[1:] == (1, 16, 16) and int(t.y_train.max()) == 4
    for other in ("shapes-textures", "shapes-public"):
        o = load_dataset(other)
        assert o.x_train.shape == a.x_train.shape and not torch.equal(o.x_train, a.x_train)
