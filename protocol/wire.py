"""Request and response bodies of the ingest API (DESIGN.md "Ingest API")."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from protocol.base import Id
from protocol.constants import MAX_BATCH_EVENTS, MAX_ID_LEN
from protocol.events import DeviceState, Event
from protocol.settings import ConfigRefusal, Hash, Version


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EventResult(_Wire):
    """The cloud's verdict on one event of a batch, in batch order."""

    status: Literal["accepted", "duplicate", "rejected"]
    event_id: str | None = None
    reason: str | None = None


class EventBatch(_Wire):
    """POST /v1/events body: events oldest first, each validated on its own by the cloud.

    The cloud answers a malformed event with a `rejected` result rather than refusing the
    batch, so this model is the contract (and the agent's self-check), not the server's parser.
    """

    events: list[Event] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class BatchResponse(_Wire):
    """Answer to POST /v1/events: exactly one result per event sent."""

    results: list[EventResult]


class AgentInfo(_Wire):
    """What an agent says about itself when it enrolls."""

    hostname: Annotated[str, Field(max_length=255)] = ""
    version: Annotated[str, Field(max_length=64)] = ""
    platform: Annotated[str, Field(max_length=255)] = ""


class EnrollRequest(_Wire):
    """POST /v1/enroll body: a single-use code traded for credentials.

    `agent_id` re-enrolls an existing agent of the code's store under a fresh token (its
    outbox, stamped with that id, stays deliverable); without it a new agent is made.
    """

    code: Annotated[str, Field(min_length=4, max_length=64)]
    agent_info: AgentInfo = AgentInfo()
    agent_id: Id | None = None


class EnrollResponse(_Wire):
    """Credentials for one agent; the cloud keeps only a hash of `token`."""

    agent_id: Id
    store_id: Id
    token: str


class AgentSelf(_Wire):
    """GET /v1/agent: who the bearer token belongs to, and the cloud's clock."""

    agent_id: Id
    store_id: Id
    server_time: AwareDatetime


class DeviceHealth(_Wire):
    """One device's current state and counters, carried in every heartbeat."""

    device_id: Id
    kind: Annotated[str, Field(max_length=32)]
    state: DeviceState
    condition: Annotated[str, Field(max_length=64)] = ""
    detail: Annotated[str, Field(max_length=512)] | None = None
    counters: dict[Annotated[str, Field(max_length=64)], int] = {}


# Bounds far past any real outbox (2**40 events is ~150 TB of them) that keep the cloud's sums
# over a whole fleet (millions of agents) within its 64-bit columns, and an age that any clock,
# even one reset to 1970, stays under (~317 years): one agent cannot overflow a fleet total.
MAX_BACKLOG_EVENTS = 2**40
MAX_AGE_S = 1e10


class Heartbeat(_Wire):
    """POST /v1/heartbeat body: the agent's health as of `sent_at`."""

    sent_at: AwareDatetime
    version: Annotated[str, Field(max_length=64)]
    backlog_events: int = Field(ge=0, le=MAX_BACKLOG_EVENTS)
    backlog_bytes: int = Field(ge=0)
    oldest_unsynced_age_s: float | None = Field(default=None, ge=0, le=MAX_AGE_S)
    dead_letters: int = Field(default=0, ge=0, le=MAX_BACKLOG_EVENTS)
    # The outbox is past its byte cap holding events it never drops (coupons, sales): an alarm.
    outbox_over_cap: bool = False
    losses: dict[Annotated[str, Field(max_length=64)], int] = {}
    devices: list[DeviceHealth] = []
    clock_offset_s: float | None = None
    last_sync_at: AwareDatetime | None = None
    next_seq: int | None = None
    sync_state: Annotated[str, Field(max_length=32)] = ""
    # The business config in force (GET /v1/config): its settings version and content hash,
    # and why the latest one sent was refused, while the agent runs on its last good one.
    config_version: Version | None = None
    config_hash: Hash | None = None
    config_error: ConfigRefusal | None = None
    # What an operator must act on: a quarantined outbox, a full disk (agent/outbox).
    alerts: Annotated[list[Annotated[str, Field(max_length=300)]], Field(max_length=10)] = []


class HeartbeatResponse(_Wire):
    """The cloud's clock, so the agent can measure its own offset."""

    server_time: datetime
    agent_id: Annotated[str, Field(max_length=MAX_ID_LEN)]
