"""Model directory format: round trip, sha256 verification and hostile files refused without side effects."""
import json
import os
import pickle

import pytest
import torch

from model_pool.archs import create_model
from model_pool.card import ModelCard
from model_pool.errors import IntegrityError, MgmpError
from model_pool.io import load_model_dir, load_state_dict_file, save_model_dir

INPUT = {"kind": "image", "shape": [1, 8, 8]}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = create_model("mlp", 10, in_channels=1, image_size=8)
    card = ModelCard(arch="mlp", arch_kwargs={"in_channels": 1, "image_size": 8}, num_classes=10, input=INPUT)
    path = tmp_path / "m"
    save_model_dir(model, card, path)
    return model, path


def test_roundtrip_records_sha256(saved):
    model, path = saved
    loaded, card = load_model_dir(path)
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(model.eval()(x), loaded(x))
    assert len(card.sha256) == 64 and json.loads((path / "model.json").read_text())["sha256"] == card.sha256
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]


def test_altered_weights_are_refused(saved):
    _, path = saved
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        load_model_dir(path)


def test_truncated_safetensors_with_matching_sha_is_refused(saved):
    from model_pool.hashing import sha256_file

    _, path = saved
    f = path / "model.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    card = json.loads((path / "model.json").read_text())
    card["sha256"] = card["files"]["model.safetensors"] = sha256_file(f)
    (path / "model.json").write_text(json.dumps(card))
    with pytest.raises(IntegrityError, match="safetensors"):
        load_model_dir(path)


def test_lying_safetensors_header_is_refused(saved):
    from model_pool.hashing import sha256_file

    _, path = saved
    header = json.dumps({"w": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 40000000000]}}).encode()
    f = path / "model.safetensors"
    f.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    card = json.loads((path / "model.json").read_text())
    card["sha256"] = card["files"]["model.safetensors"] = sha256_file(f)
    (path / "model.json").write_text(json.dumps(card))
    with pytest.raises(IntegrityError):
        load_model_dir(path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_in_pt_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    f = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "x": _Evil(marker)}, f)
    card = ModelCard(arch="mlp", arch_kwargs={"in_channels": 1, "image_size": 8}, num_classes=10, input=INPUT)
    with pytest.raises(IntegrityError, match="weights_only"):
        load_state_dict_file(f, card)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(IntegrityError):
        load_state_dict_file(raw, card)
    assert not marker.exists()


@pytest.mark.parametrize("patch, msg", [
    ({"num_classes": "10"}, "num_classes"),
    ({"num_classes": True}, "num_classes"),
    ({"arch": ["mlp"]}, "arch"),
    ({"arch": "no_such_arch"}, "unknown architecture"),
    ({"relation": "stolen"}, "relation"),
    ({"input": {"kind": "audio"}}, "input.kind"),
    ({"arch_kwargs": {"bogus": 1}}, "arch_kwargs"),
    ({"files": {"../../etc/passwd": "0"}}, "plain file name"),
])
def test_bad_model_json_is_refused(saved, patch, msg):
    _, path = saved
    card = json.loads((path / "model.json").read_text())
    card.update(patch)
    (path / "model.json").write_text(json.dumps(card))
    with pytest.raises(MgmpError, match=msg):
        load_model_dir(path)


def test_symlinked_weights_are_refused(saved, tmp_path):
    _, path = saved
    outside = tmp_path / "outside.safetensors"
    os.replace(path / "model.safetensors", outside)
    os.symlink(outside, path / "model.safetensors")
    with pytest.raises(IntegrityError, match="regular file"):
        load_model_dir(path)


def test_hf_directory_loads_offline(tmp_path):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    cfg = DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32, num_labels=3, max_position_embeddings=32)
    DistilBertForSequenceClassification(cfg).save_pretrained(tmp_path / "hf", safe_serialization=True)
    model, card = load_model_dir(tmp_path / "hf")
    ids = torch.randint(1, 50, (2, 8))
    assert model(ids).shape == (2, 3) and card.arch == "hf:distilbert" and card.num_classes == 3
    assert torch.allclose(model(ids), model.head(model.forward_features(ids)))


def test_sha256_is_computed_once_per_unchanged_file_and_again_after_a_rewrite(tmp_path, monkeypatch):
    from model_pool import hashing

    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 100)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: opened.append(p) or real_open(p, *a, **k))
    first = hashing.sha256_file(f)
    assert hashing.sha256_file(f) == first and len(opened) == 2  # just written: not trusted from its stamps yet
    monkeypatch.setattr(hashing, "SETTLED_NS", 0)
    hashing.sha256_file(f)
    assert hashing.sha256_file(f) == first and len(opened) == 3  # settled: hashed once more, then remembered
    monkeypatch.setattr("builtins.open", real_open)
    f.write_bytes(b"b" * 100)  # same size, new content: the stamps change, so does the digest
    assert hashing.sha256_file(f) != first
