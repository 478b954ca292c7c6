"""The demo's self-contained HTML report: tables and figures of one run, nothing that run did not compute."""
from __future__ import annotations

import base64
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from mgmp._jsonio import write_text

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _data_uri(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "platform": platform.platform(terse=True), "device": "cuda" if torch.cuda.is_available() else "cpu"}


def render(run: dict[str, Any], figures: dict[str, str | Path]) -> str:
    """HTML for a demo result (``run``: the demo's JSON result) with its figures inlined as data URIs."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    stages = {s["stage"]: s for s in run["stages"]}
    return env.get_template("report.html.j2").render(
        run=run, stages=stages, figures={k: _data_uri(v) for k, v in figures.items()}, machine=machine(),
        created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def write_report(run: dict[str, Any], figures: dict[str, str | Path], path: str | Path) -> Path:
    """Render and write the report atomically."""
    return write_text(path, render(run, figures))
