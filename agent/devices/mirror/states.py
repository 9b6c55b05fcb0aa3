"""The driver's connection states and the transitions that emit device.status: data, not code."""

from enum import StrEnum

from protocol.events import DeviceState


class ConnState(StrEnum):
    """Where the driver is; two offline flavours so the console can tell them apart."""

    CONNECTING = "connecting"
    ONLINE = "online"
    DEGRADED = "degraded"
    DISCONNECTED = "disconnected"
    NOT_FOUND = "not_found"


DEVICE_STATE: dict[ConnState, DeviceState] = {
    ConnState.CONNECTING: "connecting",
    ConnState.ONLINE: "online",
    ConnState.DEGRADED: "degraded",
    ConnState.DISCONNECTED: "offline",
    ConnState.NOT_FOUND: "offline",
}

# (state, what happened) → (new state, condition). Pairs not listed change nothing, so a
# mirror that stays away emits one device.status, not one per retry.
TRANSITIONS: dict[tuple[ConnState, str], tuple[ConnState, str]] = {
    (ConnState.CONNECTING, "subscribed"): (ConnState.ONLINE, "connected"),
    (ConnState.CONNECTING, "lost"): (ConnState.DISCONNECTED, "disconnected"),
    (ConnState.CONNECTING, "not_found"): (ConnState.NOT_FOUND, "not_found"),
    (ConnState.ONLINE, "lost"): (ConnState.DISCONNECTED, "disconnected"),
    (ConnState.ONLINE, "flooding"): (ConnState.DEGRADED, "flooding"),
    (ConnState.DEGRADED, "calm"): (ConnState.ONLINE, "flood_ended"),
    (ConnState.DEGRADED, "lost"): (ConnState.DISCONNECTED, "disconnected"),
    (ConnState.DISCONNECTED, "subscribed"): (ConnState.ONLINE, "connected"),
    (ConnState.DISCONNECTED, "not_found"): (ConnState.NOT_FOUND, "not_found"),
    (ConnState.NOT_FOUND, "subscribed"): (ConnState.ONLINE, "connected"),
    (ConnState.NOT_FOUND, "lost"): (ConnState.DISCONNECTED, "disconnected"),
}
