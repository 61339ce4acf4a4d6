"""A real headless Chromium for the court pages: Debian's ``/usr/bin/chromium`` driven
by Playwright (never a downloaded browser). Without it the browser tests are skipped,
except under CI (``CI`` set), where they fail: CI must never skip them silently."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def need_chromium() -> None:
    """Skip (or, under CI, fail) when Debian's Chromium or Playwright is missing."""
    why = None
    if not CHROMIUM.exists():
        why = f"{CHROMIUM} is not installed (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            why = "the Python package playwright is not installed"
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run under CI: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless Chromium per test module."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where tests leave files for a person to look at (screenshots):
    ``$CUSTODY_TEST_ARTIFACTS`` if set, else the test's temporary directory."""
    where = os.environ.get("CUSTODY_TEST_ARTIFACTS")
    path = Path(where) if where else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path
