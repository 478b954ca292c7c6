"""CLI command implementations: each parses nothing, calls library functions, prints, and returns a
JSON-able result (or an :class:`Outcome` when the exit status must say that it found faults)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Outcome:
    """A command's JSON-able result and its exit status (1: it ran to the end but found faults)."""

    result: dict[str, Any]
    exit_code: int = 0
