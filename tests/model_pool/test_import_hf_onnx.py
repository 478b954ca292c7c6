"""``mgmp model import --from hf`` and ``--from onnx`` (SPEC §11): tiny transformers classifiers (text and image)
and ONNX exports of a torch model become ordinary model directories that compute exactly what the original
computes, score from the CLI, and refuse hostile files (pickled weights, external data leaving the directory,
non-ONNX files, altered copies) in one line."""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import save_file

from mgmp.cli import main
from model_pool.archs import create_model
from model_pool.data.tokenize import word_level
from model_pool.errors import IntegrityError
from model_pool.hashing import sha256_file
from model_pool.io import load_model_dir

WORDS = ["red", "green", "blue", "apple", "pear", "plum"]
N_CLASSES = 4


def _import(src: Path, family: str, out: Path, *extra: str) -> int:
    return main(["model", "import", str(src), "--from", family, *extra, "--out", str(out)])


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def _export(model: torch.nn.Module, path: Path, shape: tuple[int, ...]) -> None:
    """The legacy (TorchScript) exporter, dynamic batch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(1, *shape),), str(path), dynamo=False, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """A BERT (with its tokenizer.json), a DistilBERT (pre_classifier + classifier) and a ViT, saved by transformers."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
        ViTConfig,
        ViTForImageClassification,
    )

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    tok = word_level(WORDS)
    bert = BertForSequenceClassification(BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=3, max_position_embeddings=32))
    distil = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=30, dim=16, n_layers=1, n_heads=2, hidden_dim=32, num_labels=3, max_position_embeddings=32))
    vit = ViTForImageClassification(ViTConfig(
        image_size=16, patch_size=8, num_channels=3, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=N_CLASSES))
    for name, model in (("bert", bert), ("distil", distil), ("vit", vit)):
        model.save_pretrained(root / name, safe_serialization=True)
    tok.save(str(root / "bert" / "tokenizer.json"))
    (root / "vit" / "preprocessor_config.json").write_text(json.dumps(
        {"do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}))
    rows = [{"text": f"{WORDS[i % 3]} {WORDS[3 + i % 3]}", "label": i % 3} for i in range(24)]
    (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rng = np.random.default_rng(0)
    np.savez(root / "data16.npz", x=rng.random((24, 3, 16, 16), dtype=np.float32), y=rng.integers(0, N_CLASSES, 24))
    return root, {"bert": bert.eval(), "distil": distil.eval(), "vit": vit.eval()}


@pytest.fixture(scope="module")
def imported_hf(hf_dirs):
    root, _ = hf_dirs
    assert _import(root / "bert", "hf", root / "m-bert", "--num-classes", "3", "--input", "text",
                   "--data", f"jsonl:{root / 'rows.jsonl'}") == 0
    assert _import(root / "distil", "hf:distilbert", root / "m-distil", "--num-classes", "3", "--input", "text") == 0
    assert _import(root / "vit", "hf", root / "m-vit", "--num-classes", str(N_CLASSES), "--input", "image:3,16,16",
                   "--data", f"npz:{root / 'data16.npz'}") == 0
    return root


def test_hf_text_models_are_self_contained_directories(hf_dirs, imported_hf):
    root, originals = hf_dirs
    card = json.loads((imported_hf / "m-bert" / "model.json").read_text())
    assert card["arch"] == "hf:bert" and card["num_classes"] == 3 and card["relation"] == "external"
    assert card["input"] == {"kind": "text", "tokenizer": "tokenizer.json", "max_length": 32}
    assert set(card["files"]) == {"config.json", "model.safetensors", "tokenizer.json"}
    assert card["sha256"] == card["files"]["model.safetensors"] and card["arch_kwargs"] == {"classifier": "classifier"}
    model, loaded = load_model_dir(imported_hf / "m-bert")
    assert loaded.input["tokenizer"] == str((imported_hf / "m-bert" / "tokenizer.json").resolve())  # usable anywhere
    ids = torch.randint(1, 11, (3, 10))
    ids[0, 6:] = 0  # padding
    with torch.no_grad():
        want = originals["bert"](input_ids=ids, attention_mask=(ids != 0).long()).logits
        assert torch.allclose(model(ids), want, atol=1e-5)
        assert model.forward_features(ids).shape == (3, 16) and model.num_features == 16
        assert torch.allclose(model.head(model.forward_features(ids)), model(ids), atol=1e-6)


def test_a_head_of_two_linears_gives_the_last_ones_input(hf_dirs, imported_hf):
    _, originals = hf_dirs
    model, card = load_model_dir(imported_hf / "m-distil")
    assert card.arch == "hf:distilbert" and "tokenizer" not in card.input and model.classifier == "classifier"
    ids = torch.randint(1, 30, (2, 7))
    with torch.no_grad():
        assert torch.allclose(model(ids), originals["distil"](input_ids=ids, attention_mask=torch.ones_like(ids)).logits,
                              atol=1e-5)
        z = model.forward_features(ids)  # after pre_classifier + ReLU: the input of `classifier`
        pre = originals["distil"].pre_classifier
        assert z.shape == (2, 16) and (z >= 0).all() and not torch.allclose(z, pre.weight.new_zeros(z.shape))
        assert torch.allclose(model.head(z), model(ids), atol=1e-6)


def test_hf_image_model_matches_transformers_and_scores(hf_dirs, imported_hf, capsys):
    root, originals = hf_dirs
    card = json.loads((imported_hf / "m-vit" / "model.json").read_text())
    assert card["arch"] == "hf:vit" and card["num_classes"] == N_CLASSES and set(card["files"]) == {
        "config.json", "model.safetensors"}
    assert card["input"] == {"kind": "image", "shape": [3, 16, 16],
                             "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}}  # preprocessor_config.json
    assert card["recipe"]["dataset"] == f"npz:{root / 'data16.npz'}"
    model, _ = load_model_dir(imported_hf / "m-vit")
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), originals["vit"](pixel_values=x).logits, atol=1e-5)
        assert model.forward_features(x).shape == (5, 16)
        assert torch.allclose(model.head(model.forward_features(x)), model(x), atol=1e-6)
    out = imported_hf / "sac.json"
    assert main(["score", "sac", str(imported_hf / "m-vit"), str(imported_hf / "m-vit"), "--data",
                 f"npz:{root / 'data16.npz'}", "--param", "n_points=8", "--json", str(out)]) == 0, capsys.readouterr().err
    assert np.isfinite(json.loads(out.read_text())["value"])
    assert main(["score", "weights", str(imported_hf / "m-vit"), str(imported_hf / "m-vit")]) == 0  # white box


def test_hf_text_model_scores_with_its_recorded_data(imported_hf, capsys):
    out = imported_hf / "text.json"
    assert main(["score", "dna", str(imported_hf / "m-bert"), str(imported_hf / "m-bert"), "--param", "n_points=8",
                 "--json", str(out)]) == 0, capsys.readouterr().err
    assert np.isfinite(json.loads(out.read_text())["value"])


@pytest.fixture(scope="module")
def onnx_world(tmp_path_factory):
    """An mgmp MLP (imported from its state dict) and ONNX exports of it: weights inside, and weights in an
    external-data file in a subdirectory."""
    root = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    net = create_model("mlp", N_CLASSES).eval()  # 3x32x32 inputs
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(root / "mlp.safetensors"))
    rng = np.random.default_rng(1)
    np.savez(root / "data32.npz", x=rng.random((24, 3, 32, 32), dtype=np.float32), y=rng.integers(0, N_CLASSES, 24))
    common = ["--num-classes", str(N_CLASSES), "--input", "image:3,32,32"]
    assert _import(root / "mlp.safetensors", "mgmp:mlp", root / "torch-src", *common,
                   "--data", f"npz:{root / 'data32.npz'}") == 0
    _export(net, root / "mlp.onnx", (3, 32, 32))
    (root / "ext" / "data").mkdir(parents=True)
    onnx.save_model(onnx.load(str(root / "mlp.onnx")), str(root / "ext" / "mlp.onnx"), save_as_external_data=True,
                    location="data/weights.bin", size_threshold=0)
    for name, src in (("onnx-suspect", root / "mlp.onnx"), ("onnx-ext", root / "ext" / "mlp.onnx")):
        assert _import(src, "onnx", root / name, *common) == 0
    return root, net


def test_onnx_models_compute_what_onnxruntime_computes(onnx_world):
    root, net = onnx_world
    x = torch.rand(7, 3, 32, 32)
    session = ort.InferenceSession(str(root / "mlp.onnx"), providers=["CPUExecutionProvider"])
    want = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    for name in ("onnx-suspect", "onnx-ext"):
        model, card = load_model_dir(root / name)
        assert card.arch == "onnx" and card.sha256 == card.files["model.onnx"] and model.white_box is False
        assert list(model.parameters()) == [] and model.input_kind == "image"
        got = model(x)
        assert got.dtype == torch.float32 and got.shape == (7, N_CLASSES)
        assert torch.allclose(got, want, atol=1e-5) and torch.allclose(got, net(x), atol=1e-5)
    card = json.loads((root / "onnx-ext" / "model.json").read_text())
    assert set(card["files"]) == {"model.onnx", "data/weights.bin"} and (root / "onnx-ext" / "data" / "weights.bin").is_file()
    assert card["input"]["normalization"] == {"mean": [0.0] * 3, "std": [1.0] * 3}


def test_an_onnx_suspect_is_scored_as_a_black_box(onnx_world, capsys):
    root, _ = onnx_world
    out = root / "sac.json"
    assert main(["score", "sac", str(root / "torch-src"), str(root / "onnx-ext"), "--param", "n_points=8",
                 "--json", str(out)]) == 0, capsys.readouterr().err
    res = json.loads(out.read_text())
    assert np.isfinite(res["value"]) and res["extra"]["queries"] > 0
    capsys.readouterr()
    assert main(["score", "weights", str(root / "torch-src"), str(root / "onnx-suspect")]) == 2
    assert "black box" in _one_line(capsys)


class _BagOfWords(torch.nn.Module):
    """Token ids and their mask in, logits out: the two inputs of a transformers-style text export."""

    def __init__(self):
        super().__init__()
        self.emb, self.fc = torch.nn.Embedding(12, 8), torch.nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        m = attention_mask.unsqueeze(-1).float()
        return self.fc((self.emb(input_ids) * m).sum(1) / m.sum(1).clamp(min=1))


def test_a_text_onnx_model_gets_ids_and_mask(tmp_path):
    torch.manual_seed(0)
    net = _BagOfWords().eval()
    ids = torch.randint(1, 12, (4, 6))
    ids[1, 3:] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (ids, ids != 0), str(tmp_path / "bow.onnx"), dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "n", 1: "l"}, "attention_mask": {0: "n", 1: "l"}})
    assert _import(tmp_path / "bow.onnx", "onnx", tmp_path / "m", "--num-classes", "3", "--input", "text") == 0
    model, card = load_model_dir(tmp_path / "m")
    assert card.input == {"kind": "text"} and model.input_kind == "text"
    with torch.no_grad():
        assert torch.allclose(model(ids), net(ids, (ids != 0).long()), atol=1e-5)


def test_a_hand_made_directory_cannot_point_its_onnx_outside(onnx_world, tmp_path, capsys):
    """model.json's sha256 may match a hostile model.onnx: its external data is still checked on load."""
    root, _ = onnx_world
    copy = tmp_path / "copy"
    shutil.copytree(root / "onnx-suspect", copy)
    hostile = _hostile_onnx(root / "mlp.onnx", tmp_path, "../outside.bin")
    shutil.copy(hostile, copy / "model.onnx")
    card = json.loads((copy / "model.json").read_text())
    card["files"]["model.onnx"] = card["sha256"] = sha256_file(copy / "model.onnx")
    (copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(IntegrityError, match="not a plain relative path"):
        load_model_dir(copy)
    shutil.copy(root / "ext" / "mlp.onnx", copy / "model.onnx")  # names data/weights.bin, which model.json does not record
    (copy / "data").mkdir()
    shutil.copy(root / "ext" / "data" / "weights.bin", copy / "data" / "weights.bin")
    card["files"]["model.onnx"] = card["sha256"] = sha256_file(copy / "model.onnx")
    (copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(IntegrityError, match="not recorded in model.json"):
        load_model_dir(copy)


def _hostile_onnx(src: Path, root: Path, location: str) -> Path:
    """``src``'s graph with its first weight in external data at ``location`` (written as is, bypassing onnx's
    own save checks), in a new directory under ``root``; the data itself is in ``root / outside.bin``."""
    d = root / f"hostile{len(list(root.glob('hostile*')))}"
    d.mkdir()
    model = onnx.load(str(src))
    tensor = model.graph.initializer[0]
    raw = tensor.raw_data
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(raw)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    (root / "outside.bin").write_bytes(raw)
    (d / "model.onnx").write_bytes(model.SerializeToString())
    return d / "model.onnx"


def test_hostile_onnx_files_are_refused_in_one_line(onnx_world, tmp_path, capsys):
    root, _ = onnx_world
    linked = _hostile_onnx(root / "mlp.onnx", tmp_path, "weights.bin")
    os.symlink(tmp_path / "outside.bin", linked.parent / "weights.bin")
    (tmp_path / "garbage.onnx").write_bytes(b"this is not a protobuf \xff\xfe")
    cases = [(_hostile_onnx(root / "mlp.onnx", tmp_path, "../outside.bin"), "not a plain relative path"),
             (_hostile_onnx(root / "mlp.onnx", tmp_path, str(tmp_path / "outside.bin")), "not a plain relative path"),
             (linked, "symbolic link"),
             (_hostile_onnx(root / "mlp.onnx", tmp_path, "missing.bin"), "missing"),
             (tmp_path / "garbage.onnx", "not a valid ONNX model")]
    capsys.readouterr()
    for src, msg in cases:
        assert _import(src, "onnx", tmp_path / "m", "--num-classes", "4", "--input", "image:3,32,32") == 2
        assert msg in _one_line(capsys)
        assert not (tmp_path / "m").exists() and not list(tmp_path.glob(".tmp-m-*"))
    assert _import(root / "mlp.onnx", "onnx", tmp_path / "m", "--num-classes", "3", "--input", "image:3,32,32") == 2
    err = _one_line(capsys)  # the outputs do not have --num-classes columns; the user's file is named
    assert "expected [2, 3]" in err and str(root / "mlp.onnx") in err and ".tmp-" not in err


def test_hostile_hf_directories_are_refused_in_one_line(hf_dirs, tmp_path, capsys):
    root, originals = hf_dirs
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(root / "vit" / "config.json", pickled / "config.json")
    torch.save(originals["vit"].state_dict(), pickled / "pytorch_model.bin")
    cases = [([str(pickled), "--from", "hf", "--num-classes", "4", "--input", "image:3,16,16"], "pickled"),
             ([str(root / "vit"), "--from", "hf", "--num-classes", "5", "--input", "image:3,16,16"], "4 labels"),
             ([str(root / "vit"), "--from", "hf", "--num-classes", "4", "--input", "text"], "image classifier"),
             ([str(root / "vit"), "--from", "hf:bert", "--num-classes", "4", "--input", "image:3,16,16"], "'vit'"),
             ([str(root / "bert" / "config.json"), "--from", "hf", "--num-classes", "3", "--input", "text"], "no config.json")]
    capsys.readouterr()
    for args, msg in cases:
        assert main(["model", "import", *args, "--out", str(tmp_path / "m")]) == 2
        assert msg in _one_line(capsys)
        assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("name, file", [("m-vit", "config.json"), ("m-bert", "tokenizer.json"),
                                        ("onnx-ext", "data/weights.bin"), ("onnx-suspect", "model.onnx")])
def test_an_altered_copied_file_is_an_integrity_error(imported_hf, onnx_world, tmp_path, capsys, name, file):
    src = (imported_hf if name.startswith("m-") else onnx_world[0]) / name
    copy = tmp_path / name
    shutil.copytree(src, copy)
    with open(copy / file, "ab") as f:
        f.write(b" ")
    capsys.readouterr()
    assert main(["score", "sac", str(copy), str(copy), "--data", "npz:/nonexistent.npz"]) == 2
    assert "sha256 does not match" in _one_line(capsys)


def test_imported_foreign_directories_join_a_pool(imported_hf, onnx_world, tmp_path, capsys):
    """`mgmp pool add` copies every recorded file (ONNX external data in its subfolder, the HF tokenizer),
    and the registered copies load and verify from the pool."""
    from model_pool.pool import Pool
    from model_pool.registry import PoolRegistry

    root, _ = onnx_world
    PoolRegistry(tmp_path / "pool", create=True).close()
    for name, src in (("onnx-ext", root / "onnx-ext"), ("bert", imported_hf / "m-bert")):
        assert main(["pool", "add", str(tmp_path / "pool"), str(src), "--id", name]) == 0, capsys.readouterr().err
    with Pool.open(tmp_path / "pool") as pool:
        onnx_model, _ = pool.load("onnx-ext")
        assert (pool.root / "models" / "onnx-ext" / "data" / "weights.bin").is_file() and not onnx_model.white_box
        bert, card = pool.load("bert")
        assert str(pool.root) in card.input["tokenizer"]  # the pool's own copy of the tokenizer


def test_methods_that_retrain_the_source_refuse_foreign_sources_before_working(imported_hf, capsys):
    """Closeness's test-set generation and Zest's references train models of the source's architecture;
    a Hugging Face source is refused in one line before anything is trained (the rest still run)."""
    vit = str(imported_hf / "m-vit")
    for method, params in (("closeness", ["k=4", "candidates=8"]), ("zest", ["n_points=2", "n_masks=8"])):
        assert main(["score", method, vit, vit, *[a for p in params for a in ("--param", p)]]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mgmp: not applicable:") and "retrained" in err and len(err.strip().splitlines()) == 1
    assert main(["score", "closeness", vit, vit, "--param", "k=4", "--param", "generate=false"]) == 0


def test_a_model_cards_base_model_is_a_claimed_parent_checked_against_the_weights(hf_dirs, imported_hf, tmp_path,
                                                                                   capsys):
    """`base_model` in an HF README.md is recorded (import keeps it in the card) and `mgmp pool add` checks it
    against a registered public backbone by weights: a fine-tune of it is consistent, a stranger is not."""
    from transformers import BertForSequenceClassification

    from model_pool.pool import Pool
    from model_pool.registry import PoolRegistry

    root, models = hf_dirs
    front = "---\nlicense: mit\nbase_model: acme/tiny-bert\n---\n# a model card\n"
    fine = BertForSequenceClassification(models["bert"].config)
    fine.load_state_dict(models["bert"].state_dict())
    with torch.no_grad():
        for p in fine.parameters():
            p.add_(0.002 * torch.randn_like(p))
    torch.manual_seed(1)
    stranger = BertForSequenceClassification(models["bert"].config)
    for name, model in (("fine", fine), ("stranger", stranger)):
        model.save_pretrained(tmp_path / name, safe_serialization=True)
        shutil.copyfile(root / "bert" / "tokenizer.json", tmp_path / name / "tokenizer.json")
        (tmp_path / name / "README.md").write_text(front)
    assert _import(tmp_path / "fine", "hf", tmp_path / "m-fine", "--num-classes", "3", "--input", "text") == 0
    assert json.loads((tmp_path / "m-fine" / "model.json").read_text())["recipe"]["base_model"] == ["acme/tiny-bert"]
    pool = tmp_path / "pool"
    PoolRegistry(pool, create=True).close()
    assert main(["pool", "add", str(pool), str(imported_hf / "m-bert"), "--id", "tiny-bert", "--public"]) == 0
    capsys.readouterr()
    for name, src in (("fine", tmp_path / "m-fine"), ("stranger", tmp_path / "stranger")):
        assert main(["pool", "add", str(pool), str(src), "--id", name]) == 0
    said = capsys.readouterr().err  # status lines go to stderr, as every pool command's
    assert "tiny-bert, weight cosine" in said and "NOT supported by the weights" in said
    with Pool.open(pool) as p:
        assert p.registry.get("tiny-bert").tags == {"public": True}
        fine_claim, stranger_claim = (p.registry.get(m).tags["claimed_parent"] for m in ("fine", "stranger"))
        assert p.registry.parents("fine") == []  # a claim is not a registered parent
    assert fine_claim["id"] == "tiny-bert" and fine_claim["consistent"] and fine_claim["weight_cosine"] > 0.99
    assert stranger_claim["id"] == "tiny-bert" and not stranger_claim["consistent"]
