"""User-side loaders, offline: each reads a tiny fixture written in that dataset's on-disk format."""
import pickle
import struct

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from model_pool.data import load_dataset


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    import socket

    def refuse(*a, **k):
        raise AssertionError("a loader tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _cifar(root, folder, files, label_key, n_classes, rng):
    (root / folder).mkdir(parents=True)
    for name in files:
        n = 40
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 label_key: rng.integers(0, n_classes, n).tolist()}
        (root / folder / name).write_bytes(pickle.dumps(entry))


def test_cifar10_and_cifar100_subsets(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)  # fixture has no real md5
    _cifar(tmp_path, "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "labels", 10, rng)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    d = load_dataset("cifar10", root=tmp_path)
    assert d.x_train.shape == (200, 3, 32, 32) and d.x_test.shape == (40, 3, 32, 32) and d.classes[3] == "c3"
    assert d.x_train.dtype == torch.float32 and abs(float(d.x_train.mean())) < 1.5 and d.input["normalization"]["mean"][0] == 0.4914

    _cifar(tmp_path, "cifar-100-python", ["train", "test"], "fine_labels", 100, rng)
    (tmp_path / "cifar-100-python" / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"f{i}" for i in range(100)]}))
    full = load_dataset("cifar100", root=tmp_path)
    sub = load_dataset("cifar100", task=3, root=tmp_path)
    assert full.num_classes == 100 and sub.num_classes == 10 and sub.name == "cifar100/3"
    assert sub.classes == [f"f{i}" for i in range(30, 40)]
    expected = int(((full.y_train >= 30) & (full.y_train < 40)).sum())
    assert len(sub.y_train) == expected and (sub.y_train.max() <= 9) and (sub.y_train.min() >= 0)
    assert len(load_dataset("cifar10", root=tmp_path, n_train=17).y_train) == 17


def _idx(path, arr, magic):
    path.write_bytes(struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in arr.shape) + arr.tobytes())


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_family_idx_files(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 30), ("t10k", 12)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), 2051)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8), 2049)
    d = load_dataset(name, root=tmp_path)
    assert d.x_train.shape == (30, 1, 28, 28) and d.y_test.shape == (12,) and d.num_classes == 10


HF_ROWS = {
    "ag_news": lambda i: {"text": f"story {i} about topic {i % 4}", "label": i % 4},
    "dbpedia": lambda i: {"label": i % 14, "title": f"Title{i}", "content": f"entity {i % 14} content"},
    "yelp": lambda i: {"label": i % 5, "text": f"review {i} stars {i % 5}"},
    "yahoo_answers": lambda i: {"id": i, "topic": i % 10, "question_title": f"q{i}", "question_content": "why",
                                "best_answer": f"because {i % 10}"},
    "amazon": lambda i: {"label": i % 2, "title": "item", "content": f"was {'good' if i % 2 else 'bad'}"},
}


@pytest.mark.parametrize("name", sorted(HF_ROWS))
def test_hf_parquet_datasets(tmp_path, name):
    folder = tmp_path / name / "data"
    folder.mkdir(parents=True)
    pd.DataFrame([HF_ROWS[name](i) for i in range(40)]).to_parquet(folder / "train-00000-of-00001.parquet")
    pd.DataFrame([HF_ROWS[name](i) for i in range(12)]).to_parquet(folder / "test-00000-of-00001.parquet")
    d = load_dataset(name, root=tmp_path, max_length=16, vocab_size=200)
    assert d.kind == "text" and d.x_train.shape == (40, 16) and d.x_train.dtype == torch.int64
    assert d.y_train.max() < d.num_classes and len(d.classes) == d.num_classes
    assert (d.x_train == 0).any()  # short texts are padded with id 0


def test_pretrained_tokenizer_is_used(tmp_path):
    from model_pool.data.tokenize import train_wordpiece

    folder = tmp_path / "ag_news"
    folder.mkdir()
    pd.DataFrame([HF_ROWS["ag_news"](i) for i in range(20)]).to_parquet(folder / "train.parquet")
    pd.DataFrame([HF_ROWS["ag_news"](i) for i in range(8)]).to_parquet(folder / "test.parquet")
    tok = train_wordpiece(["story about topic"] * 5, vocab_size=60)
    tok.save(str(tmp_path / "tokenizer.json"))
    d = load_dataset("ag_news", root=tmp_path, tokenizer=str(tmp_path / "tokenizer.json"), max_length=8)
    assert d.input["vocab_size"] == tok.get_vocab_size()


def test_20newsgroups_tree(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for cat in ("sci.space", "rec.autos"):
            d = tmp_path / "20newsgroups" / f"20news-bydate-{split}" / cat
            d.mkdir(parents=True)
            for i in range(n):
                (d / str(i)).write_bytes(f"From: a@b\nSubject: {cat} {i}\n\nbody about {cat}".encode("latin1"))
    d = load_dataset("20newsgroups", root=tmp_path, max_length=12, vocab_size=100)
    assert d.classes == ["rec.autos", "sci.space"] and d.x_train.shape == (6, 12) and len(d.y_test) == 4


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist", "fashion-mnist", "ag_news", "dbpedia", "yelp",
                                  "yahoo_answers", "amazon", "20newsgroups"])
def test_missing_data_says_how_to_download(tmp_path, name):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_dataset(name, root=tmp_path / "empty")
