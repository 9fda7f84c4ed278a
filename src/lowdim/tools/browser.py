"""Open a page in headless Chromium and report what rendered (for tests and checks).

Chromium is started with its background networking off and a fresh profile, and every request
the page makes is recorded, so a test can assert that an offline page stayed offline.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHROMIUM_ARGS = (
    "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic", "--disable-default-apps", "--disable-extensions",
)


def find_chromium() -> str | None:
    """The Chromium executable on PATH (Debian's package installs /usr/bin/chromium)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass(frozen=True)
class PageReport:
    """What a page showed: plot canvases, legend entries, requests, and a screenshot."""

    canvases: int
    legend: tuple[str, ...]
    external_requests: tuple[str, ...]
    screenshot: bytes

    def distinct_colours(self) -> int:
        """Number of distinct colours in the screenshot (a blank page has one or two)."""
        from PIL import Image

        image = np.asarray(Image.open(io.BytesIO(self.screenshot)).convert("RGB"))
        return len(np.unique(image.reshape(-1, 3), axis=0))


def render(page_path: str | Path, wait_selector: str = ".js-plotly-plot canvas",
           timeout_ms: int = 30_000) -> PageReport:
    """Load a local HTML file in headless Chromium, wait for the plot, and report on it."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise FileNotFoundError("no chromium on PATH: apt-get install chromium")
    requests: list[str] = []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=list(CHROMIUM_ARGS),
            viewport={"width": 1280, "height": 900})
        try:
            page = browser.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.goto(Path(page_path).resolve().as_uri())
            page.wait_for_selector(wait_selector, timeout=timeout_ms)
            page.wait_for_timeout(1000)  # let WebGL draw once
            canvases = page.evaluate("() => document.querySelectorAll('canvas').length")
            legend = page.evaluate(
                "() => [...document.querySelectorAll('.legendtext, .legendtitletext')]"
                ".map(e => e.textContent)")
            shot = page.screenshot()
        finally:
            browser.close()
    external = tuple(u for u in requests if not u.startswith(("file:", "data:", "blob:")))
    return PageReport(canvases, tuple(legend), external, shot)
