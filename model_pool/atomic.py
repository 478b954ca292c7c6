"""Atomic writes (temp file or directory beside the target, fsync, rename) and the one place where the
environment's write faults (disk full, read-only directory, file size limit) become ``StorageError``.

Readers see the old file or the complete new one; a failed write leaves no temp file behind.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from safetensors import SafetensorError

from model_pool.errors import StorageError, first_line


@contextmanager
def storage_faults(path: str | Path) -> Iterator[None]:
    """Re-raise a failed write under ``path`` as one-line ``StorageError`` (OSError, and the I/O errors that
    safetensors and FAISS report in their own exception types)."""
    try:
        yield
    except OSError as e:
        raise StorageError(f"{e.filename or path}: not written ({e.strerror or first_line(e)})") from None
    except (SafetensorError, RuntimeError) as e:
        msg = str(e)
        if "I/O error" not in msg and "write error" not in msg:
            raise
        raise StorageError(f"{path}: not written ({first_line(msg.rsplit(': ', 1)[-1])})") from None


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def write_file(path: str | Path, write: Callable[[str], None]) -> Path:
    """``write(tmp)`` into a temp file beside ``path``, then fsync and rename it to ``path``."""
    path = Path(path)
    with storage_faults(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        try:
            write(tmp)
            fsync_file(tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


@contextmanager
def write_dir(path: str | Path) -> Iterator[Path]:
    """A temp directory beside ``path`` to fill in the block; its files are fsynced and it is renamed to
    ``path`` when the block ends, or removed when it fails."""
    path = Path(path)
    with storage_faults(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
        try:
            yield tmp
            for f in tmp.rglob("*"):
                if f.is_file():
                    fsync_file(f)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
