"""Injected write faults (a file size limit, a read-only directory) in pool build, index build, the score cache and
pool repair: one line and exit 2, nothing half-written, and a rerun completes once the fault is gone."""
import os
import resource
import shutil
import subprocess
import sys
from contextlib import contextmanager

import pytest
import yaml

from mgmp.cli import main
from model_pool.registry import DB_NAME
from model_pool.verify import verify_pool

KW = {"in_channels": 1, "image_size": 8}
PLAN = {"name": "faults", "defaults": {"epochs": 1, "batch_size": 64},
        "models": [{"id": "small", "recipe": "scratch", "arch": "small_cnn", "arch_kwargs": {**KW, "width": 16},
                    "dataset": "digits", "data": {"n_train": 100, "n_test": 50}, "seed": 0},
                   {"id": "wide", "recipe": "scratch", "arch": "small_cnn", "arch_kwargs": {**KW, "width": 64},
                    "dataset": "digits", "data": {"n_train": 100, "n_test": 50}, "seed": 1}]}
LIMIT = 200_000  # bytes per file: the small model (30 kB) and the registry fit, the wide one (450 kB) does not


@contextmanager
def file_size_limit(nbytes: int):
    """RLIMIT_FSIZE in this process (Python ignores SIGXFSZ, so a write past it fails with EFBIG)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@contextmanager
def read_only(path):
    """``path`` made read-only: mode 0555, or the immutable attribute where the tests run as root."""
    os.chmod(path, 0o555)
    immutable = False
    try:
        probe = path / ".probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
                pytest.skip("cannot make a directory read-only here (root without chattr)")
            immutable = True
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        os.chmod(path, 0o755)


def assert_one_line(err: str) -> None:
    """One error line (a progress bar may precede it on stderr), no traceback."""
    lines = [ln for ln in err.splitlines() if ln.startswith("mgmp:")]
    assert len(lines) == 1 and "Traceback" not in err and lines[0].startswith("mgmp: error:"), err


def leftovers(root) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]


def test_pool_build_in_a_child_under_a_file_size_limit_stops_then_resumes(tmp_path, capsys):
    plan, out = tmp_path / "plan.yaml", tmp_path / "pool"
    plan.write_text(yaml.safe_dump(PLAN))
    child = (f"import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({LIMIT}, resource.RLIM_INFINITY)); "
             f"from mgmp.cli import main; sys.exit(main(['pool', 'build', {str(plan)!r}, '--out', {str(out)!r}]))")
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert_one_line(run.stderr)
    assert "File too large" in run.stderr and "stopped at wide" in run.stderr and "--resume" in run.stderr
    rep = verify_pool(out)
    assert rep.consistent and rep.models == 1 and not leftovers(out), rep
    assert main(["pool", "build", str(plan), "--out", str(out), "--resume"]) == 0
    assert verify_pool(out).ok and verify_pool(out).models == 2


def test_index_build_and_score_cache_under_a_file_size_limit(tiny_pool, tmp_path, capsys):
    pool = tmp_path / "pool"
    shutil.copytree(tiny_pool, pool)
    for argv in (["index", "build", str(pool)], ["score", "sac", f"{pool}::src", f"{pool}::ft"]):
        capsys.readouterr()
        with file_size_limit(4096):  # no file (registry WAL, index, cached tensor) can grow past one page
            assert main(argv) == 2, argv
        assert_one_line(capsys.readouterr().err)
        rep = verify_pool(pool)
        assert rep.consistent and not leftovers(pool), (argv, rep)
        assert main(argv) == 0, argv  # the fault is gone: the rerun completes
    assert verify_pool(pool).ok


def test_repair_under_a_write_fault_changes_nothing(tiny_pool, tmp_path, capsys):
    pool = tmp_path / "pool"
    shutil.copytree(tiny_pool, pool)
    db = pool / DB_NAME
    db.write_bytes(db.read_bytes()[:5000])
    with file_size_limit(4096):
        assert main(["pool", "repair", str(pool)]) == 2
    assert_one_line(capsys.readouterr().err)
    assert db.stat().st_size == 5000 and not list(pool.glob(f"{DB_NAME}.corrupt-*")) and not leftovers(pool)
    assert main(["pool", "repair", str(pool)]) == 0
    assert verify_pool(pool).ok


def test_a_read_only_directory(tiny_pool, tmp_path, capsys):
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({**PLAN, "models": PLAN["models"][:1]}))
    pool = tmp_path / "pool"
    shutil.copytree(tiny_pool, pool)
    with read_only(frozen):
        assert main(["pool", "build", str(plan), "--out", str(frozen / "pool")]) == 2
        assert_one_line(capsys.readouterr().err)
    with read_only(pool / "models"):
        assert main(["pool", "add", str(pool), str(pool / "models" / "src"), "--id", "copy"]) == 2
        assert_one_line(capsys.readouterr().err)
    assert verify_pool(pool).ok
    assert main(["pool", "build", str(plan), "--out", str(frozen / "pool")]) == 0


@pytest.mark.parametrize("writer", ["text", "safetensors", "faiss"])
def test_every_writer_fault_becomes_one_storage_error(tmp_path, writer):
    import faiss
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from model_pool.atomic import write_file
    from model_pool.errors import StorageError

    index = faiss.IndexFlatL2(64)
    index.add(np.zeros((100, 64), dtype="float32"))
    write = {"text": lambda f: open(f, "w").write("x" * 10_000),
             "safetensors": lambda f: save_file({"x": torch.zeros(10_000)}, f),
             "faiss": lambda f: faiss.write_index(index, f)}[writer]
    with file_size_limit(4096), pytest.raises(StorageError, match="not written .*File too large"):
        write_file(tmp_path / "out", write)
    assert list(tmp_path.iterdir()) == []
