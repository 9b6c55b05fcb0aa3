"""Reading the state dir without the agent, and rendering status documents for a terminal."""

import sqlite3
import time
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.credentials import load_credentials
from agent.errors import ConfigError

OUTBOX_FILE = "outbox.db"


def outbox_backlog(state_dir: Path) -> tuple[int, float | None] | None:
    """(events waiting, oldest age s) read-only from the outbox file, or None if absent."""
    path = Path(state_dir) / OUTBOX_FILE
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    try:
        count, oldest = conn.execute("SELECT count(*), min(created_at) FROM outbox").fetchone()
    finally:
        conn.close()
    return int(count), (time.time() - oldest if oldest is not None else None)


def describe(config: AgentConfig) -> str:
    """What can be said with the agent down: who we are and what waits in the outbox."""
    lines = []
    try:
        creds = load_credentials(config.agent.state_dir)
        lines.append(
            f"enrolled   agent {creds.agent_id} of store {creds.store_id} at {creds.cloud_url}"
        )
    except ConfigError as exc:
        lines.append(f"enrolled   no: {exc}")
    try:
        backlog = outbox_backlog(config.agent.state_dir)
    except sqlite3.Error as exc:
        lines.append(f"outbox     unreadable: {exc}")
    else:
        if backlog is None:
            lines.append("outbox     none yet")
        else:
            count, age = backlog
            oldest = f" (oldest {age:.0f} s)" if age is not None else ""
            lines.append(f"outbox     {count} events waiting{oldest}")
    lines.append("start it:  systemctl start storeedge-agent; logs: journalctl -u storeedge-agent")
    return "\n".join(lines)


def render_status(doc: dict[str, Any], config: AgentConfig | None = None) -> str:
    """The status document as a short terminal report, worst news first."""
    agent, cloud = doc["agent"], doc["cloud"]
    out, sync = doc.get("outbox", {}), doc.get("sync", {})
    lines = [
        f"agent      {agent['agent_id']} of store {agent['store_id']} (v{agent['version']}), "
        f"up {agent.get('uptime_s') or 0:.0f} s"
    ]
    if cloud["auth"] == "refused":
        lines.append(
            f"CLOUD      TOKEN REFUSED since {cloud['refused_since']} (revoked?): "
            "events are kept; re-enroll with a new code"
        )
    for wedge in doc.get("watchdog", {}).get("wedged", []):
        lines.append(f"STUCK      {wedge['name']} ({wedge['overdue_s']} s late)")
    for alert in out.get("alerts", []):
        lines.append(f"OUTBOX     {alert}")
    oldest = out.get("oldest_unsynced_age_s")
    lines.append(
        f"backlog    {out.get('backlog_events', '?')} events"
        + (f", oldest {oldest:.0f} s" if oldest else "")
        + f", {out.get('dead_letters', 0)} dead letters"
    )
    lines.append(
        f"sync       {sync.get('state', '?')}, last sync {sync.get('last_sync_at') or 'never'}"
        + (f", last error: {sync['last_error']}" if sync.get("last_error") else "")
    )
    business = doc.get("business_config")
    if business is not None:
        version = business["settings_version"]
        lines.append(
            "config     "
            + (
                "none yet"
                if version is None
                else f"settings v{version} ({business['config_hash']})"
            )
        )
        refused = business.get("refused")
        if refused:
            lines.append(f"CONFIG     refused v{refused['settings_version']}: {refused['reason']}"
                         " (running on the last good one; fix it in the cloud)")  # fmt: skip
    offset = cloud.get("clock_offset_s")
    lines.append(f"clock      {'unknown' if offset is None else f'{offset:+.3f} s vs cloud'}")
    for device in doc.get("devices", []):
        detail = f" — {device['detail']}" if device.get("detail") else ""
        lines.append(
            f"device     {device['device_id']:20} {device['kind']:8} {device['state']}"
            f" ({device.get('condition') or '-'}){detail}"
        )
    for scan in doc.get("scans", [])[:5]:
        lines.append(f"scan       {scan['device_id']}: {scan['text']!r} → {scan['classification']}")
    if config is not None and config.status_page.enabled:
        lines.append(f"page       {lan_urls(config)}")
    return "\n".join(lines)


def lan_urls(config: AgentConfig) -> str:
    """The status page address(es) a phone on the store Wi-Fi can open."""
    page = config.status_page
    from agent.status_page.access import is_loopback_address

    if is_loopback_address(page.host) or page.host == "localhost":
        return f"http://127.0.0.1:{page.port}/ (this box only; set [status_page] host for the LAN)"
    token_path = page.token_file or Path(config.agent.state_dir) / "statuspage.token"
    try:
        token = token_path.read_text(encoding="utf-8").strip()
    except OSError:
        return f"port {page.port} on the LAN (token in {token_path}: run as root to see it)"
    hosts = [page.host]
    if page.host in ("0.0.0.0", "::"):
        import ifaddr

        hosts = sorted(
            {
                ip.ip
                for a in ifaddr.get_adapters()
                for ip in a.ips
                if isinstance(ip.ip, str) and not ip.ip.startswith("127.")
            }
        )
    return "  ".join(f"http://{h}:{page.port}/?token={token}" for h in hosts)


def render_scan(scan: dict[str, Any]) -> str:
    """One scan's decoding, for test-scan."""
    lines = [
        f"text           {scan['text']!r}",
        f"classification {scan['classification']}"
        + (f" ({scan['reason']})" if scan.get("reason") else ""),
    ]
    if scan.get("symbology"):
        lines.append(f"symbology      {scan['symbology']} (AIM {scan.get('aim_id') or '-'})")
    if scan.get("gs1"):
        lines.append("GS1            " + " ".join(f"({k}) {v}" for k, v in scan["gs1"].items()))
    if scan.get("decode_error"):
        lines.append(f"decode error   {scan['decode_error']}")
    lines.append(f"raw bytes      {scan['raw_len']}: {scan['raw_hex']}")
    return "\n".join(lines)
