"""Transport security to the cloud: verified TLS, a pinned CA if asked, no plaintext by mistake."""

import ipaddress
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from agent.errors import ConfigError


def client_ssl_context(ca_bundle: Path | None = None) -> ssl.SSLContext:
    """Verify the cloud's chain and hostname; against `ca_bundle` alone when it is given.

    A pinned bundle replaces the system store (a store box trusts only the chain's CA, not
    every public CA). TLS 1.2 is the floor (RFC 8996 deprecates 1.0 and 1.1).
    """
    try:
        context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cloud.ca_bundle: cannot load {ca_bundle}: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def is_loopback_host(host: str | None) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_cloud_url(url: str, allow_plaintext: bool = False, what: str = "cloud.url") -> str:
    """`url` if it is https, or http to loopback, or http explicitly allowed; else ConfigError."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https":
        return url
    if scheme != "http":
        raise ConfigError(f"{what}: {url!r} must start with https://")
    if allow_plaintext or is_loopback_host(parts.hostname):
        return url
    raise ConfigError(
        f"{what}: {url!r} is plain http to a non-loopback host: events and tokens would "
        "cross the network unencrypted; use https:// (or set [cloud] allow_plaintext = true "
        "on a network you trust)"
    )
