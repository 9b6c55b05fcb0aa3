"""The sd_notify protocol (sd_notify(3)): READY, STATUS, WATCHDOG and STOPPING datagrams.

Hand-written rather than a dependency: the protocol is one datagram of `KEY=value` lines to
the AF_UNIX socket named by $NOTIFY_SOCKET, and the PyPI wrappers are unmaintained or need
libsystemd headers to build. Sending never raises: a supervisor that went away must not take
the agent down with it; failures are counted instead.
"""

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

# systemd truncates STATUS= in `systemctl status`; one short line reads best there.
MAX_STATUS_LEN = 200


def encode(fields: Mapping[str, str]) -> bytes:
    """The datagram for `fields`: one `KEY=value` line each; values lose newlines."""
    lines = []
    for key, value in fields.items():
        if not key or not key.isupper() or "=" in key:
            raise ValueError(f"invalid sd_notify key {key!r}")
        lines.append(f"{key}={' '.join(value.splitlines())}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def socket_address(value: str) -> str | bytes:
    """$NOTIFY_SOCKET as a connect() address: `@name` is Linux's abstract namespace."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_interval_s(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """How often to ping: half of $WATCHDOG_USEC (sd_watchdog_enabled(3)), if it is for us."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(pid if pid is not None else os.getpid()):
        return None  # set for another process (a parent's leftover)
    return int(usec) / 1e6 / 2


class Notifier:
    """Sends notifications to the service manager; a no-op when not started by one."""

    def __init__(self, address: str | None, watchdog_interval_s: float | None = None) -> None:
        self.address = address
        self.watchdog_interval_s = watchdog_interval_s if address else None
        self.sent = 0
        self.failures = 0
        self.last_status = ""
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Notifier":
        """The notifier systemd asked for through $NOTIFY_SOCKET and $WATCHDOG_USEC."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        return cls(address, watchdog_interval_s(env) if address else None)

    @property
    def enabled(self) -> bool:
        """True when a service manager listens."""
        return self.address is not None

    def ready(self, status: str) -> bool:
        """Startup finished: systemd marks a Type=notify unit active."""
        return self.send({"READY": "1", "STATUS": self._clip(status)})

    def status(self, status: str) -> bool:
        """Replace the one-line summary `systemctl status` shows; unchanged text is not resent."""
        status = self._clip(status)
        if status == self.last_status:
            return True
        return self.send({"STATUS": status})

    def watchdog(self) -> bool:
        """Every loop is healthy: push the watchdog deadline back."""
        return self.send({"WATCHDOG": "1"})

    def stopping(self, status: str = "stopping") -> bool:
        """Shutdown began: systemd waits for the exit instead of calling it a crash."""
        return self.send({"STOPPING": "1", "STATUS": self._clip(status)})

    def send(self, fields: Mapping[str, str]) -> bool:
        """Send one datagram; False (and a counted failure) if it could not be delivered."""
        if self.address is None:
            return False
        data = encode(fields)
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # a full receive queue must not stall the loop
            self._sock.sendto(data, socket_address(self.address))
        except OSError as exc:
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                log.warning(
                    "sd_notify to %s failed (%d so far): %s", self.address, self.failures, exc
                )
            return False
        self.sent += 1
        if "STATUS" in fields:
            self.last_status = fields["STATUS"]
        return True

    def close(self) -> None:
        """Close the socket; idempotent."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @staticmethod
    def _clip(status: str) -> str:
        status = " ".join(status.split())
        return status if len(status) <= MAX_STATUS_LEN else status[: MAX_STATUS_LEN - 1] + "…"
