"""Render a run's report.html in headless Chromium and save a PNG: the check that the page really draws.

    python scripts/screenshot_report.py runs/demo [out.png]

Needs Debian's chromium (`apt-get install chromium`); the flags keep it off the network.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 2400) -> Path:
    browser = chromium()
    if browser is None:
        raise RuntimeError("no chromium on PATH: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png}",
                html.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return png


if __name__ == "__main__":
    run = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else run / "report" / "report.png"
    print(screenshot(run / "report" / "report.html", out))
