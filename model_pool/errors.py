"""The project's one error hierarchy (shared by ``model_pool`` and ``mgmp``; re-exported as ``mgmp.errors``).

The CLI catches ``MgmpError`` only: one line on stderr and the class's ``exit_code``. Anything else
is a bug and surfaces as one (exit 1, the traceback under ``--debug``).
"""
from __future__ import annotations

import traceback
from pathlib import Path


class MgmpError(Exception):
    """Base of every error the project raises on purpose."""

    exit_code = 2
    label = "error"  # how the CLI's one line starts


class BadInput(MgmpError, ValueError):
    """The user's input is wrong: an unknown name, a malformed file or argument, a missing pool or model."""


class IntegrityError(MgmpError):
    """A file does not match its recorded sha256, leaves its directory, or is not a safe format."""


class TooLarge(BadInput):
    """Input beyond a stated limit (``model_pool.limits``), refused before anything is allocated."""


class RegistryCorrupt(IntegrityError):
    """``pool.sqlite`` cannot be read: a damaged file (``mgmp pool repair`` rebuilds it from the model directories)."""


class StorageError(MgmpError):
    """A write failed in the environment (disk full, read-only directory, file size limit): nothing half-written."""


class NotApplicable(MgmpError):
    """A method cannot compare this pair (e.g. the basin test across architectures): a value, not a failure."""

    label = "not applicable"


def one_line(e: BaseException) -> str:
    """``Type: first line of the message (file:line)`` for reports of jobs that failed in a worker."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(e).__name__}: {first_line(str(e), None)}{where}"


def first_line(e: BaseException | str, limit: int | None = 200) -> str:
    """The first line of an error message (an exception's type name when its message is empty), for one-line errors."""
    lines = str(e).splitlines()
    return (lines[0] if lines and lines[0] else type(e).__name__ if isinstance(e, BaseException) else "")[:limit]
