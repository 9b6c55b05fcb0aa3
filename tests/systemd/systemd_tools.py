"""System tools some tests need (iproute2, systemd-analyze): skip without, fail in CI.

With STOREEDGE_REQUIRE_SYSTEM_TOOLS=1 (set by .ci/run) a missing tool is a failure naming
the Debian package to install, never a silent skip.
"""

import os
import shutil

import pytest

PACKAGES = {"ip": "iproute2", "systemd-analyze": "systemd", "systemd-sysusers": "systemd"}


def require_tool(name: str, needs_root: bool = False) -> str:
    """The tool's path; otherwise skip (or fail under STOREEDGE_REQUIRE_SYSTEM_TOOLS=1)."""
    path = shutil.which(name)
    problem = None
    if path is None:
        problem = f"{name} not found: apt-get install -y {PACKAGES.get(name, name)}"
    elif needs_root and os.geteuid() != 0:
        problem = f"{name} needs root here (network namespaces)"
    if problem is None:
        assert path is not None
        return path
    if os.environ.get("STOREEDGE_REQUIRE_SYSTEM_TOOLS") == "1":
        pytest.fail(problem)
    pytest.skip(problem)
