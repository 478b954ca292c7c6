"""EfficientNet-Lite as an mgmp architecture and digits as RGB images at a backbone's resolution, offline: the
pretrained root is a tiny random state dict in the package's format (``MGMP_REAL_DIR``), never the real weights."""
import sys

import pytest
import torch
from torch import nn

from model_pool.archs import create_model, standalone_kwargs
from model_pool.card import ModelCard
from model_pool.data import load_dataset
from model_pool.errors import BadInput, IntegrityError
from model_pool.io import load_model_dir, save_model_dir

TINY = {"width": 0.25, "depth": 0.25}  # 0.19 M parameters without the ImageNet classifier
RGB32 = {"image_size": 32, "channels": 3, "n_train": 100, "n_test": 50}


def _package_state() -> dict:
    """A random state dict of the package's (tiny) EfficientNet-Lite0: the format of its ``.pth`` files."""
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    return EfficientNet.from_name("efficientnet-lite0", width_coefficient=TINY["width"],
                                  depth_coefficient=TINY["depth"]).state_dict()


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the network runs many small ops, and on a busy 2-core machine a second thread that
    waits at every op made the pool build ten times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory):
    """A directory standing in for the packaged roots: ``efficientnet-lite0.pth``, tiny."""
    d = tmp_path_factory.mktemp("real")
    torch.save(_package_state(), d / "efficientnet-lite0.pth")
    return d


@pytest.fixture
def real(real_dir, monkeypatch):
    monkeypatch.setenv("MGMP_REAL_DIR", str(real_dir))
    return real_dir


def _images(n: int = 3, channels: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(1))


def test_contract_and_inputs():
    """Head and features as every mgmp model; [0, 1] RGB or grey images of any size; no ImageNet ``_fc``
    parameter and no normalisation constants in the state dict."""
    model = create_model("efficientnet_lite0", 7, **TINY).eval()
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 7 and model.num_features == 1280
    assert model.input_kind == "image"
    with torch.no_grad():
        for x in (_images(), _images(size=40), _images(channels=1)):
            feats, out = model.forward_features(x), model(x)
            assert feats.shape == (3, 1280) and out.shape == (3, 7) and torch.isfinite(out).all()
            assert torch.allclose(out, model.head(feats), atol=1e-6)
    state = model.state_dict()
    assert not any("_fc" in k for k in state) and not any(k.endswith(("body.mean", "body.std")) for k in state)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_pretrained_loads_strictly(real):
    """``real:NAME`` and a path load every tensor of the package's state dict; the head is new."""
    expected = {k: v for k, v in _package_state().items() if not k.startswith("_fc")}
    for ref in ("real:efficientnet-lite0", str(real / "efficientnet-lite0.pth")):
        model = create_model("efficientnet_lite0", 10, pretrained=ref, **TINY)
        body = {k.replace(".conv.", "."): v for k, v in model.body.net.state_dict().items()}  # padded convs
        assert body.keys() == expected.keys() and all(torch.equal(body[k], v) for k, v in expected.items())


@pytest.mark.parametrize("case", ["other size", "other arch", "pickled object", "missing package"])
def test_refusals_are_one_line(real, tmp_path, monkeypatch, case):
    """A state dict of another size or architecture, a pickle that is more than tensors, no package: one line."""
    kw = dict(TINY)
    if case == "other size":
        kw["width"] = 0.5
    elif case == "other arch":
        torch.save(create_model("small_cnn", 10).state_dict(), tmp_path / "cnn.pth")
        kw["pretrained"] = str(tmp_path / "cnn.pth")
    elif case == "pickled object":
        torch.save({"w": torch.zeros(1), "code": BadInput("not a tensor")}, tmp_path / "obj.pth")
        kw["pretrained"] = str(tmp_path / "obj.pth")
    else:
        monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(IntegrityError if case == "pickled object" else BadInput) as e:
        create_model("efficientnet_lite0", 10, **{"pretrained": "real:efficientnet-lite0", **kw})
    assert "\n" not in str(e.value)
    assert {"missing package": "efficientnet-lite-pytorch", "pickled object": "refused"}.get(case, "does not fit") in str(e.value)


def test_saved_model_reloads_without_pretrained(real, tmp_path):
    kw = {"pretrained": "real:efficientnet-lite0", **TINY}
    model = create_model("efficientnet_lite0", 10, **kw).eval()
    card = ModelCard(arch="efficientnet_lite0", arch_kwargs=standalone_kwargs(kw, model), num_classes=10,
                     input=load_dataset("digits", **RGB32).input)
    save_model_dir(model, card, tmp_path / "m")
    again, card = load_model_dir(tmp_path / "m")
    assert "pretrained" not in card.arch_kwargs
    x = _images()
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_digits_rgb_upscaled(monkeypatch):
    """Shapes, ranges and recorded input of the upscaled RGB digits; only the kept images are resized."""
    from model_pool.data import digits

    sizes = []
    interpolate = digits.F.interpolate
    monkeypatch.setattr(digits.F, "interpolate", lambda x, **kw: sizes.append(len(x)) or interpolate(x, **kw))
    grey = load_dataset("digits", n_train=100, n_test=50)
    for name, task in (("digits", None), ("digits-tasks", "2:5")):
        d = load_dataset(name, task=task, **RGB32)
        assert d.x_train.shape == (100, 3, 32, 32) and d.x_test.shape == (50, 3, 32, 32)
        assert d.input == {"kind": "image", "shape": [3, 32, 32], "range": [0.0, 1.0],
                           "normalization": {"mean": [0.0] * 3, "std": [1.0] * 3}}
        assert 0 <= d.x_train.min() and d.x_train.max() <= 1 and d.x_train.max() > 0.9
        assert torch.equal(d.x_train[:, 0], d.x_train[:, 2])
    assert sizes == [100, 50, 100, 50]
    same = load_dataset("digits", n_train=100, n_test=50, image_size=8, channels=3)
    assert torch.equal(same.x_train[:, :1], grey.x_train) and same.y_train.equal(grey.y_train)


def test_digits_defaults_unchanged():
    d = load_dataset("digits")
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert d.input == {"kind": "image", "shape": [1, 8, 8], "normalization": {"mean": [0.0], "std": [1.0]},
                       "range": [0.0, 1.0]}
    assert load_dataset("digits-tasks", task="2:5").input == d.input


@pytest.mark.parametrize("kw", [{"image_size": 4}, {"image_size": 513}, {"image_size": 32.0}, {"image_size": True},
                                {"channels": 2}, {"channels": "3"}])
def test_digits_shape_checked(kw):
    with pytest.raises(BadInput):
        load_dataset("digits", n_train=10, **kw)


def test_recipes_build_on_efficientnet(real, tmp_path):
    """A pretrained (tiny) root and one child per recipe family, every job built and reloadable."""
    from model_pool.builder import build_pool
    from model_pool.plan import parse_plan

    on = {"parent": "root", "dataset": "digits", "data": RGB32}
    children = [{"id": r, "recipe": r, **on} for r in ("finetune", "finetune_last", "prune", "adapter", "distill")]
    plan = {"name": "lite", "defaults": {"epochs": 1, "batch_size": 128}, "models": [
        {"id": "root", "recipe": "scratch", "arch": "efficientnet_lite0", "dataset": "digits", "data": RGB32,
         "arch_kwargs": {"pretrained": "real:efficientnet-lite0", **TINY}},
        *children,
        {"id": "quantize", "recipe": "quantize", "params": {"bits": 8}, **on},
        {"id": "extract", "recipe": "extract", "arch": "small_cnn", "arch_kwargs": {"in_channels": 3, "image_size": 32}, **on},
        {"id": "transfer", "recipe": "transfer", **on, "dataset": "digits-tasks", "task": "2:5"},
    ]}
    report = build_pool(parse_plan(plan), tmp_path / "pool")
    assert report.ok, report.failed
    assert len(report.built) == 9
    model, card = load_model_dir(tmp_path / "pool" / "models" / "adapter")
    assert card.arch_kwargs == TINY and not any("lora" in n for n, _ in model.named_parameters())
    init = {c: load_model_dir(tmp_path / "pool" / "models" / c)[1].recipe.get("init") for c in ("finetune", "distill", "extract")}
    assert init == {"finetune": "real:efficientnet-lite0", "distill": None, "extract": None}  # kept where weights are
