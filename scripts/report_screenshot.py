"""Render an HTML report in headless Chromium and save a full-page PNG screenshot (to look at it, as a user would).

    python scripts/report_screenshot.py runs/demo/report.html docs/img/demo_report.png [--height 4200]

Needs Debian's chromium (``apt-get install chromium``) or any Chromium/Chrome on PATH.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--disable-quic",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "chrome")) if p), None)


def screenshot(html: Path, png: Path, width: int = 1200, height: int = 4200, timeout: float = 120) -> Path:
    exe = chromium()
    if exe is None:
        raise SystemExit("no Chromium on PATH: apt-get install chromium")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={png.resolve()}", html.resolve().as_uri()],
                       check=True, timeout=timeout, capture_output=True)
    return png


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", type=Path)
    ap.add_argument("png", type=Path)
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=4200)
    a = ap.parse_args(argv)
    print(screenshot(a.html, a.png, a.width, a.height))
    return 0


if __name__ == "__main__":
    sys.exit(main())
