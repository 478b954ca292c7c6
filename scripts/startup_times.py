"""Wall time of everyday commands as a user types them (issue 37): `mgmp --help`, `mgmp pool ls POOL` and
`mgmp score weights A B` on two plain torchvision ResNet-18s imported through `mgmp model import`, each run
``--repeat`` times in a fresh process (median and min reported), beside `python -c "import torch"` for scale.

    python scripts/startup_times.py [--pool POOL] [--repeat 5] [--json J]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MGMP = [sys.executable, "-m", "mgmp.cli"]


def timed(cmd: list[str], repeat: int) -> dict:
    """Median and min wall seconds of ``cmd`` over ``repeat`` fresh processes (one warm-up run first)."""
    subprocess.run(cmd, capture_output=True, check=True)
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        walls.append(time.perf_counter() - t0)
    return {"median": statistics.median(walls), "min": min(walls), "runs": walls}


def two_resnets(root: Path) -> tuple[Path, Path]:
    """Two ResNet-18s (random weights, another seed each, 32x32 RGB inputs) imported as model directories with
    their data given as an .npz file."""
    import numpy as np
    import torch
    import torchvision
    from safetensors.torch import save_file

    data = root / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.random((64, 3, 32, 32), dtype=np.float32), y=rng.integers(0, 10, 64))
    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = torchvision.models.resnet18(num_classes=10)
        weights = root / f"r{seed}.safetensors"
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
        subprocess.run(MGMP + ["model", "import", str(weights), "--from", "torchvision:resnet18", "--num-classes", "10",
                               "--input", "image:3,32,32", "--data", f"npz:{data}", "--out", str(root / f"r{seed}")],
                       check=True, capture_output=True)
        out.append(root / f"r{seed}")
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", help="a built pool for `mgmp pool ls` (default: a one-model pool made here)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        a, b = two_resnets(root)
        pool = args.pool
        if pool is None:
            pool = str(root / "pool")
            subprocess.run(MGMP + ["pool", "add", pool, str(a), "--id", "r0"], check=True, capture_output=True)
        rows = {"python -c 'import torch'": timed([sys.executable, "-c", "import torch"], args.repeat),
                "mgmp --help": timed(MGMP + ["--help"], args.repeat),
                f"mgmp pool ls {Path(pool).name}": timed(MGMP + ["pool", "ls", pool], args.repeat),
                "mgmp score weights (2 ResNet-18)": timed(MGMP + ["score", "weights", str(a), str(b)], args.repeat)}
    for name, r in rows.items():
        print(f"{name:40s} median {r['median']:6.2f} s   min {r['min']:6.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
