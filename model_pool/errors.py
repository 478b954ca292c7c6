"""Errors that the CLI turns into one line on stderr and exit code 2."""
from __future__ import annotations

import traceback
from pathlib import Path


class MgmpError(Exception):
    """Bad input: an unknown name, a malformed file, a failed integrity check."""


class IntegrityError(MgmpError):
    """A model file does not match its recorded sha256, or is not a safe format."""


def one_line(e: BaseException) -> str:
    """``Type: first line of the message (file:line)`` for reports of jobs that failed in a worker."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(e).__name__}: {first_line(str(e), None)}{where}"


def first_line(e: BaseException | str, limit: int | None = 200) -> str:
    """The first line of an error message (an exception's type name when its message is empty), for one-line errors."""
    lines = str(e).splitlines()
    return (lines[0] if lines and lines[0] else type(e).__name__ if isinstance(e, BaseException) else "")[:limit]
