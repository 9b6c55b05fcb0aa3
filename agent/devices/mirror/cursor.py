"""Where a mirror's event stream was read up to, and its tiny crash-safe file."""

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Cursor:
    """Every event of `mirror_id` up to `counter` in `epoch` is durably recorded."""

    mirror_id: str
    epoch: str
    counter: int


def cursor_path(state_dir: Path, device_id: str) -> Path:
    """The cursor file of one configured mirror device."""
    return state_dir / "mirrors" / f"{device_id}.cursor.json"


def load_cursor(path: Path) -> Cursor | None:
    """The saved cursor, or None if there is none (or it is unreadable: replay then decides)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Cursor(str(data["mirror_id"]), str(data["epoch"]), int(data["counter"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # A torn or hand-edited file: replaying the mirror's backlog beats refusing to start.
        return None


def save_cursor(path: Path, cursor: Cursor) -> None:
    """Atomically replace the file and fsync it: blocking, so call it off the event loop."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    body = json.dumps(
        {"mirror_id": cursor.mirror_id, "epoch": cursor.epoch, "counter": cursor.counter}
    )
    with open(tmp, "w", encoding="utf-8") as file:
        file.write(body)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    # The rename is durable only once the directory entry is (POSIX rename semantics).
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
