"""Headless Chromium (Debian's `chromium` package) as a person's browser: the rendered DOM and screenshots.

The UIs are single-page apps that fetch their data after the page loads, so Chromium is given a
virtual-time budget: it runs the page's timers and requests until the budget is spent, then dumps
what a person would see. Nothing is downloaded: `make browser` installs the Debian package.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser")
# Enough for MLflow's and Prefect's pages to fetch and render their data on a busy two-core machine.
RENDER_BUDGET_MS = 20_000


def chromium() -> str:
    """The Chromium binary, or an error that says how to install it."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("Debian's chromium is not installed: run `make browser` (apt-get install chromium)")


def _headless(*arguments: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    # A throwaway profile per call: no state (cookies, local storage, the UI's last mode) carries over.
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={profile}",
                *arguments,
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        )


def rendered_dom(url: str, *, budget_ms: int = RENDER_BUDGET_MS) -> str:
    """The page's DOM after its scripts ran for `budget_ms` of virtual time."""
    done = _headless(f"--virtual-time-budget={budget_ms}", "--dump-dom", url, timeout_s=budget_ms / 1000 + 90)
    return done.stdout


def screenshot(url: str, path: Path, *, size: str = "1400,1000", budget_ms: int = RENDER_BUDGET_MS) -> Path:
    """A PNG of the page as rendered in a window of `size` (width,height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _headless(
        f"--virtual-time-budget={budget_ms}",
        f"--window-size={size}",
        "--hide-scrollbars",
        f"--screenshot={path}",
        url,
        timeout_s=budget_ms / 1000 + 90,
    )
    return path
