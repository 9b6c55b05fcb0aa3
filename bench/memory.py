"""Resident memory of this process, from /proc (stdlib only: the agent children import it).

Not `getrusage().ru_maxrss`: Linux carries it across exec, so a child started by a big harness
(subprocess forks or vforks it first) reports the harness's peak as its own.
"""

from pathlib import Path


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_now_mb() -> float:
    """Current resident set size (VmRSS), in MB."""
    return _status_mb("VmRSS")


def rss_peak_mb() -> float:
    """Peak resident set size of this program since its exec (VmHWM), in MB."""
    return _status_mb("VmHWM")
