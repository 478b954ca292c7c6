"""Scores of causal language models (SPEC §14) on a tiny random Llama: what each reads, their invariances, the
per-source null from small LM references, and the CLI."""
import copy
import json

import pytest
import torch

from mgmp.cli import main
from mgmp.scores import Pair, create_score
from model_pool.archs import create_model
from model_pool.data import load_dataset
from model_pool.io import load_model_dir
from model_pool.model_import import import_model_dir

LM_SCORES = ("lm_tokens", "lm_logprob", "lm_cka", "lm_invariant")


@pytest.fixture(scope="module")
def lm(tiny_lm_files):
    out = tiny_lm_files["root"] / "scored"
    if not out.exists():
        import_model_dir(tiny_lm_files["hf"], "hf", out)
    model, card = load_model_dir(out)
    data = load_dataset("lm-corpus", task="docs", **card.recipe["data"], n_train=200, n_test=64)
    return out, model, card, data


def _pair(lm, suspect):
    _, model, card, data = lm
    return Pair(model, suspect, card, card, data, data)


@torch.no_grad()
def _reparametrised(model):
    """The same function with other weights: residual and MLP units permuted, queries and keys rescaled."""
    m = copy.deepcopy(model)
    hf, g = m.hf, torch.Generator().manual_seed(0)
    p = torch.randperm(hf.config.hidden_size, generator=g)
    hf.model.embed_tokens.weight.copy_(hf.model.embed_tokens.weight[:, p])  # the tied head follows
    hf.model.norm.weight.copy_(hf.model.norm.weight[p])
    for layer in hf.model.layers:
        a, f = layer.self_attn, layer.mlp
        q = torch.randperm(f.up_proj.out_features, generator=g)
        for lin in (a.q_proj, a.k_proj, a.v_proj):
            lin.weight.copy_(lin.weight[:, p])
        a.o_proj.weight.copy_(a.o_proj.weight[p])
        a.q_proj.weight.mul_(2.0)
        a.k_proj.weight.div_(2.0)
        f.gate_proj.weight.copy_(f.gate_proj.weight[q][:, p])
        f.up_proj.weight.copy_(f.up_proj.weight[q][:, p])
        f.down_proj.weight.copy_(f.down_proj.weight[p][:, q])
        for norm in (layer.input_layernorm, layer.post_attention_layernorm):
            norm.weight.copy_(norm.weight[p])
    return m


def test_scores_of_a_model_with_itself_and_with_an_independent(lm):
    _, model, card, data = lm
    same = {s: create_score(s).score(_pair(lm, model)).value for s in LM_SCORES}
    assert same["lm_tokens"] == 1.0 and same["lm_logprob"] < 1e-6
    assert same["lm_cka"] == pytest.approx(1.0) and same["lm_invariant"] == pytest.approx(1.0)
    torch.manual_seed(1)
    other = create_model("causal_lm", card.num_classes, **card.arch_kwargs).eval()
    assert create_score("lm_invariant").score(_pair(lm, other)).value < 0.5
    assert create_score("lm_logprob").score(_pair(lm, other)).value > 1e-3


def test_the_weight_invariant_ignores_permutations_and_rescaling_that_weight_cosine_sees(lm):
    _, model, _, data = lm
    twin = _reparametrised(model)
    with torch.no_grad():
        assert torch.allclose(twin(data.x_test), model(data.x_test), atol=1e-4)  # the same function
    assert create_score("lm_invariant").score(_pair(lm, twin)).value == pytest.approx(1.0, abs=1e-4)
    assert create_score("weights").score(_pair(lm, twin)).value < 0.5


def test_lm_scores_refuse_a_classifier_source(tiny_pool):
    ref = f"{tiny_pool}::root"
    assert main(["score", "lm_tokens", ref, ref]) == 2


def test_cli_reads_lm_scores_against_small_references_and_decides_with_the_lm_test(lm, tiny_lm_files, tiny_pool,
                                                                                   capsys, monkeypatch, tmp_path):
    import mgmp.scores.references as references

    monkeypatch.setattr(references, "LM_REFERENCE_PARAMS", {"epochs": 1, "lr": 3e-3, "batch_size": 32, "n_train": 256})
    src = str(lm[0])
    gguf = tiny_lm_files["root"] / "scored-gguf"
    if not gguf.exists():
        import_model_dir(tiny_lm_files["gguf"], "gguf", gguf)
    assert main(["score", "lm_tokens", src, str(gguf), "--references", "2", "--json", str(tmp_path / "s.json")]) == 0
    out = json.loads((tmp_path / "s.json").read_text())
    assert out["value"] > 0.5 and out["null"]["references"] == 2  # the Q8_0 copy continues as its source does
    assert out["null"]["z"] > 2 and out["null"]["mean"] < out["value"]
    from tests.lm_models import tiny_llama, tiny_tokenizer, write_hf_dir

    other = tmp_path / "other"
    import_model_dir(write_hf_dir(tiny_llama(seed=7), tiny_tokenizer(), tmp_path / "other-hf"), "hf", other)
    for suspect, derived in ((gguf, True), (other, False)):
        assert main(["score", "fused", src, str(suspect), "--references", "2", "--json", str(tmp_path / "v.json")]) == 0
        v = json.loads((tmp_path / "v.json").read_text())
        assert v["derived"] is derived and v["tail"].startswith("Bonferroni over") and v["null_unlike_source"] is None
        assert {"lm_tokens", "lm_logprob", "weights"} <= set(v["scores"]) and v["backbone"] is None
    assert "LM test" in capsys.readouterr().out
    assert main(["score", "fused", src, str(gguf), "--calibration", str(tiny_pool)]) == 2
    assert "decided by the LM test" in capsys.readouterr().err


def test_bench_lm_reads_every_suspect_of_a_tiny_lm_pool_per_relation(tiny_lm_files, tmp_path, monkeypatch):
    import mgmp.scores.references as references
    from mgmp.bench import lm as bench_lm
    from model_pool.builder import build_pool
    from model_pool.plan import parse_plan
    from model_pool.pool import Pool

    monkeypatch.setattr(references, "LM_REFERENCE_PARAMS", {"epochs": 1, "lr": 3e-3, "batch_size": 32})
    data = {"tokenizer": str(tiny_lm_files["hf"] / "tokenizer.json"), "max_length": 32, "n_train": 128, "n_test": 64}
    common = {"dataset": "lm-corpus", "task": "docs", "data": data}
    plan = {"name": "lm", "defaults": {"epochs": 1, "lr": 0.003, "batch_size": 32}, "models": [
        {"id": "src", "recipe": "scratch", "arch": "causal_lm", **common},
        {"id": "int4", "recipe": "quantize", "parent": "src", **common, "params": {"bits": 4}},
        {"id": "sib", "recipe": "finetune", "parent": "src", **common, "task": "arith"},
        {"id": "sib-child", "recipe": "quantize", "parent": "sib", **common, "params": {"bits": 8}},
        {"id": "ind", "recipe": "scratch", "arch": "causal_lm", **common, "seed": 9}]}
    assert build_pool(parse_plan(plan), tmp_path / "pool").ok
    with Pool.open(tmp_path / "pool") as pool:
        result = bench_lm.run(pool, "sib", references=3)  # with 2, the predictive t(1) tail cannot reach 0.01 / 5
    rows = {r["suspect"]: r for r in result["rows"]}
    assert rows["sib-child"]["relation"] == "quantize" and rows["sib-child"]["derived"]
    assert rows["src"]["relation"] == rows["int4"]["relation"] == "sibling / ancestor" and not rows["int4"]["derived"]
    assert rows["ind"]["relation"] == "independent" and not rows["ind"]["derived"]
    assert rows["sib-child"]["decisions"]["lm_invariant"] and not rows["ind"]["decisions"]["lm_invariant"]
    assert rows["sib-child"]["decisions"]["verdict"] and not rows["ind"]["decisions"]["verdict"]
    assert rows["sib-child"]["values"]["lm_inheritance"] > 0.9 > rows["src"]["values"]["lm_inheritance"]
    assert set(result["table"]) == {"quantize", "sibling / ancestor", "independent", "overall"}
    assert "black-box" in result["table"]["overall"] and "| int4 | sibling / ancestor |" in bench_lm.markdown(result)


def test_an_lm_behind_an_endpoint_is_scored_and_judged_from_its_outputs_alone(lm, tiny_lm_files, monkeypatch, capsys,
                                                                            tmp_path):
    """`mgmp serve` of the Q8_0 copy: the black-box scores equal the local directory's, the white-box ones say why
    not, and the LM test decides from the next-token scores alone."""
    import threading

    import mgmp.scores.references as references
    from model_pool.serve import serve_model

    monkeypatch.setattr(references, "LM_REFERENCE_PARAMS", {"epochs": 1, "lr": 3e-3, "batch_size": 32, "n_train": 256})
    src, gguf = str(lm[0]), tiny_lm_files["root"] / "scored-gguf"
    if not gguf.exists():
        import_model_dir(tiny_lm_files["gguf"], "gguf", gguf)
    server = serve_model(load_model_dir(gguf)[0], "127.0.0.1", 0, output="logits")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for method in ("lm_tokens", "lm_logprob"):
            values = []
            for suspect in (f"endpoint:{server.url}", str(gguf)):
                assert main(["score", method, src, suspect, "--references", "0", "--json", str(tmp_path / "s.json")]) == 0
                values.append(json.loads((tmp_path / "s.json").read_text())["value"])
            assert values[0] == pytest.approx(values[1], abs=1e-4), method
        assert main(["score", "lm_cka", src, f"endpoint:{server.url}"]) == 2
        assert "black box" in capsys.readouterr().err
        assert main(["score", "fused", src, f"endpoint:{server.url}", "--references", "4",  # 3: t(2) tails too heavy
                     "--json", str(tmp_path / "v.json")]) == 0
    finally:
        server.shutdown()
        server.server_close()
    v = json.loads((tmp_path / "v.json").read_text())
    assert v["derived"] and v["tail"] == "Bonferroni over 2 scores: lm_tokens, lm_logprob"
