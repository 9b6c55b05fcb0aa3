"""The invariants checked after any run, whatever was injected (issue 8 "Invariant checker").

1. Every event acknowledged to a device (a scan the agent read past, a redemption the till got
   200 for) is in the cloud exactly once.
2. Every `seq` gap is explained by counted drops (byte-cap drops, dead letters, a quarantined
   outbox), and no seq is used twice by one agent.
3. Coupon redemptions are never dropped: none lost, none dead-lettered, no coupon loss reason.
4. No print job printed twice (from what the printer emulator printed): at most one unmarked
   print, and at most one marked copy — the reprint docs/PRINTERS.md makes of a job whose
   fate a kill left unknown, which says on paper that it is a copy.
"""

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.coupons.voucher import VOUCHER_QR_PREFIX
from agent.devices.printer.templates import COPY_TITLE

# Loss reasons under which an outbox row that already had a seq can vanish (agent/outbox).
SEQ_CONSUMING_LOSSES = ("outbox_full", "dead_letter_overflow", "outbox_corrupt")
COUPON_KINDS = ("coupon.redeemed", "coupon.rejected")


@dataclass
class Acknowledged:
    """What the devices were told was taken: the harness fills it as the run goes."""

    scans: list[str] = field(default_factory=list)  # scan texts, unique per run
    redemptions: list[str] = field(default_factory=list)  # redemption ids answered 200


@dataclass
class AgentAccount:
    """One agent's own books at the end of the run (read from its outbox file)."""

    agent_id: str
    losses: Mapping[str, int]
    dead_letters: int = 0
    dead_kinds: Mapping[str, int] = field(default_factory=dict)
    backlog: int = 0
    # First seq of each new epoch a quarantined outbox started: the gap below it is the alert's.
    seq_jumps: Sequence[int] = ()


@dataclass
class Verdict:
    """What the checker found; `ok` only when every list of violations is empty."""

    acknowledged: int = 0
    in_cloud: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    seq_reused: list[str] = field(default_factory=list)
    unexplained_gaps: dict[str, int] = field(default_factory=dict)
    coupon_violations: list[str] = field(default_factory=list)
    printed_twice: list[str] = field(default_factory=list)
    marked_copies: int = 0  # reprints of an uncertain job, marked on paper (not violations)
    unacknowledged_arrived: int = 0  # fragments of a frame torn by a kill, device.status…

    @property
    def ok(self) -> bool:
        """True when no invariant is broken."""
        return not (
            self.lost
            or self.duplicated
            or self.seq_reused
            or self.unexplained_gaps
            or self.coupon_violations
            or self.printed_twice
        )

    def summary(self) -> dict[str, Any]:
        """Counts (and the first few offenders) as plain JSON."""
        return {
            "ok": self.ok,
            "acknowledged": self.acknowledged,
            "in_cloud": self.in_cloud,
            "lost": len(self.lost),
            "duplicates": len(self.duplicated),
            "seq_reused": len(self.seq_reused),
            "unexplained_gaps": sum(self.unexplained_gaps.values()),
            "coupon_violations": len(self.coupon_violations),
            "printed_twice": len(self.printed_twice),
            "marked_copies": self.marked_copies,
            "unacknowledged_arrived": self.unacknowledged_arrived,
            "examples": (self.lost + self.duplicated + self.coupon_violations)[:5],
        }


def check(
    acknowledged: Acknowledged,
    cloud_events: Sequence[Mapping[str, Any]],
    agents: Sequence[AgentAccount],
    printed: Iterable[str] = (),
    copies: Iterable[str] = (),
) -> Verdict:
    """Hold the cloud's events and the agents' books against what the devices were told."""
    verdict = Verdict(in_cloud=len(cloud_events))
    _exactly_once(verdict, acknowledged, cloud_events)
    for account in agents:
        _seq(verdict, account, [e for e in cloud_events if e["agent_id"] == account.agent_id])
        _coupons_kept(verdict, account)
    originals, marked = Counter(printed), Counter(copies)
    verdict.marked_copies = sum(marked.values())
    verdict.printed_twice = sorted(
        job for job in originals | marked if originals[job] > 1 or marked[job] > 1
    )
    return verdict


def is_marked_copy(lines: Iterable[str]) -> bool:
    """True for a receipt the agent printed as a marked reprint (its `*** COPY ***` title)."""
    return any(COPY_TITLE in line for line in lines)


def voucher_refs(qr_payloads: Iterable[bytes]) -> list[str]:
    """The redemption ids of printed vouchers, from the QR payloads a printer emulator printed."""
    prefix = VOUCHER_QR_PREFIX.encode()
    return [p[len(prefix) :].decode() for p in qr_payloads if p.startswith(prefix)]


def _exactly_once(
    verdict: Verdict, acknowledged: Acknowledged, events: Sequence[Mapping[str, Any]]
) -> None:
    ids = Counter(str(e["event_id"]) for e in events)
    verdict.duplicated += [f"event_id {i} stored {n}×" for i, n in ids.items() if n > 1]
    scans = Counter(e["payload"].get("text") for e in events if e["kind"] == "scan")
    redemptions = Counter(
        e["payload"].get("redemption_id") for e in events if e["kind"] == "coupon.redeemed"
    )
    for label, wanted, held in (
        ("scan", acknowledged.scans, scans),
        ("redemption", acknowledged.redemptions, redemptions),
    ):
        verdict.acknowledged += len(wanted)
        for key in wanted:
            if held[key] == 0:
                verdict.lost.append(f"{label} {key} acknowledged, not in the cloud")
            elif held[key] > 1:
                verdict.duplicated.append(f"{label} {key} in the cloud {held[key]}×")
    known = set(acknowledged.scans) | set(acknowledged.redemptions)
    verdict.unacknowledged_arrived = sum(
        1
        for e in events
        if e["payload"].get("text", e["payload"].get("redemption_id")) not in known
    )


def _seq(verdict: Verdict, account: AgentAccount, events: Sequence[Mapping[str, Any]]) -> None:
    by_seq = Counter(int(e["seq"]) for e in events)
    verdict.seq_reused += [
        f"{account.agent_id} seq {seq} used {n}×" for seq, n in by_seq.items() if n > 1
    ]
    if not by_seq:
        return
    present = sorted(by_seq)
    gaps = 0
    previous = 0
    for seq in present:
        if seq > previous + 1 and seq not in account.seq_jumps:
            gaps += seq - previous - 1
        previous = seq
    explained = account.dead_letters + account.backlog
    explained += sum(account.losses.get(reason, 0) for reason in SEQ_CONSUMING_LOSSES)
    if gaps > explained:
        verdict.unexplained_gaps[account.agent_id] = gaps - explained


def _coupons_kept(verdict: Verdict, account: AgentAccount) -> None:
    for kind in COUPON_KINDS:
        if account.dead_kinds.get(kind):
            verdict.coupon_violations.append(
                f"{account.agent_id}: {account.dead_kinds[kind]} {kind} dead-lettered"
            )
    for reason, count in account.losses.items():
        if "coupon" in reason and count:
            verdict.coupon_violations.append(f"{account.agent_id}: {count} lost as {reason}")
