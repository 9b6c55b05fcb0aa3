"""Real zeroconf on 127.0.0.1 for tests: fast timing, and a service type of their own."""

import secrets

import pytest
import zeroconf._core
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncZeroconf


def quick_mdns_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Probe, announce and say goodbye in milliseconds instead of ~1.2 s (upstream quick_timing).

    Only `_core` is patched: it is pure Python in the 0.154 wheel, while the browser and info
    modules are compiled and ignore patched constants (devices.md §6 #4 saw the same).
    """
    for name in ("_CHECK_TIME", "_REGISTER_TIME", "_UNREGISTER_TIME"):
        monkeypatch.setattr(zeroconf._core, name, 10)
    monkeypatch.setattr(zeroconf._core, "_PROBE_RANDOM_DELAY_INTERVAL", (1, 2))


def unique_service_type() -> str:
    """A type no other test run on this host browses (the label stays within 15 bytes)."""
    return f"_se{secrets.token_hex(4)}._tcp.local."


def loopback_zeroconf() -> AsyncZeroconf:
    """A zeroconf instance that sends and hears multicast on loopback only."""
    return AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
