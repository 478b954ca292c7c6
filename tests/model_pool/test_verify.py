"""``mgmp pool verify``: a clean pool passes; each kind of damage is reported; nothing is changed."""
import json
import shutil

from mgmp.cli import main
from model_pool.pool import Pool
from model_pool.registry import PoolRegistry
from model_pool.verify import verify_pool


def test_clean_pool_passes(tiny_pool, tmp_path):
    out = tmp_path / "v.json"
    assert main(["pool", "verify", str(tiny_pool), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["ok"] and json.loads(out.read_text())["models"] == 7


def test_damage_is_reported_without_changes(tiny_pool, tmp_path):
    pool = tmp_path / "pool"
    shutil.copytree(tiny_pool, pool)
    models = pool / "models"
    weights = models / "ft" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))  # altered
    shutil.rmtree(models / "ind")  # missing
    shutil.copytree(models / "src", models / "stray")  # orphaned directory
    (models / ".tmp-crashed-abc").mkdir()  # a build killed mid-write
    with PoolRegistry(pool) as reg:
        with reg.transaction() as c:
            c.execute("INSERT INTO edges VALUES ('ghost', 'src', 0)")
        reg.put_score("src", "nobody", "sac", "h", 0.1, 0.0)
    before = sorted(p.name for p in models.iterdir())
    rep = verify_pool(pool)
    assert rep.missing == ["ind"]
    assert any(a.startswith("ft:") and "sha256" in a for a in rep.altered)
    assert rep.orphaned_dirs == ["stray"] and rep.temp_leftovers == [".tmp-crashed-abc"]
    assert any("ghost" in r for r in rep.orphaned_rows) and any("nobody" in r for r in rep.orphaned_rows)
    assert not rep.ok and sorted(p.name for p in models.iterdir()) == before
    assert main(["pool", "verify", str(pool)]) == 1


def test_altered_cache_and_stale_index_are_reported(tiny_pool, tmp_path):
    from mgmp.index.store import build_index
    from mgmp.scores import compute, create_score, load_pair

    pool = tmp_path / "pool"
    shutil.copytree(tiny_pool, pool)
    with Pool.open(pool) as opened:
        build_index(opened, "flat")
    compute(create_score("closeness", k=10, candidates=100), load_pair(f"{pool}::src", f"{pool}::ft"))
    assert verify_pool(pool).ok
    with PoolRegistry(pool) as reg:
        path = next(reg.root / r[0] for r in reg.conn.execute("SELECT path FROM probes WHERE name LIKE 'closeness-%'"))
        with reg.transaction() as c:
            c.execute("DELETE FROM dna WHERE model_id='ft'")
    path.write_bytes(path.read_bytes() + b"x")
    rep = verify_pool(pool)
    assert any("altered" in p for p in rep.cache_problems)
    assert any("ids not in the registry" in p for p in rep.index_problems)
