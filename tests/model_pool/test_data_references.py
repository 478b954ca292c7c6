"""Data references (SPEC §11): imagefolder:, npz:, csv:, jsonl:, hf-disk: files loaded as TaskData."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from model_pool.data import load_dataset
from model_pool.data.references import SCHEMES, is_data_ref, load_data_ref
from model_pool.data.tokenize import word_level
from model_pool.errors import BadInput

WORDS = ["red", "green", "blue", "apple", "pear", "plum"]


def _png(path, colour, mode="RGB", size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


def _folder(root, n=(3, 2)):
    """cat: white images (one grey-scale, one unreadable file); dog: black images."""
    for i in range(n[0]):
        _png(root / "cat" / f"{i}.png", (255, 255, 255) if i else 255, mode="RGB" if i else "L")
    (root / "cat" / "broken.png").write_bytes(b"not a png")
    (root / "cat" / "notes.txt").write_text("ignored")
    for i in range(n[1]):
        _png(root / "dog" / f"{i}.png", (0, 0, 0))
    return root


@pytest.fixture()
def tok_path(tmp_path):
    p = tmp_path / "tok" / "tokenizer.json"
    p.parent.mkdir()
    word_level(WORDS).save(str(p))
    return p


def _rows(n=10):
    """Colour rows start with "red", fruit rows with "green"."""
    return [{"text": f"{WORDS[i % 2]} {WORDS[3 + i % 3]}", "label": ["colour", "fruit"][i % 2]} for i in range(n)]


def test_schemes_and_is_data_ref():
    assert set(SCHEMES) == {"imagefolder", "npz", "csv", "jsonl", "hf-disk"}
    assert is_data_ref("npz:/x.npz") and is_data_ref("hf-disk:d") and is_data_ref("imagefolder:./imgs")
    assert not is_data_ref("digits") and not is_data_ref("cifar100") and not is_data_ref("npz") and not is_data_ref("s3:x")


def test_imagefolder_resizes_normalises_and_maps_classes(tmp_path):
    root = _folder(tmp_path / "imgs")
    ref = f"imagefolder:{root}"
    d = load_data_ref(ref, shape=[3, 6, 5], mean=[0.5, 0.5, 0.5], std=0.5, split_seed=1, test_fraction=0.4)
    assert d.name == ref and d.classes == ["cat", "dog"] and d.num_classes == 2 and d.kind == "image"
    assert d.input == {"kind": "image", "shape": [3, 6, 5], "normalization": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    assert d.meta["source"] == str(root) and d.meta["split"] == {"seed": 1, "test_fraction": 0.4}
    x, y = torch.cat([d.x_train, d.x_test]), torch.cat([d.y_train, d.y_test])
    assert x.shape == (5, 3, 6, 5) and x.dtype == torch.float32 and y.dtype == torch.int64  # broken.png skipped
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1]
    assert (x[y == 0] == 1.0).all() and (x[y == 1] == -1.0).all()  # white -> 1, black -> -1

    grey = load_data_ref(ref, shape=[1, 4, 4])  # default: [0, 1], no normalisation
    xg = torch.cat([grey.x_train, grey.x_test])
    assert xg.shape == (5, 1, 4, 4) and set(xg.unique().tolist()) == {0.0, 1.0}
    assert grey.input["normalization"] == {"mean": [0.0], "std": [1.0]}


def test_imagefolder_train_test_subfolders_are_the_splits(tmp_path):
    _folder(tmp_path / "imgs" / "train", n=(3, 2))
    _folder(tmp_path / "imgs" / "test", n=(2, 1))
    d = load_dataset(f"imagefolder:{tmp_path / 'imgs'}", shape=[3, 10, 12])
    assert d.x_train.shape == (5, 3, 10, 12) and d.x_test.shape == (3, 3, 10, 12)
    assert d.y_train.tolist() == [0, 0, 0, 1, 1] and d.y_test.tolist() == [0, 0, 1] and "split" not in d.meta


def test_seeded_split_is_deterministic_disjoint_and_complete(tmp_path):
    x = np.arange(40, dtype=np.float32).reshape(40, 1, 1, 1)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(40) % 4)
    a, b = (load_data_ref(f"npz:{tmp_path / 'd.npz'}", split_seed=3, test_fraction=0.25) for _ in range(2))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
    train, test = set(a.x_train.flatten().tolist()), set(a.x_test.flatten().tolist())
    assert len(test) == 10 and not train & test and train | test == set(range(40))
    c = load_data_ref(f"npz:{tmp_path / 'd.npz'}", split_seed=4, test_fraction=0.25)
    assert set(c.x_test.flatten().tolist()) != test
    assert torch.equal(a.y_train, a.x_train.flatten().long() % 4)  # x and y stay paired


def test_npz_images_tokens_and_dispatch(tmp_path, tok_path):
    x = np.random.default_rng(0).normal(size=(6, 1, 8, 8))
    np.savez(tmp_path / "img.npz", x=x, y=np.array([0, 1, 2, 0, 1, 2]), x_test=x[:2], y_test=np.array([2, 2]),
             classes=np.array(["a", "b", "c"]))
    ref = f"npz:{tmp_path / 'img.npz'}"
    d = load_dataset(ref, shape=[1, 8, 8], mean=0.1, std=0.3)
    assert d.name == ref and d.classes == ["a", "b", "c"] and d.num_classes == 3
    assert d.x_train.dtype == torch.float32 and torch.allclose(d.x_train, torch.tensor(x, dtype=torch.float32))
    assert d.y_test.tolist() == [2, 2] and d.input["normalization"] == {"mean": [0.1], "std": [0.3]}
    assert load_dataset(ref, num_classes=3, n_train=4).x_train.shape == (4, 1, 8, 8)

    np.savez(tmp_path / "ids.npz", x=np.array([[2, 5, 3, 0]] * 4, dtype=np.int32), y=np.array([0, 1, 0, 1]))
    t = load_data_ref(f"npz:{tmp_path / 'ids.npz'}", tokenizer=str(tok_path))
    assert t.kind == "text" and t.x_train.dtype == torch.int64 and t.input["max_length"] == 4
    assert t.input["tokenizer"] == str(tok_path) and t.input["vocab_size"] == len(WORDS) + 5


@pytest.mark.parametrize("scheme", ["csv", "jsonl"])
def test_text_tables_tokenise_and_map_labels(tmp_path, tok_path, scheme):
    f = tmp_path / f"t.{scheme}"
    if scheme == "csv":
        f.write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in _rows()))
    else:
        f.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    d = load_data_ref(f"{scheme}:{f}", tokenizer=str(tok_path.parent), max_length=6)
    assert d.classes == ["colour", "fruit"] and d.num_classes == 2 and d.kind == "text"
    assert d.input == {"kind": "text", "tokenizer": str(tok_path.parent), "max_length": 6, "vocab_size": len(WORDS) + 5}
    x, y = torch.cat([d.x_train, d.x_test]), torch.cat([d.y_train, d.y_test])
    assert x.shape == (10, 6) and x.dtype == torch.int64 and (x[:, 4:] == 0).all()  # [CLS] w w [SEP] pad pad
    tok = d.meta["tokenizer"]
    first = [tok.id_to_token(i) for i in x[:, 1].tolist()]
    assert first == [["red", "green"][label] for label in y.tolist()] and y.bincount().tolist() == [5, 5]
    assert {tok.id_to_token(i) for i in x[:, 2].tolist()} == set(WORDS[3:])
    f.with_name("ints.csv").write_text("text,label\nred apple,1\ngreen pear,0\nblue plum,2\n")
    assert load_data_ref(f"csv:{f.with_name('ints.csv')}", tokenizer=str(tok_path)).num_classes == 3


def test_hf_disk_images_and_text(tmp_path, tok_path):
    datasets = pytest.importorskip("datasets")
    imgs = [Image.new("RGB", (12, 10), (255, 255, 255) if i % 2 else (0, 0, 0)) for i in range(6)]
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["black", "white"])})
    dd = datasets.DatasetDict({s: datasets.Dataset.from_dict({"image": imgs[:n], "label": [i % 2 for i in range(n)]},
                                                              features=feats) for s, n in (("train", 6), ("test", 2))})
    dd.save_to_disk(str(tmp_path / "hfimg"))
    d = load_dataset(f"hf-disk:{tmp_path / 'hfimg'}", shape=[1, 5, 6], mean=0.5, std=0.5)
    assert d.classes == ["black", "white"] and d.x_train.shape == (6, 1, 5, 6) and d.x_test.shape == (2, 1, 5, 6)
    assert (d.x_train[d.y_train == 1] == 1.0).all() and (d.x_train[d.y_train == 0] == -1.0).all()

    datasets.Dataset.from_list(_rows(10)).save_to_disk(str(tmp_path / "hftext"))
    t = load_data_ref(f"hf-disk:{tmp_path / 'hftext'}", tokenizer=str(tok_path), max_length=5)
    assert t.classes == ["colour", "fruit"] and len(t.y_train) == 8 and len(t.y_test) == 2 and t.x_train.shape[1] == 5


def test_bad_inputs_name_the_file_in_one_line(tmp_path, tok_path):
    def bad(ref, **kw):
        with pytest.raises(BadInput) as e:
            load_data_ref(ref, **kw)
        msg = str(e.value)
        assert "\n" not in msg
        return msg

    def npz(name, **arrays):
        np.savez(tmp_path / name, **arrays)
        return f"npz:{tmp_path / name}"

    assert str(tmp_path / "nope.npz") in bad(f"npz:{tmp_path / 'nope.npz'}")
    assert "unknown data reference scheme" in bad("zip:/a/b.zip")
    ok = np.zeros((4, 1, 2, 2), np.float32)
    for ref, kw, fault in [
        (npz("len.npz", x=ok, y=np.arange(3)), {}, "3 labels for 4"),
        (npz("neg.npz", x=ok, y=np.array([0, -1, 1, 0])), {}, "labels span [-1"),
        (npz("range.npz", x=ok, y=np.array([0, 5, 1, 0])), {"num_classes": 3}, "expected [0, 3)"),
        (npz("rank.npz", x=ok[:, 0], y=np.arange(4)), {}, "images must be"),
        (npz("shape.npz", x=ok, y=np.arange(4)), {"shape": [1, 3, 3]}, "images must be (N, 1, 3, 3)"),
        (npz("nan.npz", x=np.where(np.arange(16).reshape(4, 1, 2, 2) == 5, np.nan, 0.0), y=np.arange(4)), {}, "non-finite"),
        (npz("noy.npz", x=ok), {}, "lacks array(s) ['y']"),
        (npz("empty.npz", x=ok[:0], y=np.arange(0)), {}, "holds no samples"),
        (npz("ids.npz", x=np.ones((4, 3), np.int64), y=np.arange(4)), {}, "needs a tokenizer"),
        (npz("vocab.npz", x=np.full((4, 3), 99), y=np.arange(4)), {"tokenizer": str(tok_path)}, "vocabulary (11)"),
        (npz("dtype.npz", x=ok.astype(bool), y=np.arange(4)), {}, "is bool"),
        (npz("classes.npz", x=ok, y=np.arange(4), classes=np.array(["a", "b"])), {}, "expected [0, 2)"),
    ]:
        msg = bad(ref, **kw)
        assert ref[4:] in msg and fault in msg, msg

    _folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "empty").mkdir()
    assert str(tmp_path / "imgs" / "empty") in bad(f"imagefolder:{tmp_path / 'imgs'}", shape=[3, 4, 4])
    (tmp_path / "unread" / "a").mkdir(parents=True)
    (tmp_path / "unread" / "a" / "x.png").write_bytes(b"junk")
    assert "no readable image" in bad(f"imagefolder:{tmp_path / 'unread'}", shape=[3, 4, 4])
    (tmp_path / "none").mkdir()
    assert "no class folders" in bad(f"imagefolder:{tmp_path / 'none'}", shape=[3, 4, 4])
    assert "input shape" in bad(f"imagefolder:{tmp_path / 'none'}")

    (tmp_path / "cols.csv").write_text("sentence,label\nred apple,0\n")
    assert "lacks column(s) ['text']" in bad(f"csv:{tmp_path / 'cols.csv'}", tokenizer=str(tok_path))
    (tmp_path / "t.jsonl").write_text(json.dumps({"text": "red", "label": 0}) + "\n")
    msg = bad(f"jsonl:{tmp_path / 't.jsonl'}")
    assert str(tmp_path / "t.jsonl") in msg and "needs a tokenizer" in msg


def test_hf_disk_without_datasets_says_how_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError
    with pytest.raises(BadInput, match="pip install datasets"):
        load_data_ref(f"hf-disk:{tmp_path}")


@pytest.fixture()
def model_dir(tmp_path):
    """An untrained mgmp model directory for 8x8 grey-scale images, 10 classes (faster than building a pool)."""
    from model_pool.archs import create_model
    from model_pool.card import ModelCard
    from model_pool.io import save_model_dir

    card = ModelCard(arch="mlp", arch_kwargs={"in_channels": 1, "image_size": 8}, num_classes=10,
                     input={"kind": "image", "shape": [1, 8, 8]})
    save_model_dir(create_model("mlp", 10, in_channels=1, image_size=8), card, tmp_path / "m")
    return str(tmp_path / "m")


def test_references_reach_the_cli(model_dir, tmp_path, capsys):
    from mgmp.cli import main

    assert main(["score", "weights", model_dir, model_dir, "--data", "npz:/nonexistent.npz"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mgmp: error: ") and "/nonexistent.npz" in err and "\n" not in err
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).random((20, 1, 8, 8)), y=np.arange(20) % 10)
    assert main(["score", "weights", model_dir, model_dir, "--data", f"npz:{tmp_path / 'd.npz'}"]) == 0
