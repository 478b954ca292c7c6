"""User-side loaders, offline: each reads a tiny fixture written in tmp_path in that dataset's real on-disk format."""
import pickle
import socket
import struct

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from model_pool.data import load_dataset
from model_pool.data.tokenize import train_wordpiece
from model_pool.errors import BadInput

CIFAR_SHAPE = (3, 32, 32)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any socket connection fails the test: loaders must not touch the network unless download=True."""
    def refuse(*a, **k):
        raise AssertionError("a loader tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def no_md5(monkeypatch):
    """Fixture CIFAR files cannot match torchvision's md5s; its data and meta checks both go through this one."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)


def _denormalise(d) -> torch.Tensor:
    """Undo ``input['normalization']`` and rescale to the 0..255 bytes the fixture wrote."""
    n = d.input["normalization"]
    m, s = torch.tensor(n["mean"]).view(1, -1, 1, 1), torch.tensor(n["std"]).view(1, -1, 1, 1)
    return ((d.x_train * s + m) * 255).round()


def _pickle(path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def _cifar_batch(labels, label_key, rng) -> dict:
    """A CIFAR python batch: rows of 3072 bytes (R, G, B planes of 32x32) and a label list."""
    return {"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8), label_key: list(labels)}


def test_cifar10(tmp_path, no_md5):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    batches = [_cifar_batch(np.arange(4) + 2 * i, "labels", rng) for i in range(5)]  # 20 images, labels 0..9
    for i, b in enumerate(batches, 1):
        _pickle(folder / f"data_batch_{i}", b)
    _pickle(folder / "test_batch", _cifar_batch(np.arange(10), "labels", rng))
    _pickle(folder / "batches.meta", {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                      "horse", "ship", "truck"]})
    d = load_dataset("cifar10", root=str(tmp_path))
    assert d.name == "cifar10" and d.kind == "image" and d.num_classes == 10 and d.classes[3] == "cat"
    assert d.x_train.shape == (20, *CIFAR_SHAPE) and d.x_test.shape == (10, *CIFAR_SHAPE)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.input["shape"] == list(CIFAR_SHAPE) and d.input["normalization"]["mean"] == [0.4914, 0.4822, 0.4465]
    raw = np.concatenate([b["data"] for b in batches]).reshape(-1, *CIFAR_SHAPE)
    assert torch.equal(_denormalise(d), torch.from_numpy(raw).float())  # channel layout and normalisation
    assert d.y_train.tolist() == np.concatenate([b["labels"] for b in batches]).tolist()

    sub = load_dataset("cifar10", root=str(tmp_path), n_train=7, n_test=3, seed=1)
    ref = d.subset(7, 3, seed=1)
    assert torch.equal(sub.x_train, ref.x_train) and torch.equal(sub.y_test, ref.y_test) and len(sub.y_train) == 7

    (folder / "test_batch").unlink()
    with pytest.raises(BadInput, match="test_batch"):
        load_dataset("cifar10", root=str(tmp_path))


def test_cifar100_whole_and_paper_subsets(tmp_path, no_md5):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    train_labels = rng.permutation(np.repeat(np.arange(100), 2))  # every fine class twice, shuffled
    coarse = {"coarse_labels": list(train_labels // 5)}
    _pickle(folder / "train", _cifar_batch(train_labels, "fine_labels", rng) | coarse)
    _pickle(folder / "test", _cifar_batch(np.arange(100), "fine_labels", rng) | {"coarse_labels": [0] * 100})
    _pickle(folder / "meta", {"fine_label_names": [f"fine{i:02d}" for i in range(100)],
                              "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    full = load_dataset("cifar100", root=str(tmp_path))
    assert full.num_classes == 100 and full.x_train.shape == (200, *CIFAR_SHAPE) and full.classes[99] == "fine99"

    sub = load_dataset("cifar100", task=3, root=str(tmp_path))
    keep = (full.y_train >= 30) & (full.y_train < 40)
    assert sub.name == "cifar100/3" and sub.num_classes == 10 and sub.classes == [f"fine{i}" for i in range(30, 40)]
    assert sorted(set(sub.y_train.tolist())) == list(range(10)) and len(sub.y_test) == 10
    assert torch.equal(sub.x_train, full.x_train[keep]) and torch.equal(sub.y_train, full.y_train[keep] - 30)
    assert sub.meta["fine_classes"] == list(range(30, 40))
    assert len(load_dataset("cifar100", task="3", root=str(tmp_path), n_train=5).y_train) == 5
    with pytest.raises(ValueError, match="0..9"):
        load_dataset("cifar100", task=10, root=str(tmp_path))


def _idx(path, arr: np.ndarray, magic: int) -> None:
    """An uncompressed idx-ubyte file: big-endian magic, dims, then the uint8 payload."""
    path.write_bytes(struct.pack(f">{1 + arr.ndim}I", magic, *arr.shape) + arr.tobytes())


@pytest.mark.parametrize("name, folder, first_class", [("mnist", "MNIST", "0 - zero"),
                                                       ("fashion-mnist", "FashionMNIST", "T-shirt/top")])
def test_mnist_family(tmp_path, name, folder, first_class):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    images = {}
    for prefix, n in (("train", 20), ("t10k", 10)):
        images[prefix] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        _idx(raw / f"{prefix}-images-idx3-ubyte", images[prefix], 2051)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8), 2049)
    d = load_dataset(name, root=str(tmp_path))
    assert d.x_train.shape == (20, 1, 28, 28) and d.x_test.shape == (10, 1, 28, 28) and d.x_test.dtype == torch.float32
    assert d.y_train.dtype == torch.int64 and d.y_test.tolist() == list(range(10))
    assert d.num_classes == 10 and d.classes[0] == first_class and d.input["shape"] == [1, 28, 28]
    assert torch.equal(_denormalise(d)[:, 0], torch.from_numpy(images["train"]).float())
    assert len(load_dataset(name, root=str(tmp_path), n_train=6).y_train) == 6
    with pytest.raises(ValueError, match="no tasks"):
        load_dataset(name, task=1, root=str(tmp_path))


# name: (hub repo subfolder, shards per split, row maker with every hub column, first class name, num classes)
HF_FIXTURES = {
    "ag_news": ("data", 1, lambda i: {"text": f"headline{i} story", "label": i % 4}, "World", 4),
    "dbpedia": ("dbpedia_14", 1, lambda i: {"label": i % 14, "title": f"title{i}", "content": "entity content"},
                "Company", 14),
    "yelp": ("yelp_review_full", 1, lambda i: {"label": i % 5, "text": f"review{i} text"}, "1 star", 5),
    "yahoo_answers": ("yahoo_answers_topics", 1,
                      lambda i: {"id": i, "topic": i % 10, "question_title": f"title{i}", "question_content": "qbody",
                                 "best_answer": "answer"}, "Society & Culture", 10),
    "amazon": ("amazon_polarity", 2, lambda i: {"label": i % 2, "title": f"title{i}", "content": "content"},
               "negative", 2),
}


def _hf_repo(root, name, n_train=20, n_test=10):
    """A dataset dir as ``huggingface-cli download --local-dir`` leaves it: sharded parquet plus its .cache."""
    sub, shards, row, *_ = HF_FIXTURES[name]
    folder = root / name / sub
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        rows = np.array_split(np.arange(n), shards)
        for k, ids in enumerate(rows):
            pd.DataFrame([row(int(i)) for i in ids]).to_parquet(folder / f"{split}-{k:05d}-of-{shards:05d}.parquet")
    meta = root / name / ".cache" / "huggingface" / "download" / sub
    meta.mkdir(parents=True)
    (meta / f"train-00000-of-{shards:05d}.parquet.metadata").write_text("sha\netag\n")


@pytest.mark.parametrize("name", sorted(HF_FIXTURES))
def test_hf_parquet_datasets(tmp_path, name):
    _hf_repo(tmp_path, name)
    *_, first_class, n_classes = HF_FIXTURES[name]
    d = load_dataset(name, root=str(tmp_path), max_length=16, vocab_size=200)
    assert d.name == name and d.kind == "text" and d.num_classes == n_classes == len(d.classes)
    assert d.classes[0] == first_class
    assert d.x_train.shape == (20, 16) and d.x_test.shape == (10, 16) and d.x_train.dtype == torch.int64
    assert d.y_train.dtype == torch.int64 and 0 <= int(d.y_train.min()) and int(d.y_train.max()) < n_classes
    label = "topic" if name == "yahoo_answers" else "label"
    assert d.y_train.tolist() == [HF_FIXTURES[name][2](i)[label] for i in range(20)]  # shards concatenated in order
    assert (d.x_train == 0).any() and d.input["max_length"] == 16  # short texts are right-padded with id 0
    assert d.input["tokenizer"] == "wordpiece-trained" and d.input["vocab_size"] == d.meta["tokenizer"].get_vocab_size()
    text = d.meta["tokenizer"].decode(d.x_train[3].tolist())
    assert "title3" in text or "headline3" in text or "review3" in text  # the first text column, row kept in order
    if name in ("dbpedia", "amazon", "yahoo_answers"):
        assert "content" in text or ("qbody" in text and "answer" in text)  # further columns joined in

    sub = load_dataset(name, root=str(tmp_path), max_length=16, vocab_size=200, n_train=5, n_test=4, seed=3)
    ref = d.subset(5, 4, seed=3)
    assert torch.equal(sub.x_train, ref.x_train) and torch.equal(sub.y_test, ref.y_test)  # cached tokenizer reused


def test_text_tokenizer_cache_and_pretrained(tmp_path):
    _hf_repo(tmp_path, "ag_news")
    first = load_dataset("ag_news", root=str(tmp_path), vocab_size=150)
    assert (tmp_path / "ag_news" / "wordpiece-150.json").is_file()
    again = load_dataset("ag_news", root=str(tmp_path), vocab_size=150)
    assert first.meta["tokenizer"].get_vocab() == again.meta["tokenizer"].get_vocab()

    tok = train_wordpiece(["headline story about things"] * 5, vocab_size=60)
    tok.save(str(tmp_path / "tokenizer.json"))
    d = load_dataset("ag_news", root=str(tmp_path), tokenizer=str(tmp_path), max_length=8)
    assert d.input["tokenizer"] == str(tmp_path) and d.input["vocab_size"] == tok.get_vocab_size()
    assert d.x_train.shape == (20, 8) and int(d.x_train.max()) < tok.get_vocab_size()


def test_hf_download_writes_the_local_dir_layout(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    row = HF_FIXTURES["yelp"][2]
    hub = datasets.DatasetDict({s: datasets.Dataset.from_list([row(i) for i in range(n)])
                                for s, n in (("train", 8), ("test", 4))})
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id, **k: calls.append(hub_id) or hub)
    d = load_dataset("yelp", root=str(tmp_path), download=True, vocab_size=80)
    assert calls == ["Yelp/yelp_review_full"] and len(d.y_train) == 8 and len(d.y_test) == 4
    assert (tmp_path / "yelp" / "data" / "train-00000-of-00001.parquet").is_file()
    load_dataset("yelp", root=str(tmp_path), download=True, vocab_size=80)
    assert len(calls) == 1  # already on disk: no second fetch


def test_hf_label_out_of_range_fails_loudly(tmp_path):
    _hf_repo(tmp_path, "amazon")
    pd.DataFrame({"label": [0, 2], "title": ["a", "b"], "content": ["c", "d"]}).to_parquet(
        tmp_path / "amazon" / "amazon_polarity" / "test-00001-of-00002.parquet")
    with pytest.raises(ValueError, match=r"expected \[0, 2\)"):
        load_dataset("amazon", root=str(tmp_path))


def _newsgroups_tree(root, categories, split, n):
    for cat in categories:
        d = root / "20newsgroups" / f"20news-bydate-{split}" / cat
        d.mkdir(parents=True)
        for i in range(n):
            post = f"From: a@b.edu\nSubject: {cat} post {i}\n\nbody \xe9 {cat}"
            (d / str(50000 + i)).write_bytes(post.encode("latin1"))


def test_20newsgroups_tree(tmp_path):
    cats = ["sci.space", "rec.autos", "alt.atheism"]
    _newsgroups_tree(tmp_path, cats, "train", 4)
    _newsgroups_tree(tmp_path, cats, "test", 2)
    d = load_dataset("20newsgroups", root=str(tmp_path), max_length=12, vocab_size=100)
    assert d.classes == sorted(cats) and d.num_classes == 3
    assert d.x_train.shape == (12, 12) and d.x_test.shape == (6, 12)
    assert d.x_train.dtype == torch.int64 and sorted(d.y_test.tolist()) == [0, 0, 1, 1, 2, 2]
    assert len(load_dataset("20newsgroups", root=str(tmp_path), n_train=5).y_train) == 5

    _newsgroups_tree(tmp_path, ["talk.politics.misc"], "test", 1)
    with pytest.raises(ValueError, match="categories differ"):
        load_dataset("20newsgroups", root=str(tmp_path))


def test_20newsgroups_sklearn_cache(tmp_path):
    """After ``download=True`` sklearn keeps only its compressed cache (the extracted tree is deleted)."""
    import codecs

    from sklearn.datasets import load_files
    from sklearn.datasets._twenty_newsgroups import CACHE_NAME, _pkl_filepath

    cats = ["comp.graphics", "sci.med"]
    _newsgroups_tree(tmp_path / "src", cats, "train", 3)
    _newsgroups_tree(tmp_path / "src", cats, "test", 2)
    bunches = {s: load_files(str(tmp_path / "src" / "20newsgroups" / f"20news-bydate-{s}"), encoding="latin1")
               for s in ("train", "test")}
    folder = tmp_path / "root" / "20newsgroups"
    folder.mkdir(parents=True)
    with open(_pkl_filepath(str(folder), CACHE_NAME), "wb") as f:
        f.write(codecs.encode(pickle.dumps(bunches), "zlib_codec"))
    d = load_dataset("20newsgroups", root=str(tmp_path / "root"), max_length=10, vocab_size=80)
    assert d.classes == cats and d.x_train.shape == (6, 10) and len(d.y_test) == 4


def test_vision_download_goes_through_torchvision(tmp_path, monkeypatch):
    def fake_download(self):
        raw = tmp_path / "MNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for prefix, n in (("train", 6), ("t10k", 3)):
            _idx(raw / f"{prefix}-images-idx3-ubyte", np.zeros((n, 28, 28), np.uint8), 2051)
            _idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8), 2049)

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fake_download)
    d = load_dataset("mnist", root=str(tmp_path), download=True)
    assert d.x_train.shape == (6, 1, 28, 28) and d.y_test.tolist() == [0, 1, 2]


@pytest.mark.parametrize("name, path", [
    ("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("mnist", "MNIST/raw"),
    ("fashion-mnist", "FashionMNIST/raw"), ("ag_news", "ag_news"), ("dbpedia", "dbpedia"), ("yelp", "yelp"),
    ("yahoo_answers", "yahoo_answers"), ("amazon", "amazon"), ("20newsgroups", "20newsgroups/20news-bydate-train"),
])
def test_missing_data_says_where_and_how_to_download(tmp_path, name, path):
    root = tmp_path / "empty"
    with pytest.raises(BadInput, match="download=True") as err:
        load_dataset(name, root=str(root))
    msg = str(err.value)
    assert "\n" not in msg and str(root / path) in msg
    assert not root.exists()  # reading never creates anything


def test_root_defaults_to_mgmp_data(tmp_path, monkeypatch):
    monkeypatch.setenv("MGMP_DATA", str(tmp_path / "env-root"))
    with pytest.raises(BadInput, match="env-root"):
        load_dataset("mnist")
