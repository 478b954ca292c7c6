"""The pool's FAISS index of model DNA (SPEC §7): built from the registry's ``dna`` table, extended
incrementally, written atomically (temp file + rename) so concurrent readers never see a torn file.

Kinds are FAISS factory strings on L2-normalised vectors with inner-product metric:
``flat`` = ``IDMap2,Flat`` (exact), ``hnsw`` = ``IDMap2,HNSW32,Flat`` (efSearch 64),
``ivfpq`` = ``IDMap2,IVF{nlist},PQ{m}x{bits},RFlat`` (nprobe 16, PQ candidates re-scored exactly;
trained on the vectors present at build time, so meant for large registries). The int64 FAISS
id is the registry's ``dna.id``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import faiss
import numpy as np
from rich.progress import track

from mgmp.index.factory import KIND, factory
from mgmp.index.vectors import DNA_KINDS, INDEX_DNA, model_dna, probe_set
from model_pool.atomic import write_file
from model_pool.card import ModelCard
from model_pool.endpoint import parse_endpoint_ref
from model_pool.errors import BadInput
from model_pool.params import Choice, Range, check_params
from model_pool.pool import Pool, load_ref

# the options of building and searching an index, checked where they enter (create_index, build_index)
INDEX_SPECS = {"kind": KIND, "dna": Choice(*DNA_KINDS), "ef_search": Range(1, 100_000), "nprobe": Range(1, 100_000),
               "max_train": Range(1, 100_000_000), "threads": Range(1, 1024)}


def create_index(kind: str, vectors: np.ndarray, ids: np.ndarray | None, dim: int, ef_search: int = 64,
                 nprobe: int = 16, max_train: int = 200_000) -> faiss.Index:
    """A trained, filled index (``ids=None``: sequential ids, no id map)."""
    check_params("index", create_index, {"kind": kind, "ef_search": ef_search, "nprobe": nprobe, "max_train": max_train},
                 INDEX_SPECS)
    recipe = factory(kind, len(vectors), dim)
    if ids is None:
        recipe = recipe.removeprefix("IDMap2,")
    index = faiss.index_factory(dim, recipe, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        sample = np.random.default_rng(0).choice(len(vectors), min(len(vectors), max_train), replace=False)
        index.train(vectors[np.sort(sample)])
    set_search_params(index, kind, ef_search, nprobe)
    if ids is None:
        index.add(vectors)
    else:
        index.add_with_ids(vectors, ids)
    return index


def set_search_params(index: faiss.Index, kind: str, ef_search: int = 64, nprobe: int = 16, k_factor: int = 8) -> None:
    """HNSW's efSearch; IVF-PQ's nprobe and the exact re-scoring of ``k_factor``·k PQ candidates."""
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else faiss.downcast_index(index)
    if kind == "hnsw":
        inner.hnsw.efSearch = ef_search
    if kind == "ivfpq":
        faiss.extract_index_ivf(index).nprobe = nprobe
        inner.k_factor = k_factor


def maybe_gpu(index: faiss.Index) -> faiss.Index:
    """The index on a GPU when faiss-gpu and a GPU are present; else unchanged (CPU)."""
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    return index


def write_atomic(index: faiss.Index, meta: dict, path: Path) -> None:
    write_file(path, lambda f: faiss.write_index(index, f))
    write_file(path.with_suffix(".json"), lambda f: Path(f).write_text(json.dumps(meta, indent=2)))


def index_path(pool: Pool, kind: str, dna: str = "gram", tag: str = "") -> Path:
    """``POOL/index/dna-<dna>-<kind>[-<tag>].faiss`` (a tag keeps e.g. a benchmark's index apart)."""
    return pool.root / "index" / f"dna-{dna}-{kind}{'-' + tag if tag else ''}.faiss"


def compute_dna(pool: Pool, dna: str = "gram", module=None, exclude: set[str] | None = None) -> int:
    """DNA vectors of every registered model not yet in the registry's ``dna`` table (or changed since)."""
    known = {mid: sha for _, mid, sha, _ in pool.registry.dna(dna)}
    todo = [r for r in pool.registry.models() if known.get(r.id) != r.sha256 and r.id not in (exclude or set())]
    rows = []
    for r in track(todo, description=f"{dna} DNA of {len(todo)} models", transient=True):
        model, card = pool.load(r.id)
        vec = model_dna(model, lambda: probe_set(pool, card, own_data=True), dna, module)
        rows.append((r.id, dna, r.sha256, vec.astype(np.float32).tobytes()))
        if len(rows) >= 64:
            pool.registry.put_dna(rows)
            rows = []
    if rows:
        pool.registry.put_dna(rows)
    return len(todo)


def build_index(pool: Pool, kind: str = "flat", dna: str = "gram", module=None, threads: int | None = None,
                exclude: set[str] | None = None, rebuild: bool = False, tag: str = "") -> dict:
    """Compute missing DNA, then extend the persisted index with new ids (or rebuild it)."""
    check_params("index", build_index, {"kind": kind, "dna": dna, "threads": threads, "tag": tag}, INDEX_SPECS)
    if threads:
        faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    computed = compute_dna(pool, dna, module, exclude)
    rows = [r for r in pool.registry.dna(dna) if r[1] not in (exclude or set())]
    if not rows:
        raise BadInput(f"{pool.root}: no models to index")
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    vectors = np.stack([np.frombuffer(r[3], dtype=np.float32) for r in rows])
    path = index_path(pool, kind, dna, tag)
    old = faiss.read_index(str(path)) if path.is_file() and not rebuild else None
    added = len(ids)
    if old is not None:
        have = faiss.vector_to_array(old.id_map)
        new = ~np.isin(ids, have)
        if np.isin(have, ids).all():  # nothing removed or replaced: extend in place
            old.add_with_ids(vectors[new], ids[new])
            index, added = old, int(new.sum())
        else:
            old = None
    if old is None:
        index = create_index(kind, vectors, ids, vectors.shape[1])
        recipe = factory(kind, len(ids), vectors.shape[1])
    else:
        recipe = json.loads(path.with_suffix(".json").read_text())["factory"]
    meta = {"kind": kind, "dna": dna, "factory": recipe, "dim": int(vectors.shape[1]), "ntotal": int(index.ntotal),
            "built": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_atomic(index, meta, path)
    return {"path": str(path), "kind": kind, "dna": dna, "ntotal": int(index.ntotal), "added": added,
            "dna_computed": computed, "seconds": time.perf_counter() - t0, "factory": recipe}


def build_indexes(pool: Pool, kind: str = "flat", dnas: tuple[str, ...] = INDEX_DNA, **kw) -> list[dict]:
    """``build_index`` for each DNA kind (by default the two a query searches)."""
    return [build_index(pool, kind, dna, **kw) for dna in dnas]


def load_index(pool: Pool, kind: str = "flat", dna: str = "gram", tag: str = "") -> faiss.Index:
    path = index_path(pool, kind, dna, tag)
    if not path.is_file():
        raise BadInput(f"{pool.root}: no {kind} index of {dna} DNA; run `mgmp index build {pool.root} --kind {kind}`")
    index = faiss.read_index(str(path))
    set_search_params(index, kind)
    return index


def search(index: faiss.Index, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims, ids = maybe_gpu(index).search(np.ascontiguousarray(vectors, dtype=np.float32), k)
    return sims, ids


def suspect_dna(pool: Pool, ref: str, dnas: tuple[str, ...] = INDEX_DNA,
                module=None) -> tuple[dict[str, np.ndarray], ModelCard]:
    """DNA vectors of each kind of a (possibly unregistered) suspect, on the pool's probe set for its input space."""
    if parse_endpoint_ref(ref) is not None:
        raise BadInput(f"{ref}: an ancestor query needs the suspect's DNA (its features and weights); an endpoint "
                       "is a black box: score it against candidate ancestors with `mgmp score METHOD CANDIDATE ENDPOINT`")
    model, card = load_ref(ref, pool)
    return {d: model_dna(model, lambda: probe_set(pool, card, own_data=False), d, module) for d in dnas}, card
