"""Ancestry (SPEC §7): model-level DNA vectors, their FAISS indexes in the pool, and the ancestor query
with its own calibration (support threshold, ancestor tolerance)."""
