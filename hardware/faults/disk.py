"""A small filesystem that fills up on cue: a tmpfs mounted for the outbox (needs root)."""

import contextlib
import subprocess
from pathlib import Path
from types import TracebackType


class DiskError(Exception):
    """The filesystem could not be mounted, resized or unmounted."""


class TmpfsDisk:
    """`mount -t tmpfs -o size=…` at `path`; `resize` to fill or free it; unmount on exit."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        self.size = size
        self.mounted = False

    def mount(self) -> "TmpfsDisk":
        """Mount it (the directory is created); DiskError when not allowed here."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._run(
            "mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700", "tmpfs", str(self.path)
        )
        self.mounted = True
        return self

    def resize(self, size: str) -> None:
        """Grow or shrink it in place, files kept (space "returns" or "runs out")."""
        self._run("mount", "-o", f"remount,size={size}", str(self.path))
        self.size = size

    def unmount(self) -> None:
        """Unmount; idempotent."""
        if self.mounted:
            with contextlib.suppress(DiskError):
                self._run("umount", "-l", str(self.path))
            self.mounted = False

    def free_bytes(self) -> int:
        """Bytes still free on it."""
        done = subprocess.run(
            ["df", "--output=avail", "-B1", str(self.path)], capture_output=True, text=True
        )
        return int(done.stdout.split()[-1])

    def __enter__(self) -> "TmpfsDisk":
        return self.mount()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unmount()

    @staticmethod
    def _run(*argv: str) -> None:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except OSError as exc:
            raise DiskError(f"{argv[0]}: {exc}") from exc
        if done.returncode != 0:
            raise DiskError(f"{' '.join(argv)}: {done.stderr.strip()}")
