"""Resource bombs (README "Guarantees"): untrusted sizes are refused in one line, exit 2, before anything is
allocated. Each bomb is built cheaply on disk (headers that claim, data that does not exist); the functions that
would allocate (safetensors' ``load_file``, ``np.load``, model construction) are replaced by ones that fail the
test if they are ever reached."""
from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest
import safetensors.torch
import torch
from safetensors.torch import save_file

from mgmp.cli import main
from model_pool import io as mio
from model_pool.archs import create_model
from model_pool.card import ModelCard
from model_pool.data.references import load_data_ref
from model_pool.errors import BadInput, IntegrityError, TooLarge
from model_pool.guards import check_depth, load_json, load_yaml
from model_pool.hf import read_config

IMAGE = {"kind": "image", "shape": [1, 8, 8]}
DEEP = "[" * 100_000


def _never(*args, **kwargs):
    raise AssertionError("reached an allocating call: the bomb was not refused first")


@pytest.fixture()
def no_alloc(monkeypatch):
    """Safetensors' loader, numpy's loader and model construction fail the test if reached."""
    monkeypatch.setattr(safetensors.torch, "load_file", _never)  # guards imports it when it reads a file
    monkeypatch.setattr(mio, "create_model", _never)
    monkeypatch.setattr(np, "load", _never)


def _refused(exc: type[Exception], fn, *args, match: str = "", **kwargs) -> str:
    """``fn(*args)`` raises ``exc`` with a one-line message containing ``match``; returns the message."""
    with pytest.raises(exc) as e:
        fn(*args, **kwargs)
    msg = str(e.value)
    assert msg and "\n" not in msg and match in msg, msg
    return msg


def _cli_refuses(capsys, argv: list[str], match: str) -> None:
    """The real CLI, in-process: exit 2, one line on stderr naming the problem, no traceback."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and match in err, err


def _model_dir(root, **card) -> str:
    root.mkdir()
    (root / "model.json").write_text(json.dumps({"arch": "mlp", "num_classes": 3, "input": IMAGE, **card}))
    return str(root)


# 1. model cards: num_classes, input sizes, arch_kwargs


def test_num_classes_bomb_is_refused_and_the_limit_can_be_raised(monkeypatch):
    card = {"arch": "mlp", "num_classes": 10**9, "input": IMAGE}
    msg = _refused(TooLarge, ModelCard.from_dict, card, match="num_classes")
    assert "1,000,000,000" in msg and "MGMP_MAX_NUM_CLASSES" in msg
    monkeypatch.setenv("MGMP_MAX_NUM_CLASSES", str(2 * 10**9))
    assert ModelCard.from_dict(card).num_classes == 10**9


def test_input_size_and_arch_kwargs_bombs(tmp_path):
    _refused(TooLarge, ModelCard.from_dict, {"arch": "mlp", "num_classes": 3, "input": {"kind": "image",
             "shape": [3, 10**5, 10**5]}}, match="input_elements")
    _refused(TooLarge, ModelCard.from_dict, {"arch": "bert", "num_classes": 3, "input": {"kind": "text",
             "max_length": 10**9}}, match="input_elements")
    # 10^6-wide convolutions: 3.6e13 bytes of weights, measured on the meta device
    card = ModelCard("small_cnn", 3, IMAGE, arch_kwargs={"in_channels": 1, "width": 10**6})
    save_file({"w": torch.zeros(1)}, str(tmp_path / "w.safetensors"))
    _refused(TooLarge, mio.load_state_dict_file, tmp_path / "w.safetensors", card, match="arch 'small_cnn'")


def test_num_classes_bomb_from_the_cli(tmp_path, capsys, no_alloc):
    bomb = _model_dir(tmp_path / "bomb", num_classes=10**9)
    _cli_refuses(capsys, ["score", "weights", bomb, bomb], "MGMP_MAX_NUM_CLASSES")


# 2. safetensors headers


def _safetensors(path, header: dict | bytes, data: int = 0, length: int | None = None):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes((len(raw) if length is None else length).to_bytes(8, "little") + raw + b"\0" * data)
    return path


def test_safetensors_headers_that_lie_or_claim_too_much(tmp_path, no_alloc, monkeypatch):
    huge = {"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}}
    f = _safetensors(tmp_path / "huge.safetensors", huge, data=16)
    _refused(IntegrityError, mio.load_state_dict_safetensors, f, match=f"{f}: tensor 'w'")
    f = _safetensors(tmp_path / "length.safetensors", b"{}", length=10**12)
    _refused(IntegrityError, mio.load_state_dict_safetensors, f, match="header length 1,000,000,000,000")
    f = _safetensors(tmp_path / "shape.safetensors", {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, 8)
    _refused(IntegrityError, mio.load_state_dict_safetensors, f, match="do not fit its size")
    f = _safetensors(tmp_path / "deep.safetensors", DEEP.encode())
    _refused(TooLarge, mio.load_state_dict_safetensors, f, match="json_depth")
    ok = _safetensors(tmp_path / "ok.safetensors", {"w": {"dtype": "F32", "shape": [256], "data_offsets": [0, 1024]}},
                      1024)
    monkeypatch.setenv("MGMP_MAX_TENSOR_BYTES", "1000")
    _refused(TooLarge, mio.load_state_dict_safetensors, ok, match="declared tensor bytes: 1,024")
    monkeypatch.setenv("MGMP_MAX_HEADER_BYTES", "10")
    _refused(TooLarge, mio.load_state_dict_safetensors, ok, match="header bytes")


def test_a_real_40_gb_safetensors_file_is_refused_at_the_default_limit(tmp_path, no_alloc):
    """A sparse file: every offset fits, 4e10 declared bytes exceed the default tensor_bytes (8 GiB)."""
    f = _safetensors(tmp_path / "big.safetensors", {"w": {"dtype": "F32", "shape": [10**5, 10**5],
                                                          "data_offsets": [0, 4 * 10**10]}})
    try:
        os.truncate(f, f.stat().st_size + 4 * 10**10)
        if f.stat().st_blocks * 512 > 1 << 20:
            pytest.skip("no sparse files on this file system")
        _refused(TooLarge, mio.load_state_dict_safetensors, f, match="40,000,000,000 exceeds")
    except OSError:
        pytest.skip("no sparse files on this file system")
    finally:
        f.unlink()


# 3. nesting of JSON and YAML


def test_deep_json_and_yaml_are_refused():
    for load in (load_json, load_yaml):
        _refused(TooLarge, load, DEEP, "doc", match="doc: nested too deeply")
        _refused(TooLarge, load, "[" * 100 + "]" * 100, "doc", match="doc: nesting depth: 100 exceeds")
    assert load_json('{"a": [1, {"b": 2}]}', "doc") == {"a": [1, {"b": 2}]}
    _refused(BadInput, load_json, "{", "doc", match="doc: not valid JSON")
    laughs = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    _refused(TooLarge, load_yaml, laughs, "plan", match="values (aliases expanded)")  # 10^9 values, measured once
    _refused(BadInput, load_yaml, "&a [*a]", "plan", match="contains itself")
    check_depth({"x": [[1]]}, "ok")


def test_deep_documents_at_every_entry_point(tmp_path, capsys, no_alloc):
    deep = _model_dir(tmp_path / "deep")
    (tmp_path / "deep" / "model.json").write_text(DEEP)
    _cli_refuses(capsys, ["score", "weights", deep, deep], "model.json: nested too deeply")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(DEEP)
    _refused(TooLarge, read_config, hf, match="config.json: nested too deeply")
    (hf / "config.json").write_text(json.dumps({"model_type": "bert", "num_labels": 10**9}))
    _refused(TooLarge, read_config, hf, match="config.json: num_labels")
    (tmp_path / "rows.jsonl").write_text('{"text": "a", "label": 0}\n' + DEEP + "\n")
    _refused(TooLarge, load_data_ref, f"jsonl:{tmp_path / 'rows.jsonl'}", match="rows.jsonl: line 2: nested")
    _cli_refuses(capsys, ["pool", "add", str(tmp_path / "pool"), deep, "--arch-kwargs", DEEP],
                 "--arch-kwargs: nested too deeply")


# 4. data references


def _npz_bomb(path, rows: int) -> str:
    """An .npz whose x.npy header claims ``rows`` 1x8x8 images and holds none of them."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (rows, 1, 8, 8)})
    y = io.BytesIO()
    np.save(y, np.zeros(2, dtype=np.int64))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", header.getvalue())  # magic and header, no data
        z.writestr("y.npy", y.getvalue())
    return f"npz:{path}"


def test_npz_headers_are_read_before_the_data(tmp_path, no_alloc):
    ref = _npz_bomb(tmp_path / "bomb.npz", 10**8)
    _refused(TooLarge, load_data_ref, ref, shape=[1, 8, 8], match="x rows: 100,000,000 exceeds")
    _refused(BadInput, load_data_ref, _npz_bomb(tmp_path / "lie.npz", 1000), shape=[1, 8, 8],
             match="x declares [1000, 1, 8, 8] float32 (256,000 bytes) but holds 0")
    with zipfile.ZipFile(tmp_path / "bomb.npz", "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("junk", b"\0" * 100_000)  # np.load would read a non-.npy member whole: a zip bomb's vehicle
    _refused(BadInput, load_data_ref, f"npz:{tmp_path / 'bomb.npz'}", shape=[1, 8, 8], match="junk: not an .npy array")


def test_npz_bomb_from_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(np, "load", _never)
    save_file(create_model("small_cnn", 2, in_channels=3).state_dict(), str(tmp_path / "w.safetensors"))
    ref = _npz_bomb(tmp_path / "bomb.npz", 10**8)
    _cli_refuses(capsys, ["model", "import", str(tmp_path / "w.safetensors"), "--from", "mgmp:small_cnn",
                          "--num-classes", "2", "--input", "image:1,8,8", "--data", ref, "--out", str(tmp_path / "m")],
                 "MGMP_MAX_DATA_ROWS")
    assert not (tmp_path / "m").exists()


def test_rows_of_tables_and_image_folders_are_counted_up_to_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("MGMP_MAX_DATA_ROWS", "3")
    (tmp_path / "t.csv").write_text("text,label\n" + "a,0\n" * 10)
    (tmp_path / "t.jsonl").write_text('{"text": "a", "label": 0}\n' * 10)
    for scheme in ("csv", "jsonl"):
        _refused(TooLarge, load_data_ref, f"{scheme}:{tmp_path / f't.{scheme}'}", match="rows read before stopping: 4")
    for c in range(2):
        (tmp_path / "img" / str(c)).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "img" / str(c) / f"{i}.png").write_bytes(b"never decoded")  # refused before decoding
    _refused(TooLarge, load_data_ref, f"imagefolder:{tmp_path / 'img'}", shape=[1, 8, 8], match="image files listed")
    monkeypatch.setenv("MGMP_MAX_DATA_BYTES", "10")
    _refused(TooLarge, load_data_ref, f"csv:{tmp_path / 't.csv'}", match="t.csv: bytes")
