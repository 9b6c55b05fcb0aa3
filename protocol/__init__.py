"""Wire models shared by the agent and the cloud: sans-IO, no imports from agent/ or cloud/."""

from protocol.constants import SCHEMA_VERSION
from protocol.events import (
    EVENT_ADAPTER,
    DeviceStatusEvent,
    DeviceStatusPayload,
    Event,
    ScanClass,
    ScanEvent,
    ScanPayload,
)
from protocol.ids import uuid7
from protocol.wire import (
    AgentInfo,
    BatchResponse,
    DeviceHealth,
    EnrollRequest,
    EnrollResponse,
    EventResult,
    Heartbeat,
    HeartbeatResponse,
)

__all__ = [
    "EVENT_ADAPTER",
    "SCHEMA_VERSION",
    "AgentInfo",
    "BatchResponse",
    "DeviceHealth",
    "DeviceStatusEvent",
    "DeviceStatusPayload",
    "EnrollRequest",
    "EnrollResponse",
    "Event",
    "EventResult",
    "Heartbeat",
    "HeartbeatResponse",
    "ScanClass",
    "ScanEvent",
    "ScanPayload",
    "uuid7",
]
