"""Headless Chromium: read the report's drawn-mark counts and take a screenshot."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from carbon_core.errors import CarbonlakeError
from carbon_core.report.page import MARKS_ELEMENT_ID

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIRTUAL_TIME_BUDGET_MS = 30_000
TIMEOUT_S = 180
SCREENSHOT_WIDTH = 1400
MAX_HEIGHT = 16_000
MEASURE_HEIGHT = 1000


class BrowserError(CarbonlakeError):
    """Chromium is missing or failed to render the report."""


def find_chromium() -> str | None:
    """Path of a Chromium executable, or None."""
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(html_path: Path, *extra: str) -> str:
    chromium = find_chromium()
    if chromium is None:
        raise BrowserError("chromium not found (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="carbonlake-chromium-") as profile:
        command = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            *extra,
            Path(html_path).resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        raise BrowserError(f"chromium failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


class _MarksParser(HTMLParser):
    """Picks the text of the marks element out of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self._inside = False
        self.status: str | None = None
        self.page_height: int | None = None
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id") == MARKS_ELEMENT_ID:
            self._inside = True
            self.status = values.get("data-status")
            height = values.get("data-page-height")
            self.page_height = int(height) if height else None

    def handle_endtag(self, tag: str) -> None:
        self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.text += data


def _rendered(html_path: Path) -> _MarksParser:
    dom = _run(
        html_path,
        f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
        f"--window-size={SCREENSHOT_WIDTH},{MEASURE_HEIGHT}",
        "--dump-dom",
    )
    parser = _MarksParser()
    parser.feed(dom)
    if parser.status != "done":
        raise BrowserError(f"the report's charts did not finish drawing (status {parser.status})")
    return parser


def render_marks(html_path: str | Path) -> dict[str, int]:
    """Per chart id, the number of marks Plotly drew (from the page's own count)."""
    parser = _rendered(Path(html_path))
    return {str(k): int(v) for k, v in json.loads(parser.text).items()}


def screenshot(html_path: str | Path, png: str | Path, *, height: int | None = None) -> Path:
    """A full-width PNG of the whole rendered report (or of its first `height` pixels)."""
    target = Path(png).resolve()
    if height is None:
        # --screenshot captures the window only: size it to the page, measured first.
        height = min(_rendered(Path(html_path)).page_height or MAX_HEIGHT, MAX_HEIGHT)
    _run(
        Path(html_path),
        f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
        "--hide-scrollbars",
        f"--window-size={SCREENSHOT_WIDTH},{height}",
        f"--screenshot={target}",
    )
    if not target.is_file():
        raise BrowserError(f"chromium wrote no screenshot to {target}")
    return target
