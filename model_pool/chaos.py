"""Fault injection for reliability tests and ``scripts/reliability.py``: SIGKILL a command mid-work, build hostile
files, damage a registry."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from model_pool.archs import create_model
from model_pool.card import ModelCard
from model_pool.hashing import sha256_file
from model_pool.io import save_model_dir
from model_pool.model_files import CARD
from model_pool.registry import DB_NAME, PoolRegistry


@dataclass
class Kill:
    delay: float  # seconds after start at which SIGKILL was sent
    finished_first: bool  # the command ended on its own before the kill


def kill_at(cmd: Sequence[str], delay: float, env: dict | None = None, cwd: str | None = None) -> Kill:
    """Start ``cmd`` in its own process group and SIGKILL the whole group ``delay`` seconds later."""
    proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        proc.wait(timeout=delay)
        return Kill(delay, True)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return Kill(delay, False)


def kill_repeatedly(cmd: Sequence[str], delays: Sequence[float], env: dict | None = None,
                    cwd: str | None = None) -> list[Kill]:
    """Kill the same (resumable) command once per delay, each run starting where the killed one left off."""
    return [kill_at(cmd, d, env, cwd) for d in delays]


def run_to_end(cmd: Sequence[str], env: dict | None = None, cwd: str | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """The final, uninterrupted run after the kills."""
    t0 = time.perf_counter()
    done = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    done.seconds = time.perf_counter() - t0  # type: ignore[attr-defined]
    return done


class _RunsCode:
    """Pickles to a call of ``os.system``: loading it with a plain unpickler would create ``marker``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


STATE_DICT_ARGS = ["--arch", "mlp", "--arch-kwargs", '{"in_channels": 1, "image_size": 8}', "--num-classes", "10",
                   "--input", '{"kind": "image", "shape": [1, 8, 8]}']


def hostile_corpus(root: str | Path, marker: str | Path) -> dict[str, Path]:
    """Files a provenance tool may be handed, each of which must be refused without side effects: name -> path.

    Pickles whose reduce runs code (raw, legacy and zip ``.pt``), non-tensor and empty state dicts, model
    directories with truncated, oversized-header or lying-header safetensors, weights symlinked out of the
    directory, and model.json files with unexpected types or contents.
    """
    root, marker = Path(root), str(marker)
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    torch.save({"w": torch.zeros(1), "x": _RunsCode(marker)}, root / "reduce_zip.pt")
    torch.save({"w": torch.zeros(1), "x": _RunsCode(marker)}, root / "reduce_legacy.pt", _use_new_zipfile_serialization=False)
    (root / "reduce_raw.pt").write_bytes(pickle.dumps(_RunsCode(marker)))
    torch.save({"w": 1, "b": "text"}, root / "not_tensors.pt")
    (root / "empty.pt").write_bytes(b"")
    out.update({p.stem: p for p in sorted(root.glob("*.pt"))})

    good = root / "_good"
    if not good.exists():
        card = ModelCard(arch="mlp", arch_kwargs={"in_channels": 1, "image_size": 8}, num_classes=10,
                         input={"kind": "image", "shape": [1, 8, 8]})
        save_model_dir(create_model("mlp", 10, in_channels=1, image_size=8), card, good)

    def variant(name: str, weights: bytes | None = None, card_patch: dict | None = None, card_text: str | None = None) -> None:
        d = root / name
        shutil.copytree(good, d)
        card = json.loads((d / CARD).read_text())
        if weights is not None:  # re-recorded sha256: only the content check can refuse it
            (d / "model.safetensors").write_bytes(weights)
            card["sha256"] = card["files"]["model.safetensors"] = sha256_file(d / "model.safetensors")
        card.update(card_patch or {})
        (d / CARD).write_text(card_text if card_text is not None else json.dumps(card))
        out[name] = d

    blob = (good / "model.safetensors").read_bytes()
    variant("safetensors_truncated", blob[: len(blob) // 3])
    variant("safetensors_oversized_header", (2 ** 40).to_bytes(8, "little") + b"{}")
    lie = json.dumps({"w": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 40000000000]}}).encode()
    variant("safetensors_lying_header", len(lie).to_bytes(8, "little") + lie + b"\0" * 16)
    variant("weights_altered", card_patch={"sha256": "0" * 64, "files": {"model.safetensors": "0" * 64}})
    for key, value in {"num_classes_str": ("num_classes", "10"), "num_classes_bool": ("num_classes", True),
                       "arch_list": ("arch", ["mlp"]), "arch_unknown": ("arch", "no_such_arch"),
                       "relation_unknown": ("relation", "stolen"), "input_kind": ("input", {"kind": "audio"}),
                       "arch_kwargs_bogus": ("arch_kwargs", {"bogus": 1}), "parents_wrong_type": ("parents", {"a": 1}),
                       "files_traversal": ("files", {"../../etc/passwd": "0" * 64})}.items():
        variant(f"json_{key}", card_patch={value[0]: value[1]})
    variant("json_not_an_object", card_text="[1, 2, 3]")
    variant("json_invalid", card_text='{"arch": "mlp",')
    outside = root / "_outside.safetensors"
    outside.write_bytes(blob)
    variant("symlink_out_of_dir")
    (out["symlink_out_of_dir"] / "model.safetensors").unlink()
    os.symlink(outside, out["symlink_out_of_dir"] / "model.safetensors")
    return out


def snapshot(pool: str | Path) -> tuple[list, list]:
    """A pool's registry rows (id, sha256) and file listing (SQLite's -wal/-shm aside): equal before and after
    an operation = no side effect."""
    pool = Path(pool)
    with PoolRegistry(pool) as reg:
        rows = sorted((r.id, r.sha256) for r in reg.models())
    return rows, sorted(p.relative_to(pool).as_posix() for p in pool.rglob("*") if not p.name.endswith(("-wal", "-shm")))


REPAIRED_FIELDS = ("id", "arch", "task", "dataset", "relation", "parents", "recipe", "seed", "metrics", "path", "sha256",
                   "split", "tags", "job_hash")


def registry_state(pool: str | Path) -> dict[str, list]:
    """What ``mgmp pool repair`` must restore, read with plain SQLite: model rows (not their creation time), edges
    and cached tensors."""
    conn = sqlite3.connect(str(Path(pool) / DB_NAME))
    try:
        return {"models": conn.execute(f"SELECT {', '.join(REPAIRED_FIELDS)} FROM models ORDER BY id").fetchall(),
                "edges": conn.execute("SELECT child, parent, ord FROM edges ORDER BY child, parent").fetchall(),
                "probes": conn.execute("SELECT name, domain, path, sha256 FROM probes ORDER BY name").fetchall()}
    finally:
        conn.close()


def truncation_offsets(size: int, n: int = 10) -> list[int]:
    """``n`` distinct offsets to cut a file of ``size`` bytes at: the empty file, inside the 100-byte header,
    and spread over the pages after it."""
    return sorted({0, 50, 100, *np.linspace(1024, size - 512, n - 3).astype(int).tolist()})[:n]


def flip_pages(db: str | Path, pages: Sequence[int], seed: int = 0, page_size: int = 4096) -> None:
    """Overwrite whole pages of ``db`` with random bytes (a torn or bit-rotted page)."""
    data = bytearray(Path(db).read_bytes())
    rng = np.random.default_rng(seed)
    for p in pages:
        data[p * page_size:(p + 1) * page_size] = rng.integers(0, 256, page_size, dtype=np.uint8).tobytes()
    Path(db).write_bytes(bytes(data))
