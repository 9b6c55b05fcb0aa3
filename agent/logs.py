"""Structured logs: one JSON object per line on stdout (journald keeps it), levels per component.

Secrets never reach a log line: values registered with `register_secret` (the agent token,
the status page token) and anything shaped like a credential (`Bearer …`, `token=…`,
`"token": "…"`) are masked in the final text, exception tracebacks included.
"""

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

MASK = "***"
# Shapes of credentials in free text; group 1 is kept, the secret after it is masked.
PATTERNS = (
    re.compile(r"(\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE),
    re.compile(r"([?&;\s]token=)[^&\s\"']+", re.IGNORECASE),
    re.compile(r"""(["']?(?:token|code|password|secret)["']?\s*[:=]\s*["'])[^"']+""", re.I),
)
# syslog priorities journald reads from a `<N>` line prefix (sd-daemon(3)).
PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}
# LogRecord attributes that are not "extra" fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}

_secrets: set[str] = set()
_lock = threading.Lock()
MIN_SECRET_LEN = 8  # shorter values would mask ordinary words


def register_secret(value: str | None) -> None:
    """Mask `value` wherever it would appear in a log line from now on."""
    if value and len(value) >= MIN_SECRET_LEN:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret and credential-shaped value masked."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "msg", …extra, "exc"} on one line, redacted."""

    def __init__(self, priority_prefix: bool = False) -> None:
        super().__init__()
        self.priority_prefix = priority_prefix

    def format(self, record: logging.LogRecord) -> str:
        """One redacted JSON line."""
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                plain = isinstance(value, int | float | bool)
                doc[key] = (
                    value if plain else redact(value if isinstance(value, str) else repr(value))
                )
        if record.exc_info:
            doc["exc"] = redact(self.formatException(record.exc_info))
        # Redacted field by field, before JSON escaping could hide a quoted secret.
        line = json.dumps(doc, ensure_ascii=False, default=repr)
        return _prefix(record, line) if self.priority_prefix else line


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, redacted the same way."""

    def __init__(self, priority_prefix: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.priority_prefix = priority_prefix

    def format(self, record: logging.LogRecord) -> str:
        """One redacted line (plus traceback)."""
        line = redact(super().format(record))
        return _prefix(record, line) if self.priority_prefix else line


def _prefix(record: logging.LogRecord, line: str) -> str:
    return f"<{PRIORITY.get(record.levelno, 6)}>{line}"


def writes_to_journal(stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """True when `stream` is the journald stream systemd gave us ($JOURNAL_STREAM = dev:ino)."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return value == f"{st.st_dev}:{st.st_ino}"


def setup_logging(
    root_level: str,
    levels: Mapping[str, str] | None = None,
    fmt: str = "json",
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Replace the root handlers with one redacting handler; set per-component levels."""
    stream = stream or sys.stdout
    journal = writes_to_journal(stream)
    handler = logging.StreamHandler(stream)
    formatter = JsonFormatter(journal) if fmt == "json" else TextFormatter(journal)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(root_level)
    for name, level in (levels or {}).items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(True)
    return handler
