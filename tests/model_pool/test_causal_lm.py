"""Causal language models as mgmp models: imports from a Hugging Face directory and a GGUF file, the prompt
corpus, and the recipes' language-modelling loss, on a tiny random Llama (no real weights, no downloads)."""

import pytest
import torch

from mgmp.cli import main
from model_pool.archs.causal import greedy_tokens
from model_pool.data import load_dataset
from model_pool.data.corpus import file_texts
from model_pool.errors import BadInput, IntegrityError
from model_pool.io import load_model_dir
from model_pool.model_import import import_model_dir
from model_pool.recipes import RecipeContext, run_recipe
from model_pool.train import lm_loss
from tests.lm_models import VOCAB


@pytest.fixture(scope="module")
def imported(tiny_lm_files):
    root = tiny_lm_files["root"]
    import_model_dir(tiny_lm_files["hf"], "hf", root / "a")
    assert main(["model", "import", str(tiny_lm_files["gguf"]), "--from", "gguf", "--out", str(root / "b")]) == 0
    return root / "a", root / "b"


def test_hf_and_gguf_imports_reproduce_the_model_and_record_the_quantisation(tiny_lm_files, imported):
    (a, card_a), (b, card_b) = (load_model_dir(p) for p in imported)
    x = torch.randint(1, VOCAB, (3, 12), generator=torch.Generator().manual_seed(0))
    x[1, 7:] = 0  # right padding: the prediction after the last real token is the unpadded prompt's
    with torch.no_grad():
        ref = tiny_lm_files["model"](input_ids=x).logits[:, -1]
        ref[1] = tiny_lm_files["model"](input_ids=x[1:2, :7]).logits[0, -1]
        assert torch.allclose(a(x), ref, atol=1e-5)
        assert (b(x) - ref).abs().max() < 0.02  # Q8_0 rounding, dequantised
        assert not torch.equal(b(x), a(x))
    assert card_a.arch == card_b.arch == "causal_lm" and card_a.num_classes == VOCAB
    assert card_a.task == card_b.task and card_a.task.startswith("tokens-")  # one tokenizer: one output space
    assert card_b.recipe["gguf"] == {"file_type": "MOSTLY_Q8_0", "tensor_types": {"Q8_0": 15, "F32": 5}}
    assert "tokenizer.json" in card_b.files
    data = load_dataset(card_b.recipe["dataset"], task=card_b.recipe["task"], **card_b.recipe["data"])
    assert data.x_test.shape == (400, 32) and data.num_classes == VOCAB


def test_imports_refuse_pickles_and_directories_without_a_tokenizer(tiny_lm_files, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text((tiny_lm_files["hf"] / "config.json").read_text())
    torch.save({}, src / "pytorch_model.bin")
    with pytest.raises(IntegrityError, match="pickled"):
        import_model_dir(src, "hf", tmp_path / "x")
    (src / "model.safetensors").write_bytes((tiny_lm_files["hf"] / "model.safetensors").read_bytes())
    with pytest.raises(BadInput, match="tokenizer.json"):
        import_model_dir(src, "hf", tmp_path / "x")
    with pytest.raises(BadInput, match="gguf"):
        import_model_dir(tiny_lm_files["hf"] / "config.json", "gguf", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_corpus_prompts_are_right_padded_windows_with_their_next_token(tiny_lm_files, tmp_path):
    tok = str(tiny_lm_files["hf"] / "tokenizer.json")
    d = load_dataset("lm-corpus", task="arith", tokenizer=tok, n_train=50, n_test=20)
    assert torch.equal(d.x_train, load_dataset("lm-corpus", task="arith", tokenizer=tok, n_train=50, n_test=20).x_train)
    lengths = (d.x_train != 0).sum(1)
    assert lengths.min() >= 16 and (d.x_train[:, :16] != 0).all()  # real tokens first, then padding
    assert all((row[n:] == 0).all() for row, n in zip(d.x_train, lengths))
    f = tmp_path / "notes.txt"
    f.write_text("The first paragraph of a user's own text, long enough to cut prompts from it.\n\n"
                 "A second paragraph, which is also long enough for a prompt of sixteen tokens or more.\n")
    assert len(file_texts(str(f))) == 2
    assert load_dataset("lm-corpus", path=str(f), tokenizer=tok, n_train=8, n_test=4).meta["domain"] == "file"


def test_recipes_train_with_the_language_modelling_loss_and_keep_the_tied_head(imported):
    model, card = load_model_dir(imported[0])
    data = load_dataset("lm-corpus", task="stories", **card.recipe["data"], n_train=256, n_test=32)
    before = float(lm_loss(model, data.x_train, data.y_train))
    ctx = RecipeContext(data, parents=[model], parent_cards=[card], seed=0,
                        params={"epochs": 2, "lr": 3e-3, "batch_size": 32, "amount": 0.3, "bits": 4, "layers": 1})
    tuned = run_recipe("finetune", ctx)
    assert float(lm_loss(tuned, data.x_train, data.y_train)) < before - 0.1
    for relation in ("prune", "quantize", "finetune_top"):
        out = run_recipe(relation, ctx)
        assert out.head.weight is out.hf.get_input_embeddings().weight  # still tied
    first, last = (lambda m: m.hf.model.layers[0].mlp.up_proj.weight), (lambda m: m.hf.model.layers[-1].mlp.up_proj.weight)
    assert torch.equal(first(out), first(model)) and not torch.equal(last(out), last(model))  # top block only
    black_box = torch.nn.Sequential(tuned)  # next-token forward only: continued one query at a time
    cached = greedy_tokens(tuned, data.x_test[:16], 4)
    assert cached.shape == (16, 4) and torch.equal(cached, greedy_tokens(black_box, data.x_test[:16], 4))


def test_a_sequence_level_thief_learns_the_teachers_continuations(imported):
    """Both thieves (continuation text only; top-k log-probabilities at every position) reproduce most of the
    teacher's greedy tokens on prompts they never sent; a model trained on the truth instead does not."""
    from model_pool.recipes.lm_teach import continued

    x = torch.tensor([[5, 6, 0, 0], [7, 8, 9, 0]])
    ids, y = continued(x, torch.tensor([[1, 2, 3], [4, 5, 6]]))
    assert ids.tolist() == [[5, 6, 1, 2, 0, 0, 0], [7, 8, 9, 4, 5, 0, 0]] and y.tolist() == [3, 6]
    teacher, card = load_model_dir(imported[0])
    data = load_dataset("lm-corpus", task="stories", **card.recipe["data"], n_train=192, n_test=48)
    ref = greedy_tokens(teacher, data.x_test, 8)
    common = {"epochs": 3, "lr": 3e-3, "batch_size": 32}
    agree = {}
    for outputs in ("labels", "probabilities"):
        ctx = RecipeContext(data, parents=[teacher], parent_cards=[card], seed=3, arch="causal_lm",
                            arch_kwargs=teacher.config_kwargs(), params={**common, "outputs": outputs, "queries": 192})
        agree[outputs] = float((greedy_tokens(run_recipe("extract", ctx), data.x_test, 8) == ref).float().mean())
    ind = run_recipe("scratch", RecipeContext(data, arch="causal_lm", arch_kwargs=teacher.config_kwargs(), seed=5,
                                              params=common))
    agree["independent"] = float((greedy_tokens(ind, data.x_test, 8) == ref).float().mean())
    assert min(agree["labels"], agree["probabilities"]) > 0.4 > agree["independent"], agree
