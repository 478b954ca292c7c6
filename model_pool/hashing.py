"""Content hashes of files (sha256), shared by model directories, caches and the registry."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

# digests of files hashed in this process, keyed by what changes when a file is rewritten or replaced
_SEEN: dict[tuple, str] = {}
# a file changed less than this long ago is hashed again: file times tick coarsely, so a rewrite within the same
# tick would keep its stamp (git's "racy" rule)
SETTLED_NS = 2_000_000_000


def sha256_file(path: str | Path) -> str:
    """The file's sha256, computed once per process for an unchanged file (same inode, size, mtime and ctime,
    last changed over 2 s ago)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if (hit := _SEEN.get(key)) is not None:
        return hit
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > SETTLED_NS:
        _SEEN[key] = digest
    return digest
