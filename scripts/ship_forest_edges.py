"""Regenerate the forest's shipped edge model (``mgmp/forest/default_edges.json``) from a calibrated lineage pool
with two or more calibration families (the digits lineage pool):

    mgmp calibrate runs/pools/digits_lineage --methods dna,weights
    python scripts/ship_forest_edges.py runs/pools/digits_lineage
"""
import argparse

from mgmp.forest.recover import SHIPPED, ship
from model_pool.pool import Pool

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("pool")
parser.add_argument("--out", default=str(SHIPPED))
parser.add_argument("--top-k", type=int, default=5)
args = parser.parse_args()
with Pool.open(args.pool) as pool:
    doc = ship(args.out, pool, args.top_k)
print(f"{args.out}: fused {doc['fused']['columns']}, edge model on {doc['edges']['fitted_on']}")
