"""Browser fixtures: Debian's Chromium driven by Playwright, and a running cloud + agent stack.

The browser tests skip when Playwright or /usr/bin/chromium is missing, except under
STOREEDGE_REQUIRE_BROWSER=1 (CI), where a missing browser is a failure. Playwright's own
browser download (`playwright install`) is never used.
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.browser.stack import ConsoleStack

CHROMIUM = os.environ.get("STOREEDGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRE_ENV = "STOREEDGE_REQUIRE_BROWSER"


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 makes that a failure", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium; skipped (or failed, see module docstring) when unavailable.

    Module-scoped: Playwright's sync API runs an event loop of its own in this thread, which
    must be gone before the asyncio tests that follow create theirs.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def stack(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    """Cloud in-process (fast console settings), one agent process with a pty scanner."""
    with ConsoleStack(tmp_path_factory.mktemp("console")) as running:
        yield running


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests leave their screenshots: a temp dir, or docs/console/ (linked
    from the README) with STOREEDGE_SCREENSHOTS=1, so a test run never dirties the checkout."""
    if os.environ.get("STOREEDGE_SCREENSHOTS") != "1":
        return tmp_path_factory.mktemp("screenshots")
    path = Path(__file__).resolve().parents[4] / "docs" / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path
