"""Every registered architecture honours the contract in ``model_pool.archs`` (timm-style: registering
an architecture gives it these tests)."""
import pytest
import torch

from model_pool.archs import ARCHS, create_model, replace_head

TEXT = {"distilbert", "bert", "bilstm"}


def _make(name, num_classes=10):
    torch.manual_seed(0)
    if name in TEXT:
        kw = {"vocab_size": 100, "max_length": 16}
        x = torch.randint(1, 100, (4, 16))
        x[:2, 10:] = 0
    else:
        kw = {"in_channels": 1, "image_size": 8, **({"patch_size": 2} if name == "vit_tiny" else {})}
        x = torch.rand(4, 1, 8, 8)
    return create_model(name, num_classes, **kw), kw, x


@pytest.mark.parametrize("name", ARCHS.names())
def test_contract(name):
    model, kw, x = _make(name)
    model.eval()
    out = model(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    feats = model.forward_features(x)
    assert feats.shape == (4, model.num_features)
    assert torch.allclose(out, model.head(feats), atol=1e-5)
    assert model.input_kind == ("text" if name in TEXT else "image")
    model.train()
    model(x).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    replace_head(model, 5)
    assert model.eval()(x).shape == (4, 5)


@pytest.mark.parametrize("name", ARCHS.names())
def test_rebuild_from_kwargs_is_identical(name):
    model, kw, x = _make(name)
    clone = create_model(name, 10, **kw)
    clone.load_state_dict(model.state_dict())
    assert torch.allclose(model.eval()(x), clone.eval()(x), atol=1e-6)


def test_resnet_on_three_channel_images_and_local_pretrained(tmp_path):
    import torchvision

    sd = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(sd, tmp_path / "r18.pth")
    model = create_model("resnet18", 10, small_input=False, pretrained=str(tmp_path / "r18.pth"))
    assert torch.equal(model.body.layer1[0].conv1.weight, sd["layer1.0.conv1.weight"])
    assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert create_model("resnet50", 3).eval()(torch.rand(2, 3, 16, 16)).shape == (2, 3)


def test_distilbert_from_local_pretrained_dir(tmp_path):
    from transformers import DistilBertConfig, DistilBertModel

    enc = DistilBertModel(DistilBertConfig(vocab_size=60, dim=32, n_layers=1, n_heads=2, hidden_dim=64))
    enc.save_pretrained(tmp_path / "db")
    model = create_model("distilbert", 4, pretrained=str(tmp_path / "db"))
    assert model.num_features == 32
    assert torch.equal(model.encoder.embeddings.word_embeddings.weight, enc.embeddings.word_embeddings.weight)


def test_saved_model_does_not_need_its_pretrained_dir(tmp_path):
    import shutil

    from transformers import DistilBertConfig, DistilBertModel

    from model_pool.archs import standalone_kwargs
    from model_pool.card import ModelCard
    from model_pool.io import load_model_dir, save_model_dir

    DistilBertModel(DistilBertConfig(vocab_size=60, dim=32, n_layers=1, n_heads=2, hidden_dim=64)).save_pretrained(tmp_path / "db")
    kw = {"pretrained": str(tmp_path / "db")}
    model = create_model("distilbert", 4, **kw).eval()
    card = ModelCard(arch="distilbert", arch_kwargs=standalone_kwargs(kw, model), num_classes=4, input={"kind": "text"})
    save_model_dir(model, card, tmp_path / "m")
    shutil.rmtree(tmp_path / "db")
    loaded, _ = load_model_dir(tmp_path / "m")
    ids = torch.randint(1, 60, (2, 8))
    assert torch.allclose(model(ids), loaded(ids), atol=1e-6)
