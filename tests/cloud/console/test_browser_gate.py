"""The browser tests skip without Chromium, and fail instead under STOREEDGE_REQUIRE_BROWSER=1."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TEST = "tests/cloud/console/browser/test_console_browser.py::test_login_page_and_a_wrong_password"
ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("require", "outcome"), [("", "1 skipped"), ("1", "1 error")])
def test_a_missing_browser_is_a_skip_unless_required(require: str, outcome: str) -> None:
    env = {
        **os.environ,
        "STOREEDGE_CHROMIUM": "/nonexistent/chromium",
        "STOREEDGE_REQUIRE_BROWSER": require,
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert outcome in done.stdout, done.stdout + done.stderr
    if require:
        assert done.returncode != 0
        assert "STOREEDGE_REQUIRE_BROWSER=1 makes that a failure" in done.stdout
    else:
        assert done.returncode == 0
