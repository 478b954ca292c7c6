"""Every registered architecture honours the contract in ``model_pool.archs`` (timm-style: registering
an architecture gives it these tests), plus the local-pretrained paths of ResNet and DistilBERT."""
import inspect
import json
import shutil
import warnings

import pytest
import torch
from torch import nn

from model_pool.archs import ARCHS, create_model, replace_head, standalone_kwargs

# Builders with a ``vocab_size`` kwarg read token ids (N, L), causal LMs too (their classes are the
# vocabulary); the rest read images (N, C, H, W).
IMAGE_CASES = {"gray": (1, 8), "rgb": (3, 32)}
SHRINK = {"resnet50": 16}  # image size where a 32x32 pass is slow on CPU
ONLY = {"resnet50": ["rgb"]}  # its code path is resnet18's; one case keeps the suite fast


LMS = {"causal_lm"}


def _is_text(name: str) -> bool:
    return name in LMS or "vocab_size" in inspect.signature(ARCHS.get(name)).parameters


def _cases() -> list:
    cases = []
    for name in ARCHS.names():
        for case in ["lm" if name in LMS else "ids"] if _is_text(name) else ONLY.get(name, IMAGE_CASES):
            cases.append(pytest.param(name, case, id=f"{name}-{case}"))
    return cases


def _make(name: str, case: str, num_classes: int = 10, seed: int = 0):
    """Model built from JSON-round-tripped kwargs (as a model.json records them), and an input batch."""
    if case in ("ids", "lm"):
        kw = {"vocab_size": 100, "max_length": 16} if case == "ids" else {}
        x = torch.randint(1, 100 if case == "ids" else num_classes, (4, 16), generator=torch.Generator().manual_seed(1))
        x[1, 12:] = 0
        x[2, 5:] = 0
    else:
        channels, size = IMAGE_CASES[case]
        size = min(size, SHRINK.get(name, size))
        kw = {"in_channels": channels, "image_size": size}
        x = torch.rand(2, channels, size, size, generator=torch.Generator().manual_seed(1))
    kw = json.loads(json.dumps(kw))
    torch.manual_seed(seed)
    return create_model(name, num_classes, **kw), x


@pytest.mark.parametrize("name,case", _cases())
def test_contract(name, case):
    """Shapes, finiteness, forward == head(forward_features), rebuild from kwargs + state dict gives the same
    outputs, replace_head, and finite gradients for every parameter (one test: forward passes are slow)."""
    model, x = _make(name, case)
    assert model.input_kind == ("image" if case in IMAGE_CASES else "text")
    assert isinstance(model.num_features, int) and isinstance(model.head, nn.Linear)
    assert model.head.in_features == model.num_features
    clone, _ = _make(name, case, seed=1)
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        out, feats, again = model.eval()(x), model.forward_features(x), clone.eval()(x)
    assert out.shape == (len(x), 10) and torch.isfinite(out).all()
    assert feats.shape == (len(x), model.num_features)
    assert torch.allclose(out, model.head(feats), atol=1e-5)
    assert torch.allclose(out, again, rtol=0, atol=1e-6)

    replace_head(model, 5)
    out = model.train()(x)
    assert out.shape == (len(x), 5)
    out.logsumexp(1).sum().backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert not [n for n, p in params if p.grad is None or not p.grad.isfinite().all()]


@pytest.mark.parametrize("name", [n for n in ARCHS.names() if _is_text(n)])
def test_all_padding_row_is_finite(name):
    model, x = _make(name, "lm" if name in LMS else "ids")
    x[3] = 0
    with torch.no_grad():
        assert torch.isfinite(model.eval()(x)).all()


def test_small_cnn_and_mlp_keep_their_layout():
    """Recipes and tests index ``body`` (first conv / first linear), so its layout is part of the contract."""
    assert isinstance(create_model("small_cnn", 10, in_channels=1, image_size=8).body[0], nn.Conv2d)
    linear = create_model("mlp", 10, in_channels=1, image_size=8, hidden=[32]).body
    assert linear[1].in_features == 64 and linear[1].out_features == 32
    assert create_model("mlp", 3, in_channels=1, image_size=8, hidden=[]).num_features == 64


def test_vit_rejects_a_patch_size_that_does_not_divide_the_image():
    with pytest.raises(ValueError, match="patch_size"):
        create_model("vit_tiny", 10, image_size=8, patch_size=3)


def test_resnet_loads_a_local_torchvision_state_dict(tmp_path):
    import torchvision

    torch.manual_seed(0)
    sd = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(sd, tmp_path / "r18.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = create_model("resnet18", 10, small_input=False, pretrained=str(tmp_path / "r18.pth"))
        cifar = create_model("resnet18", 10, pretrained=str(tmp_path / "r18.pth"))  # 3x3 stem: conv1 skipped
    body = full.body.state_dict()
    assert all(torch.equal(body[k], v) for k, v in sd.items() if not k.startswith("fc."))
    assert torch.equal(cifar.body.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])
    assert cifar.body.conv1.weight.shape == (64, 3, 3, 3)
    assert full.num_features == 512 and isinstance(full.body.fc, nn.Identity)
    with pytest.warns(UserWarning, match="not loaded"):  # a ResNet-18 file given to ResNet-50
        create_model("resnet50", 10, pretrained=str(tmp_path / "r18.pth"))


def _save_tiny_distilbert(path):
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    enc = DistilBertModel(DistilBertConfig(vocab_size=60, dim=32, n_layers=1, n_heads=2, hidden_dim=64))
    enc.save_pretrained(path)
    return enc


def test_distilbert_from_local_pretrained_dir(tmp_path):
    enc = _save_tiny_distilbert(tmp_path / "db")
    kw = {"pretrained": str(tmp_path / "db")}
    model = create_model("distilbert", 4, **kw).eval()
    assert model.num_features == 32
    assert torch.equal(model.encoder.embeddings.word_embeddings.weight, enc.embeddings.word_embeddings.weight)

    shutil.rmtree(tmp_path / "db")
    clone = create_model("distilbert", 4, **json.loads(json.dumps(standalone_kwargs(kw, model))))
    clone.load_state_dict(model.state_dict())
    ids = torch.randint(1, 60, (2, 8))
    with torch.no_grad():
        assert torch.allclose(model(ids), clone.eval()(ids), atol=1e-6)


def test_pretrained_dir_must_fit_the_requested_sizes(tmp_path):
    _save_tiny_distilbert(tmp_path / "db")
    with pytest.raises(ValueError, match="vocab_size"):
        create_model("distilbert", 4, vocab_size=100, pretrained=str(tmp_path / "db"))
    with pytest.raises(TypeError, match="vocab_size"):
        create_model("bert", 4)


def test_saved_model_does_not_need_its_pretrained_dir(tmp_path):
    from model_pool.card import ModelCard
    from model_pool.io import load_model_dir, save_model_dir

    _save_tiny_distilbert(tmp_path / "db")
    kw = {"pretrained": str(tmp_path / "db")}
    model = create_model("distilbert", 4, **kw).eval()
    card = ModelCard(arch="distilbert", arch_kwargs=standalone_kwargs(kw, model), num_classes=4, input={"kind": "text"})
    save_model_dir(model, card, tmp_path / "m")
    shutil.rmtree(tmp_path / "db")
    loaded, _ = load_model_dir(tmp_path / "m")
    ids = torch.randint(1, 60, (2, 8))
    with torch.no_grad():
        assert torch.allclose(model(ids), loaded(ids), atol=1e-6)
