"""`mgmp scan` and `mgmp catalog`: tiny synthetic bases in their on-disk formats, their derivatives found, models
from scratch and of other shapes not; the shipped catalog readable, small and sha256-checked."""
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from mgmp.catalog.scan import ARCHITECTURE, DERIVED, NONE, scan
from mgmp.catalog.store import MANIFEST, SHIPPED, Catalog, open_catalogs
from mgmp.cli import main

SHAPES = {"stem.weight": (16, 3, 3, 3), "blocks.0.conv.weight": (32, 16, 3, 3), "blocks.1.conv.weight": (32, 32, 3, 3),
          "blocks.2.conv.weight": (32, 32, 3, 3), "blocks.3.fc.weight": (64, 512), "blocks.4.fc.weight": (64, 64),
          "head.weight": (10, 64), "head.bias": (10,)}
VOCAB = [f"tok{i}" for i in range(300)]


@pytest.fixture(autouse=True)
def _no_private_catalog(monkeypatch, tmp_path):
    monkeypatch.setenv("MGMP_CATALOG", str(tmp_path / "private"))


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(s) * 0.05).astype(np.float32) for k, s in SHAPES.items()}


def _hf_dir(path: Path, arrays: dict, claim: str | None = None, vocab=VOCAB) -> str:
    path.mkdir(parents=True)
    save_file(arrays, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"model_type": "tiny", "hidden_size": 64}))
    (path / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {t: i for i, t in enumerate(vocab)}}}))
    if claim:
        (path / "README.md").write_text(f"---\nbase_model: {claim}\n---\n# a model card\n")
    return str(path)


def _int8(w: np.ndarray) -> np.ndarray:
    scale = np.abs(w).max() / 127
    return (np.round(w / scale) * scale).astype(np.float32)


def _prune(w: np.ndarray) -> np.ndarray:
    return np.where(np.abs(w) >= np.median(np.abs(w)), w, 0).astype(np.float32)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two bases (tiny-a, tiny-b) in a private catalog, made through the CLI, and the raw weights."""
    root = tmp_path_factory.mktemp("catalog")
    a, b = _weights(0), _weights(1)
    catalog = root / "catalog"
    for name, w in (("tiny-a", a), ("tiny-b", b)):
        assert main(["catalog", "add", _hf_dir(root / name, w), "--name", name, "--catalog", str(catalog),
                     "--alias", f"org/{name}"]) == 0
    return {"root": root, "a": a, "b": b, "catalog": Catalog(catalog)}


def test_derivatives_are_traced_to_their_base_and_from_scratch_models_to_none(world):
    root, a, b = world["root"], world["a"], world["b"]
    rng = np.random.default_rng(7)
    noise = {k: (rng.standard_normal(v.shape) * 0.05).astype(np.float32) for k, v in a.items()}
    derivatives = {
        "finetune": {k: v + 0.5 * noise[k] for k, v in a.items()},
        "int8": {k: _int8(v) for k, v in a.items()},
        "prune50": {k: _prune(v) for k, v in a.items()},
        # a new head of another size, and a wrapper that renames every module (aligned by order within a shape)
        "wrapped-new-head": {f"model.{k.replace('.weight', '.inner.weight')}": v for k, v in a.items() if "head" not in k}
        | {"model.head.weight": rng.standard_normal((3, 64)).astype(np.float32)},
    }
    for name, w in derivatives.items():
        result = scan(_hf_dir(root / name, w), [world["catalog"]])
        assert result.answer is not None and result.answer.base == "tiny-a", (name, result.to_dict())
        assert result.candidates[1].verdict == ARCHITECTURE  # tiny-b: same shapes, unrelated weights
    other = scan(_hf_dir(root / "b-ft", {k: v + 0.5 * noise[k] for k, v in b.items()}), [world["catalog"]])
    assert other.answer.base == "tiny-b"
    scratch = scan(_hf_dir(root / "scratch", _weights(9)), [world["catalog"]])
    assert scratch.answer is None and {c.verdict for c in scratch.candidates} == {ARCHITECTURE}
    assert all(abs(c.cosine) < 0.2 for c in scratch.candidates)
    alien = scan(_hf_dir(root / "alien", {"x.weight": np.ones((5, 7), np.float32)}), [world["catalog"]])
    assert alien.answer is None and {c.verdict for c in alien.candidates} == {NONE}


def test_scan_cli_checks_the_model_cards_claim(world, tmp_path, capsys):
    b_ft = {k: v * 1.01 for k, v in world["b"].items()}
    cases = {"org/tiny-a": "contradicted", "tiny-b": "confirmed", "meta/other-base": "unverifiable"}
    for i, (claim, status) in enumerate(cases.items()):
        model = _hf_dir(tmp_path / f"m{i}", b_ft, claim=claim)
        out = tmp_path / f"m{i}.json"
        assert main(["scan", model, "--catalog", str(world["catalog"].root), "--no-shipped", "--json", str(out)]) == 0
        result = json.loads(out.read_text())
        assert result["answer"] == "tiny-b" and result["claims"][0]["status"] == status
        top = result["candidates"][0]
        assert top["verdict"] == DERIVED and top["tokenizer"] == 1.0 and top["config"]["model_type"] == ["tiny", "tiny"]
        assert f"claims base_model {claim}: {status}" in " ".join(capsys.readouterr().out.split())


def test_plain_torchvision_state_dict_and_bfloat16_files(world, tmp_path):
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    from safetensors.torch import save_file as save_torch

    state = tv.models.squeezenet1_1(num_classes=10).state_dict()
    torch.save(state, tmp_path / "squeezenet.pt")
    assert main(["catalog", "add", str(tmp_path / "squeezenet.pt"), "--name", "sq", "--catalog", str(tmp_path / "c")]) == 0
    tuned = {k: (v.float() + 0.01 * torch.randn_like(v.float())).to(torch.bfloat16) if v.is_floating_point() else v
             for k, v in state.items()}
    save_torch(tuned, str(tmp_path / "tuned.safetensors"))
    catalogs = [world["catalog"], Catalog(tmp_path / "c")]
    assert scan(str(tmp_path / "tuned.safetensors"), catalogs).answer.base == "sq"
    fresh = tv.models.squeezenet1_1(num_classes=10).state_dict()
    torch.save(fresh, tmp_path / "fresh.pt")
    assert scan(str(tmp_path / "fresh.pt"), catalogs).answer is None


def test_bad_input_gets_one_line(world, tmp_path, capsys):
    cat = tmp_path / "cat"
    assert main(["catalog", "add", str(world["root"] / "tiny-a"), "--name", "bad name!", "--catalog", str(cat)]) == 2
    assert main(["scan", str(tmp_path / "missing"), "--no-shipped", "--catalog", str(world["catalog"].root)]) == 2
    assert main(["scan", str(world["root"] / "tiny-a"), "--catalog", str(tmp_path)]) == 2  # not a catalog
    import shutil

    shutil.copytree(world["catalog"].root, cat)
    f = cat / "tiny-a.safetensors"
    f.write_bytes(f.read_bytes()[:-4] + b"\0\0\0\0")
    assert main(["scan", str(world["root"] / "tiny-b"), "--no-shipped", "--catalog", str(cat)]) == 2
    manifest = json.loads((cat / MANIFEST).read_text())
    (cat / MANIFEST).write_text(json.dumps({**manifest, "version": 99}))
    assert main(["catalog", "ls", "--catalog", str(cat)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5 and all(line.startswith("mgmp: error: ") for line in err), err
    assert "catalog name" in err[0] and "no such file" in err[1] and "not a catalog" in err[2]
    assert "sha256" in err[3] and "version 99" in err[4]


def test_shipped_catalog_is_small_readable_and_answers_none_for_an_unrelated_model(world):
    shipped = Catalog(SHIPPED)
    assert {"efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "minilm-l6", "smollm2-135m"} <= set(shipped.entries)
    assert shipped.bytes() <= 10 << 20
    for name, entry in shipped.entries.items():
        fp = shipped.load(name)  # sha256 checked
        assert len(fp.names) == entry.tensors > 10 and fp.params == entry.params
    assert {c.root for c in open_catalogs([str(world["catalog"].root)])} == {SHIPPED, world["catalog"].root}
    result = scan(str(world["root"] / "tiny-a"), open_catalogs())
    assert result.answer is None and all(c.verdict == NONE for c in result.candidates)


def test_bench_truth_follows_weight_inheriting_edges_from_the_public_start():
    from types import SimpleNamespace

    from mgmp.bench.scan import true_bases

    def row(model_id, relation, parents=(), init=None):
        return SimpleNamespace(id=model_id, relation=relation, parents=list(parents),
                               recipe={"init": init} if init else {})

    rows = [row("src", "scratch", init="real:base-x"), row("ft", "finetune", ["src"]), row("q", "quantize", ["ft"]),
            row("student", "distill", ["src"]), row("student-ft", "finetune", ["student"]), row("ind", "scratch")]
    registry = SimpleNamespace(models=lambda: rows)
    assert true_bases(registry, None) == {"src": "base-x", "ft": "base-x", "q": "base-x", "student": None,
                                          "student-ft": None, "ind": None}


def test_a_gguf_file_is_traced_to_the_hugging_face_base_it_was_converted_from(tiny_lm_files, tmp_path):
    """The GGUF (Q8_0) of a tiny Llama against a catalog of its Hugging Face directory: the reader un-permutes the
    attention rows and names the tensors as the base's files do; a Llama of another seed matches nothing."""
    from tests.lm_models import tiny_llama, tiny_tokenizer, write_gguf

    catalog = tmp_path / "catalog"
    assert main(["catalog", "add", str(tiny_lm_files["hf"]), "--name", "tiny-llama", "--catalog", str(catalog)]) == 0
    result = scan(str(tiny_lm_files["gguf"]), [Catalog(catalog)])
    assert result.answer.base == "tiny-llama" and result.answer.cosine > 0.99
    other = write_gguf(tiny_llama(seed=3), tiny_tokenizer(), tmp_path / "other.gguf")
    assert scan(str(other), [Catalog(catalog)]).answer is None
