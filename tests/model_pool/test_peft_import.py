"""``mgmp model import ADAPTER --from peft --base BASE``: a PEFT LoRA adapter of the tiny random Llama, written by
peft itself, merged into the imported base; the result matches peft's merge, records its adapter and base, and
every bad input is refused in one line with nothing written."""

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mgmp.cli import main
from model_pool.errors import BadInput, IntegrityError, TooLarge
from model_pool.io import load_model_dir
from model_pool.model_files import read_card
from model_pool.model_import import import_model_dir
from tests.lm_models import VOCAB


@pytest.fixture(scope="module")
def lora(tiny_lm_files):
    """The base imported from the HF directory, a LoRA adapter directory (non-zero B: it changes the outputs)
    and peft's own merge of it (the reference)."""
    from peft import LoraConfig, get_peft_model

    root = tiny_lm_files["root"]
    base = root / "peft-base"
    import_model_dir(tiny_lm_files["hf"], "hf", base)
    peft_model = get_peft_model(copy.deepcopy(tiny_lm_files["model"]),
                                LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    adapter = root / "adapter"
    peft_model.save_pretrained(adapter, safe_serialization=True)
    return {"base": base, "adapter": adapter, "merged": copy.deepcopy(peft_model).merge_and_unload().eval()}


def test_the_adapter_is_merged_as_peft_merges_it_and_recorded(lora, tmp_path):
    out = tmp_path / "out"
    assert main(["model", "import", str(lora["adapter"]), "--from", "peft", "--base", str(lora["base"]),
                 "--out", str(out)]) == 0
    (model, card), (base, base_card) = load_model_dir(out), load_model_dir(lora["base"])
    x = torch.randint(1, VOCAB, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = lora["merged"](input_ids=x).logits[:, -1]
        assert torch.allclose(model(x), ref, atol=1e-5)
        assert (base(x) - ref).abs().max() > 1e-2  # the adapter changes the outputs
    assert card.arch == "causal_lm" and card.relation == "external" and card.num_classes == VOCAB
    assert card.task == base_card.task and card.arch_kwargs == base_card.arch_kwargs
    assert set(card.files) == {"model.safetensors", "tokenizer.json"}
    assert (out / "tokenizer.json").read_bytes() == (lora["base"] / "tokenizer.json").read_bytes()
    r = card.recipe
    assert r["family"] == "peft" and r["imported_from"] == str(lora["adapter"].resolve())
    assert r["adapter"] == {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "peft_type": "LORA"}
    assert r["base"] == {"path": str(lora["base"].resolve()), "sha256": read_card(lora["base"]).sha256}
    assert r["dataset"] == "lm-corpus" and r["task"] == base_card.recipe["task"]
    result = tmp_path / "score.json"
    assert main(["score", "weights", str(lora["base"]), str(out), "--json", str(result)]) == 0
    assert 0.9 < json.loads(result.read_text())["value"] < 1.0


def _adapter(lora, tmp_path, config=None, weights=None, drop=()):
    """A copy of the adapter directory, its config updated with ``config``, its tensors with ``weights``."""
    d = tmp_path / "bad-adapter"
    shutil.copytree(lora["adapter"], d)
    cfg = json.loads((d / "adapter_config.json").read_text())
    (d / "adapter_config.json").write_text(json.dumps(cfg | (config or {})))
    tensors = load_file(d / "adapter_model.safetensors") | (weights or {})
    save_file({k: v for k, v in tensors.items() if k not in drop}, d / "adapter_model.safetensors")
    return d


def _refused(capsys, argv, match):
    """The CLI exits 2 with one line naming ``match``, and neither OUT nor a temp dir beside it is left."""
    out = Path(argv[argv.index("--out") + 1])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert not out.exists() and not list(out.parent.glob(f".tmp-{out.name}-*"))


def test_bad_inputs_are_refused_in_one_line_and_write_nothing(lora, tiny_lm_files, tmp_path, capsys):
    adapter, base, out = str(lora["adapter"]), str(lora["base"]), str(tmp_path / "out")
    cli = ["model", "import", adapter, "--from", "peft", "--out", out]
    _refused(capsys, cli, "--from peft needs --base")
    _refused(capsys, cli + ["--base", str(tiny_lm_files["hf"])], "not an mgmp model directory")
    fake = tmp_path / "fake-base"
    shutil.copytree(base, fake)
    (fake / "model.json").write_text((fake / "model.json").read_text().replace('"causal_lm"', '"mlp"'))
    _refused(capsys, cli + ["--base", str(fake)], "a LoRA adapter is applied to a causal_lm model")
    (fake / "model.json").write_text((fake / "model.json").read_text().replace('"mlp"', '"causal_lm"'))
    (fake / "tokenizer.json").write_text((fake / "tokenizer.json").read_text() + " ")
    _refused(capsys, cli + ["--base", str(fake)], "sha256 does not match")
    _refused(capsys, ["model", "import", str(tiny_lm_files["hf"]), "--from", "hf", "--base", base, "--out", out],
             "--base is read by --from peft only")

    with pytest.raises(BadInput, match="no adapter_config.json"):
        import_model_dir(tiny_lm_files["hf"], "peft", out, base=base)
    with pytest.raises(BadInput, match="only LoRA adapters"):
        import_model_dir(_adapter(lora, tmp_path, {"peft_type": "IA3"}), "peft", out, base=base)
    shutil.rmtree(tmp_path / "bad-adapter")
    with pytest.raises(BadInput, match="must be positive integers"):
        import_model_dir(_adapter(lora, tmp_path, {"r": "4"}), "peft", out, base=base)
    shutil.rmtree(tmp_path / "bad-adapter")
    with pytest.raises(TooLarge, match="LoRA parameter bytes at rank 1000000000"):  # refused before peft allocates
        import_model_dir(_adapter(lora, tmp_path, {"r": 10**9}), "peft", out, base=base)
    shutil.rmtree(tmp_path / "bad-adapter")
    pickled = _adapter(lora, tmp_path)
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    with pytest.raises(IntegrityError, match="adapter_model.bin is pickled and refused"):
        import_model_dir(pickled, "peft", out, base=base)
    shutil.rmtree(pickled)
    with pytest.raises(BadInput, match="does not fit the base.*not found"):
        import_model_dir(_adapter(lora, tmp_path, {"target_modules": ["w_proj"]}), "peft", out, base=base)
    shutil.rmtree(tmp_path / "bad-adapter")
    key = next(k for k in load_file(lora["adapter"] / "adapter_model.safetensors") if "lora_A" in k)
    with pytest.raises(BadInput, match="does not fit the base.*size mismatch"):
        import_model_dir(_adapter(lora, tmp_path, weights={key: torch.zeros(4, 48)}), "peft", out, base=base)
    shutil.rmtree(tmp_path / "bad-adapter")
    with pytest.raises(BadInput, match=r"does not fit the base.*1 adapter tensor\(s\) missing"):
        import_model_dir(_adapter(lora, tmp_path, drop=[key]), "peft", out, base=base)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".tmp-out-*"))
