"""Models and data that mgmp did not build (SPEC §11): plain torchvision networks saved as state dicts, data
as an .npz and as an image folder, imported and scored from the CLI alone; a suspect behind an HTTP
endpoint; per-source work reused across suspects; a foreign pool's calibration applied to them."""
import json
import math
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

from mgmp.calibration import null as null_mod
from mgmp.calibration import verdict as verdict_mod
from mgmp.calibration.verdict import FusedTest, compress, pool_test
from mgmp.cli import main
from mgmp.scores import compute, create_score, list_scores, load_pair
from model_pool.pool import Pool
from model_pool.serve import serve_model

CHEAP_NULL = {"sac": ("sac", {"n_points": 16}), "dna": ("dna", {"n_points": 16})}
SHAPE = (3, 16, 16)
N_CLASSES = 4


def _state(model: torch.nn.Module) -> dict:
    return {k: v.contiguous() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A ResNet-18 source, a fine-tuned-like copy of it (weights + 1 % noise), a MobileNetV2, their data."""
    root = tmp_path_factory.mktemp("world")
    torch.manual_seed(0)
    src = torchvision.models.resnet18(num_classes=N_CLASSES)
    copy = torchvision.models.resnet18(num_classes=N_CLASSES)
    copy.load_state_dict({k: v + 0.01 * v.std() * torch.randn_like(v) if v.is_floating_point() and v.numel() > 1 else v
                          for k, v in src.state_dict().items()})
    mnv2 = torchvision.models.mobilenet_v2(num_classes=N_CLASSES)
    save_file(_state(src), str(root / "src.safetensors"))
    torch.save(copy.state_dict(), root / "copy.pt")
    save_file(_state(mnv2), str(root / "mnv2.safetensors"))
    rng = np.random.default_rng(0)
    np.savez(root / "data.npz", x=rng.random((40, *SHAPE), dtype=np.float32), y=rng.integers(0, N_CLASSES, 40))
    for c in range(N_CLASSES):
        (root / "images" / f"class{c}").mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 18, 3), dtype=np.uint8)).save(root / "images" / f"class{c}" / f"{i}.png")
    common = ["--num-classes", str(N_CLASSES), "--input", "image:3,16,16", "--task", "four-shapes"]
    for name, weights, family, data in (("src", "src.safetensors", "torchvision:resnet18", f"npz:{root / 'data.npz'}"),
                                        ("copy", "copy.pt", "torchvision:resnet18", f"imagefolder:{root / 'images'}"),
                                        ("mnv2", "mnv2.safetensors", "torchvision:mobilenet_v2", f"npz:{root / 'data.npz'}")):
        assert main(["model", "import", str(root / weights), "--from", family, *common, "--data", data,
                     "--normalize", "0.5,0.5,0.5/0.25,0.25,0.25", "--out", str(root / name)]) == 0
    return root


@pytest.fixture()
def short_references(monkeypatch):
    """The references scores generate for themselves (closeness's test set, Zest's distance, the student detectors)
    trained for 2 epochs, not 10: these tests check that every score runs on imported models and agrees across
    access paths, not what the references learn. Cached under their own keys (the epochs are part of the key), so
    the tests that keep the defaults (the null's references, which must learn) never read them."""
    from mgmp.scores import references

    independent = references._independent_params
    monkeypatch.setattr(references, "_independent_params", lambda *a, **k: {**independent(*a, **k), "epochs": 2})
    monkeypatch.setitem(references.SURROGATE_PARAMS, "epochs", 2)


FAST = {"closeness": ["k=8", "candidates=24", "n_lineage=1", "n_independent=1"], "zest": ["n_points=4", "n_masks=40"], "ipguard": ["n_points=8", "steps=5"],
        "modeldiff": ["n_points=8"], "sac": ["n_points=8"], "dna": ["n_points=8"], "basin": ["n_points=16", "bn_points=16"],
        "weights": [], "inheritance": ["n_references=2"], "dataset_inference": ["n_points=4", "n_fit=4", "k=3"],
        "cae": ["n_candidates=16", "steps=10", "eps=0.5", "lr=0.1", "n_surrogates=1", "n_independent=1", "min_conferrability=0"],
        "generated": ["n_points=10", "steps=1", "n_lineage=0", "n_surrogates=1", "n_independent=2", "chunks=1"]}


def _score(capsys, method, a, b, *extra):
    params = [p for kv in FAST.get(method, []) for p in ("--param", kv)]
    code = main(["score", method, str(a), str(b), *params, *extra])
    return code, capsys.readouterr()


def test_imported_models_are_ordinary_model_directories(world):
    card = json.loads((world / "mnv2" / "model.json").read_text())
    assert card["arch"] == "torchvision:mobilenet_v2" and card["arch_kwargs"] == {"classifier": "classifier.1"}
    assert card["input"] == {"kind": "image", "shape": [3, 16, 16], "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}}
    assert card["recipe"]["dataset"].startswith("npz:") and card["relation"] == "external"
    # the imported network computes exactly what the user's torchvision module computes
    net = torchvision.models.mobilenet_v2(num_classes=N_CLASSES).eval()
    from safetensors.torch import load_file

    net.load_state_dict(load_file(str(world / "mnv2.safetensors")))
    pair = load_pair(str(world / "mnv2"), str(world / "mnv2"))
    x = pair.source_data.x_test[:3]
    assert torch.allclose(pair.source(x), net(x), atol=1e-5)
    assert pair.source.forward_features(x).shape == (3, 1280)  # the classifier's input


def test_every_method_scores_imported_pairs_from_the_cli(world, short_references, capsys):
    """Same architecture: a value from every method; across architectures: a value or one 'not applicable'
    line (exit 2), never a traceback."""
    lm = {s for s in list_scores() if s.startswith("lm_")}  # language-model scores: tests/mgmp/test_lm_scores.py
    assert set(FAST) == set(list_scores()) - lm
    for method in sorted(lm):  # a classifier source: one "not applicable" line
        code, out = _score(capsys, method, world / "src", world / "copy")
        assert code == 2 and out.err.startswith("mgmp: not applicable:") and len(out.err.strip().splitlines()) == 1
    values = {}
    for method in FAST:
        base = ["--base", str(world / "src")] if method == "inheritance" else []  # no recipe or parent recorded
        code, out = _score(capsys, method, world / "src", world / "copy", *base, "--json", str(world / f"{method}.json"))
        assert code == 0, out.err
        values[method] = json.loads((world / f"{method}.json").read_text())["value"]
        code, out = _score(capsys, method, world / "src", world / "mnv2")
        assert code in (0, 2) and "Traceback" not in out.err
        if code == 2:
            assert out.err.startswith("mgmp: not applicable:") and len(out.err.strip().splitlines()) == 1
    assert values["weights"] > 0.99 and values["basin"] < 0.5  # a near-copy: same weights, same basin


def test_weights_of_two_directories_are_read_from_their_files_without_torch(world, tmp_path, capsys):
    """`mgmp score weights A B` on two model directories reads their safetensors arrays (sha256 checked) and gives
    the value of the built pair, without importing torch; an altered file is refused in one line."""
    out = tmp_path / "w.json"
    code = ("import sys; from mgmp.cli import main; "
            f"rc = main(['score', 'weights', {str(world / 'src')!r}, {str(world / 'copy')!r}, '--json', {str(out)!r}]); "
            "assert rc == 0 and 'torch' not in sys.modules, [m for m in sys.modules if m.startswith('torch')][:3]")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    built = compute(create_score("weights"), load_pair(str(world / "src"), str(world / "copy")))
    assert json.loads(out.read_text())["value"] == pytest.approx(built.value, abs=1e-12)
    altered = tmp_path / "altered"
    shutil.copytree(world / "copy", altered)
    with open(altered / "model.safetensors", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x7f" * 8)
    assert main(["score", "weights", str(world / "src"), str(altered)]) == 2
    err = capsys.readouterr().err
    assert "sha256 does not match" in err and len(err.strip().splitlines()) == 1


def test_bad_imports_get_one_line(world, tmp_path, capsys):
    evil = tmp_path / "evil.pt"

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"w": Evil()}, evil)
    cases = [
        ([str(evil), "--from", "torchvision:resnet18"], "weights_only"),
        ([str(world / "mnv2.safetensors"), "--from", "torchvision:resnet18"], "weights do not fit"),
        ([str(world / "src.safetensors"), "--from", "torchvision:no_such_net"], "no model"),
        ([str(world / "src.safetensors"), "--from", "keras:resnet"], "unknown family"),
    ]
    for args, msg in cases:
        assert main(["model", "import", *args, "--num-classes", "4", "--input", "image:3,16,16",
                     "--out", str(tmp_path / "m")]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err
    assert main(["model", "import", str(world / "src.safetensors"), "--from", "torchvision:resnet18", "--num-classes",
                 "3", "--input", "image:3,16,16", "--data", f"npz:{world / 'data.npz'}", "--out", str(tmp_path / "m")]) == 2
    assert "classes" in capsys.readouterr().err and not (tmp_path / "m").exists()


@pytest.fixture()
def endpoint(world):
    """The fine-tuned copy behind `mgmp serve`'s server on 127.0.0.1 (logits, as the CLI serves by default)."""
    model = load_pair(str(world / "copy"), str(world / "copy")).source
    server = serve_model(model, "127.0.0.1", 0, output="logits")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"endpoint:{server.url}"
    server.shutdown()
    server.server_close()


def test_an_endpoint_suspect_scores_like_its_directory(world, short_references, endpoint, capsys):
    for method in ("closeness", "zest", "modeldiff", "ipguard", "sac"):
        code, out = _score(capsys, method, world / "src", endpoint, "--json", str(world / "ep.json"))
        assert code == 0, out.err
        remote = json.loads((world / "ep.json").read_text())
        _score(capsys, method, world / "src", world / "copy", "--json", str(world / "local.json"))
        local = json.loads((world / "local.json").read_text())
        assert remote["value"] == pytest.approx(local["value"], abs=1e-5), method
        # every input the method asks the endpoint about is counted (a local suspect's Zest signature may come
        # from the cache, keyed by its weights' sha256, and then costs no query)
        assert remote["extra"]["queries"] > 0 and local["extra"]["queries"] in (0, remote["extra"]["queries"])
    for method in ("basin", "weights", "dna"):  # white-box methods say why, in one line
        code, out = _score(capsys, method, world / "src", endpoint)
        assert code == 2 and "black box" in out.err and len(out.err.strip().splitlines()) == 1
    code, out = _score(capsys, "modeldiff", world / "src", endpoint, "--max-queries", "5")
    assert code == 2 and "--max-queries" in out.err


def test_per_source_work_is_done_once_outside_a_pool(world, short_references, monkeypatch):
    """The second suspect of a source reuses what depends only on the source (here: IPGuard's fingerprints,
    ModelDiff's perturbed inputs and DDV, SAC's correlation matrix, closeness's generated test set)."""
    from mgmp.scores import baselines, closeness

    methods = {"ipguard": {"n_points": 8, "steps": 5}, "modeldiff": {"n_points": 8}, "sac": {"n_points": 8},
               "closeness": {"k": 8, "candidates": 24, "n_lineage": 1, "n_independent": 1}}  # FAST's budgets
    for name, params in methods.items():
        compute(create_score(name, **params), load_pair(str(world / "src"), str(world / "copy")))
    monkeypatch.setattr(baselines.IPGuard, "fingerprints", lambda *a: pytest.fail("fingerprints recomputed"))
    monkeypatch.setattr(baselines.ModelDiff, "source_side", lambda *a: pytest.fail("source inputs recomputed"))
    monkeypatch.setattr(baselines, "correlation_matrix", _only_once(baselines.correlation_matrix))
    monkeypatch.setattr(closeness, "reference_models", lambda *a, **k: pytest.fail("test set regenerated"))
    for name, params in methods.items():
        compute(create_score(name, **params), load_pair(str(world / "src"), str(world / "mnv2")))


def _only_once(fn):
    calls = []

    def wrapped(*a):
        calls.append(1)
        assert len(calls) == 1, "the source's correlation matrix was recomputed"
        return fn(*a)

    return wrapped


def test_a_foreign_pools_calibration_gives_a_verdict(world, tiny_pool, tmp_path, capsys):
    pool = tmp_path / "pool"
    shutil.copytree(tiny_pool, pool)
    assert main(["calibrate", str(pool), "--methods", "weights,sac", "--no-query", "--references", "2"]) == 0
    capsys.readouterr()
    out = tmp_path / "f.json"
    assert main(["score", "fused", str(world / "src"), str(world / "copy"), "--calibration", str(pool),
                 "--references", "2", "--json", str(out)]) == 0
    res = json.loads(out.read_text())  # the pool's own fused test: the scores it was calibrated on, sac against its null
    assert res["calibration"].startswith(f"calibration of {pool} (") and set(res["scores"]) == {"sac"}
    assert "its level is not established), another domain" in res["calibration"]  # asked for, with its few independents
    with Pool.open(pool) as p:  # not asked for (a query's support): the shipped test, whose level is established
        assert pool_test(p)[1].startswith("shipped calibration (the pool's own test has")
    assert 0 <= res["value"] <= 1 and "another domain" in " ".join(capsys.readouterr().out.split())
    assert set(res["raw"]) == {"weights"} and res["scores"]["sac"]["references"] == 2


def test_a_new_users_first_verdict_needs_no_pool(world, tmp_path, monkeypatch, capsys):
    """Two imported torchvision ResNet-18s and an .npz: one command, the package's calibration, A's references
    trained once; a single score prints its null once it is cached."""
    cheap = tmp_path / "cheap.json"  # the shipped test's form on cheap columns: this is a test of the plumbing
    rng = np.random.default_rng(0)
    x = np.r_[np.c_[compress(rng.normal(4, 1, (50, 2))), np.full(50, 0.9)], np.c_[compress(rng.normal(0, 1, (50, 2))),
                                                                               np.zeros(50)]]
    FusedTest.fit(x, np.arange(100) < 50, CHEAP_NULL, {"weights": ("weights", {})}).save(cheap)
    monkeypatch.setattr(verdict_mod, "DEFAULT_PATH", cheap)
    # the world's data are 40 random points: its references learn little (train accuracy 0.34 against the untrained
    # source's 0.19); a tighter gap than the default's 0.25 flags them (on 600 random points they reach 1.00)
    monkeypatch.setattr(null_mod, "MAX_ACCURACY_GAP", 0.1)
    out = tmp_path / "v.json"
    assert main(["score", "fused", str(world / "src"), str(world / "copy"), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["derived"] and res["calibration"] == "shipped calibration" and res["alpha"] == 0.01
    assert set(res["scores"]) == {"sac", "dna"} and res["scores"]["sac"]["references"] == 4
    # the world's models are untrained, its references are not: their outputs say nothing, the weights decide
    assert res["null_unlike_source"] and math.isnan(res["P"]) and res["raw"]["weights"] > 0.9
    assert "derived from the source (weights" in " ".join(capsys.readouterr().out.split())
    assert main(["score", "fused", str(world / "src"), str(world / "mnv2"), "--json", str(out)]) == 0
    res = json.loads(out.read_text())  # no shared weights, outputs unreadable: the answer is not a false "derived"
    assert not res["derived"] and res["verdict"].startswith("cannot tell")
    assert main(["score", "sac", str(world / "src"), str(world / "mnv2"), "--param", "n_points=16", "--json",
                 str(out)]) == 0  # the null of sac at these parameters is cached by the verdict above
    assert json.loads(out.read_text())["null"]["references"] == 4 and "null" in capsys.readouterr().out
    assert main(["score", "dna", str(world / "src"), str(world / "mnv2"), "--param", "n_points=8", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["null"] is None  # not cached: says how to get it
    assert main(["score", "fused", str(world / "src"), str(world / "copy"), "--references", "0"]) == 2
    assert main(["score", "fused", str(world / "src"), str(world / "copy"), "--alpha", "2", "--references", "2"]) == 2


@pytest.mark.parametrize("recipe", ["transfer", "distill", "extract"])
def test_recipes_run_on_imported_architectures(world, recipe):
    """The head / features contract holds for imported networks, so references, transfers and students
    can be made of them (closeness's generation, Zest's references, indirect measurement)."""
    from model_pool.data import load_dataset
    from model_pool.recipes import RecipeContext, run_recipe

    pair = load_pair(str(world / "mnv2"), str(world / "mnv2"))
    data = load_dataset(f"npz:{world / 'data.npz'}", shape=list(SHAPE)).subset(16, 4)
    if recipe == "transfer":  # another task: two classes
        data.y_train, data.y_test, data.num_classes = data.y_train % 2, data.y_test % 2, 2
    arch = {"arch": "torchvision:resnet18", "arch_kwargs": {"classifier": "fc"}} if recipe == "extract" else {}
    ctx = RecipeContext(data, parents=[pair.source], parent_cards=[pair.source_card], params={"epochs": 1}, **arch)
    model = run_recipe(recipe, ctx).eval()
    out = model(data.x_test[:2])
    assert out.shape == (2, data.num_classes) and torch.isfinite(out).all()
    assert torch.allclose(model.head(model.forward_features(data.x_test[:2])), out, atol=1e-5)


def test_bench_reuse_reports_every_suspect_per_method(world, tmp_path):
    out = tmp_path / "reuse.json"
    assert main(["bench", "reuse", "--source", str(world / "src"), "--suspects", f"{world / 'copy'},{world / 'mnv2'}",
                 "--methods", "ipguard,sac", "--param", "ipguard.n_points=4", "--param", "ipguard.steps=2",
                 "--param", "sac.n_points=4", "--floor-seconds", "0.02", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert set(rows) == {"ipguard", "sac"} and rows["ipguard"]["params"]["steps"] == 2
    assert all(len(r["seconds"]) == 2 and r["seconds"][0] > 0 for r in rows.values())
    # the later suspect's own forwards only (4 fingerprints, 4 CutMix samples), timed against the floor
    assert rows["ipguard"]["forwards"] == [4] and rows["sac"]["forwards"] == [4]
    assert result["floor"][str(world / "mnv2")]["forwards_per_second"] > 0 and rows["sac"]["ratio_to_floor"] > 0
    assert main(["bench", "reuse", "--source", str(world / "src"), "--suspects", str(world / "copy")]) == 2
