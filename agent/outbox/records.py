"""Plain records passed between the outbox thread and its async callers."""

from dataclasses import dataclass, field
from typing import Any

import msgspec


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this agent is, stamped on every envelope."""

    agent_id: str
    store_id: str


@dataclass(frozen=True, slots=True)
class Guard:
    """A statement run in the event's own transaction: the event is written only if it
    changes exactly one row (the coupon ledger's single-use claim, agent/coupons/ledger.py)."""

    sql: str
    params: tuple[Any, ...]
    refused: str = "guard_refused"  # AppendResult.dropped when the statement changed nothing


class PendingEvent(msgspec.Struct, frozen=True, gc=False):
    """An event serialized on capture, but for its `seq`, which the writer assigns at commit.

    The body is `head + str(seq) + tail`: serializing on the caller's side keeps the writer
    thread's GIL time to the SQL alone, which is what bounds capture latency. A Struct, not a
    frozen dataclass: one is made per capture, and its constructor is ~8× cheaper.
    """

    event_id: str
    kind: str
    head: bytes
    tail: bytes
    guard: Guard | None = None
    idempotency_key: str | None = None

    def body(self, seq: int) -> bytes:
        """The envelope's exact bytes once numbered."""
        return b"%b%d%b" % (self.head, seq, self.tail)


class AppendResult(msgspec.Struct, frozen=True, gc=False):
    """`seq` once committed; `dropped` names why not: the byte cap, or a refused guard.

    `duplicate`: the idempotency key was captured before; `seq` is that earlier event's.
    (A Struct, made on the writer thread per event, for the reason PendingEvent is one.)
    """

    seq: int | None
    dropped: str | None = None
    duplicate: bool = False


class StoredEvent(msgspec.Struct, frozen=True, gc=False):
    """One outbox row as sent: `body` is the exact serialized envelope.

    Never tracked by the garbage collector (it holds an int and bytes, no cycle can pass
    through it): the drain keeps two batches of these alive, and as tracked objects they
    were promoted at every collection until a full one stalled the process.
    """

    seq: int
    body: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Backlog and loss accounting, for heartbeats and the status page."""

    backlog_events: int
    backlog_bytes: int
    oldest_created_at: float | None
    dead_letters: int
    next_seq: int
    losses: dict[str, int] = field(default_factory=dict)
    over_cap: bool = False
