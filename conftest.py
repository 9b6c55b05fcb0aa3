"""Suite-wide fixtures: the rule for tests that need a real system tool.

A missing tool skips on a developer's machine; with STOREEDGE_REQUIRE_SYSTEM_TOOLS=1 (set by
.ci/run) it fails, naming the Debian package to install, so CI can never pass by skipping.
"""

import os
import shutil
from collections.abc import Callable

import pytest

PACKAGES = {"ip": "iproute2", "systemd-analyze": "systemd", "systemd-sysusers": "systemd"}


def _require_tool(name: str, needs_root: bool = False) -> str:
    path = shutil.which(name)
    if path is None:
        problem = f"{name} not found: apt-get install -y {PACKAGES.get(name, name)}"
    elif needs_root and os.geteuid() != 0:
        problem = f"{name} needs root here"
    else:
        return path
    if os.environ.get("STOREEDGE_REQUIRE_SYSTEM_TOOLS") == "1":
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture
def require_tool() -> Callable[..., str]:
    """`require_tool(name, needs_root=False)`: the tool's path, else skip (fail in CI)."""
    return _require_tool
