"""The cosines behind `mgmp bench scan`: each real-pool model against every shipped base; the lowest cosine of a
derivative to its true base, the highest |cosine| to any other base.

    python scripts/scan_cosines.py   # needs /work/pools/real_image and real_text (or edit POOLS)
"""
from mgmp.bench.scan import true_bases
from mgmp.catalog.scan import ARCHITECTURE, scan
from mgmp.catalog.store import open_catalogs
from model_pool.registry import PoolRegistry

POOLS = ("/work/pools/real_image", "/work/pools/real_text")
cats = open_catalogs()
derived, other = [], []
for pool in POOLS:
    with PoolRegistry(pool) as reg:
        truth = true_bases(reg, f"configs/pool/{pool.split('/')[-1]}.yaml")
        paths = {m: str(reg.model_dir(m)) for m in truth}
    for m, t in truth.items():
        for c in scan(paths[m], cats).candidates:
            (derived if c.base == t else other).append((m, c.base, c.cosine, c.verdict))
print("derivatives:", len(derived), "min cosine to true base", min(d[2] for d in derived), min(derived, key=lambda d: d[2])[:2])
same_arch = [o for o in other if o[3] == ARCHITECTURE]
print("max |cos| to a non-base, same architecture:", max(abs(o[2]) for o in same_arch), len(same_arch))
print("max |cos| to a non-base, any:", max(abs(o[2]) for o in other), max(other, key=lambda o: abs(o[2]))[:2])
