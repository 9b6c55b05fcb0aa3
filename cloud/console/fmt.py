"""Pure formatting for templates: times (localised in the browser), ages, counts, lamps."""

from datetime import datetime

from markupsafe import Markup, escape

from cloud.console.settings import ConsoleSettings
from cloud.storage.console import FleetRow

Lamp = str  # "online" | "stale" | "offline" | "no_agent"
LAMP_TEXT = {"online": "Online", "stale": "Stale", "offline": "Offline", "no_agent": "No agent"}


def iso_utc(value: datetime) -> str:
    """`2024-05-01T12:00:00Z`: what `<time datetime>` and the browser script read."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def time_tag(value: datetime | None, empty: str = "never") -> Markup:
    """A `<time>` element in UTC that console.js rewrites into the viewer's time zone."""
    if value is None:
        return Markup('<span class="muted">{}</span>').format(empty)
    iso = iso_utc(value)
    text = value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, text, text)


def age(seconds: float | None) -> str:
    """A short human duration: `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`."""
    if seconds is None:
        return "–"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def since(value: datetime | None, now: datetime) -> str:
    """`age` of a past moment, or `–`."""
    return "–" if value is None else age((now - value).total_seconds())


def num(value: int | float) -> str:
    """Thousands separated by a thin space, readable in every locale."""
    if isinstance(value, float):
        return f"{value:,.1f}".replace(",", "\u2009")
    return f"{value:,}".replace(",", "\u2009")


def lamp(row: FleetRow, now: datetime, settings: ConsoleSettings) -> Lamp:
    """The store's status lamp from its last heartbeat (FleetRow.last_seen_at)."""
    if row.last_seen_at is None:
        return "no_agent"
    silent = (now - row.last_seen_at).total_seconds()
    if silent < settings.stale_after_s:
        return "online"
    if silent < settings.offline_after_s:
        return "stale"
    return "offline"


def lamp_tag(state: Lamp) -> Markup:
    """A coloured lamp with its word beside it (colour is never the only signal)."""
    return Markup('<span class="lamp lamp-{}"><span aria-hidden="true">●</span> {}</span>').format(
        state, LAMP_TEXT.get(state, state)
    )


def device_state_tag(state: str, condition: str) -> Markup:
    """A device state lamp: online green, degraded amber, anything else red."""
    css = {"online": "online", "degraded": "stale", "connecting": "stale"}.get(state, "offline")
    label = escape(state) + (Markup(" · ") + escape(condition) if condition else Markup(""))
    return Markup('<span class="lamp lamp-{}"><span aria-hidden="true">●</span> {}</span>').format(
        css, label
    )
