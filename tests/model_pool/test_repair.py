"""A damaged ``pool.sqlite``: every command says so in one line, ``pool verify`` reports it, ``pool repair``
restores the same models, edges and sha256 from the model directories; ``pool backup`` copies a live registry."""
import json
import shutil

import pytest
import torch

from mgmp.cli import main
from model_pool.chaos import flip_pages, registry_state, truncation_offsets
from model_pool.pool import Pool
from model_pool.registry import DB_NAME, PoolRegistry


@pytest.fixture(scope="module")
def pool_with_caches(tiny_pool, tmp_path_factory):
    """A copy of the tiny pool with a cached tensor, a cached score and a calibration in its registry."""
    pool = tmp_path_factory.mktemp("repair") / "pool"
    shutil.copytree(tiny_pool, pool)
    with Pool.open(pool) as p:
        p.tensor("probe-a", "probes", lambda: torch.arange(12.0).reshape(3, 4))
        p.registry.put_score("src", "ft", "sac", "h", 0.5, 0.1)
        p.calibration.put("thresholds", {"sac": 0.3})
    return pool


def one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(n in err for n in needles), err
    return err


def test_truncated_registry_is_rebuilt_at_ten_offsets(pool_with_caches, tmp_path, capsys):
    pool = tmp_path / "pool"
    shutil.copytree(pool_with_caches, pool)
    db = pool / DB_NAME
    before, intact = registry_state(pool), db.read_bytes()
    offsets = truncation_offsets(len(intact))
    assert len(offsets) == 10
    for offset in offsets:
        db.write_bytes(intact[:offset])
        if main(["pool", "ls", str(pool)]) != 0:  # SQLite may still read every page ls needs
            one_error_line(capsys, str(db), "mgmp pool repair")
        report = tmp_path / "verify.json"
        assert main(["pool", "verify", str(pool), "--json", str(report)]) == 1
        found = json.loads(report.read_text())
        assert found["registry"] and found["models"] == 7 and not found["altered"], (offset, found)
        assert main(["pool", "repair", str(pool)]) == 0, offset
        assert registry_state(pool) == before, offset
        assert main(["pool", "verify", str(pool)]) == 0, offset
        with Pool.open(pool) as p:
            assert p.calibration.get("thresholds") in ({"sac": 0.3}, None)  # kept where the damaged page allowed
            assert p.registry.get_score("src", "ft", "sac", "h") is None  # derived data is dropped, not trusted
        kept = [f for f in pool.glob(f"{DB_NAME}.corrupt-*") if not f.name.endswith(("-wal", "-shm"))]
        assert len(kept) == 1 and kept[0].stat().st_size == offset
        for f in pool.glob(f"{DB_NAME}.corrupt-*"):
            f.unlink()
        capsys.readouterr()


def test_flipped_pages_are_found_and_repaired(pool_with_caches, tmp_path, capsys):
    pool = tmp_path / "pool"
    shutil.copytree(pool_with_caches, pool)
    db = pool / DB_NAME
    before = registry_state(pool)
    flip_pages(db, [1, 3])  # page 0 holds the header
    assert main(["pool", "verify", str(pool)]) == 1
    assert main(["pool", "repair", str(pool)]) == 0
    assert registry_state(pool) == before
    assert main(["pool", "verify", str(pool)]) == 0


def test_a_healthy_registry_is_not_rebuilt_without_force(pool_with_caches, tmp_path, capsys):
    pool = tmp_path / "pool"
    shutil.copytree(pool_with_caches, pool)
    assert main(["pool", "repair", str(pool)]) == 2
    one_error_line(capsys, "healthy", "--force")
    out = tmp_path / "r.json"
    assert main(["pool", "repair", str(pool), "--force", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["models"] == 7 and rep["tensors"] == len(registry_state(pool)["probes"]) and "thresholds" in rep["meta_kept"]
    with PoolRegistry(pool) as reg:
        assert reg.conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 0
    assert any(d.startswith("scores: ") and "rows dropped" in d and not d.startswith("scores: 0 ") for d in rep["dropped"])


def test_repair_skips_altered_models_and_their_descendants(pool_with_caches, tmp_path):
    pool = tmp_path / "pool"
    shutil.copytree(pool_with_caches, pool)
    with PoolRegistry(pool) as reg:
        parent = next(r.id for r in reg.models() if reg.children(r.id))
        lost = {parent, *reg.descendants(parent)}
    weights = pool / "models" / parent / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    (pool / DB_NAME).write_bytes(b"garbage")
    out = tmp_path / "r.json"
    assert main(["pool", "repair", str(pool), "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["models"] == 7 - len(lost) and {s.split(":")[0] for s in rep["skipped"]} == lost


def test_backup_is_a_consistent_copy(pool_with_caches, tmp_path, capsys):
    out = tmp_path / "b" / "registry.sqlite"
    with PoolRegistry(pool_with_caches) as reader:  # a live reader does not block the online backup
        reader.conn.execute("BEGIN")
        reader.ids()
        assert main(["pool", "backup", str(pool_with_caches), str(out)]) == 0
        reader.conn.execute("COMMIT")
    capsys.readouterr()
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(out, copy / DB_NAME)
    assert registry_state(copy) == registry_state(pool_with_caches)
    assert main(["pool", "backup", str(pool_with_caches), str(out)]) == 2
    one_error_line(capsys, "already exists")
    damaged = tmp_path / "damaged"
    shutil.copytree(pool_with_caches, damaged)
    (damaged / DB_NAME).write_bytes((damaged / DB_NAME).read_bytes()[:3000])
    assert main(["pool", "backup", str(damaged), str(tmp_path / "b2.sqlite")]) == 2
    one_error_line(capsys, "damaged")
    assert not (tmp_path / "b2.sqlite").exists() and not list(tmp_path.glob(".b2.sqlite*"))


def test_every_registry_command_names_the_damaged_file(pool_with_caches, tmp_path, capsys):
    pool = tmp_path / "pool"
    shutil.copytree(pool_with_caches, pool)
    (pool / DB_NAME).write_bytes((pool / DB_NAME).read_bytes()[:5000])
    for argv in (["pool", "ls", str(pool), "--tree"], ["score", "weights", f"{pool}::src", f"{pool}::ft"],
                 ["index", "build", str(pool)], ["query", str(pool), f"{pool}::ft"], ["calibrate", str(pool)],
                 ["pool", "add", str(pool), str(pool / "models" / "src"), "--id", "again"]):
        assert main(argv) == 2, argv
        one_error_line(capsys, str(pool / DB_NAME), "mgmp pool repair")
