"""Who may see the page: loopback callers freely, anyone else only with the LAN token.

"Loopback" needs both ends: the peer address and the Host header. A page in a browser on
the box that DNS-rebinds evil.example to 127.0.0.1 arrives from loopback with a foreign
Host, and is treated as the LAN.
"""

import hmac
import ipaddress
import os
import secrets
from pathlib import Path

COOKIE = "storeedge_token"
TOKEN_BYTES = 24  # 192 bits: unguessable, and short enough to type from a phone if need be
LOCAL_HOSTNAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback_address(value: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.x)."""
    if not value:
        return False  # a Unix socket or an unknown peer is not trusted
    try:
        address = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def host_name(host_header: str) -> str:
    """The host part of a Host header: `[::1]:8421` → `::1`, `box:8421` → `box`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host


def is_local(peer: str | None, host_header: str) -> bool:
    """The request comes from this box and names it as local (no rebinding)."""
    host = host_name(host_header)
    return is_loopback_address(peer) and (host in LOCAL_HOSTNAMES or is_loopback_address(host))


def token_matches(expected: str | None, presented: str | None) -> bool:
    """Constant-time comparison; no expected token means LAN access is off."""
    if not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def load_or_create_token(path: Path) -> str:
    """The LAN token in `path`, created 0600 with a fresh random value if missing."""
    try:
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(TOKEN_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    os.replace(tmp, path)
    return token
