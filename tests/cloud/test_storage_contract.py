"""The `Storage` contract, run against every backend (SQLite and PostgreSQL) alike."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from cloud.credentials import hash_code
from cloud.errors import EnrollmentRefused, StorageError
from cloud.fleet import issue_enroll_code
from cloud.storage import open_storage
from cloud.storage.base import (
    AgentIdentity,
    EventFilter,
    EventRow,
    HeartbeatRecord,
    RateLimit,
    Storage,
    StoreFilter,
)
from protocol.ids import uuid7_str

NOW = datetime.now(UTC).replace(microsecond=0)
AGENT = AgentIdentity("agt-1", "store-1")


def rows(*event_ids: str, kind: str = "scan", start: int = 1) -> list[EventRow]:
    return [
        EventRow(event_id, seq, "scanner", kind, NOW, b'{"seq": %d}' % seq)
        for seq, event_id in enumerate(event_ids, start=start)
    ]


def ids(n: int) -> list[str]:
    return [uuid7_str() for _ in range(n)]


async def enroll(
    storage: Storage, agent: AgentIdentity = AGENT, token_hash: str = "token-hash"
) -> None:
    issued = await issue_enroll_code(storage, agent.store_id, now=NOW)
    await storage.enroll(hash_code(issued.code), agent.agent_id, token_hash, {"v": 1}, NOW)


@pytest.fixture
async def enrolled(storage: Storage) -> Storage:
    await enroll(storage)
    return storage


async def test_dedupe_within_a_batch_and_across_batches(enrolled: Storage) -> None:
    a, b, c = ids(3)
    assert await enrolled.ingest(AGENT, rows(a, b, a), NOW) == [True, True, False]
    assert await enrolled.ingest(AGENT, rows(b, c), NOW) == [False, True]
    assert await enrolled.count_events(None, None) == 3
    bodies = [e.body for e in await enrolled.list_events(EventFilter())]
    assert len(bodies) == 3


async def test_dedupe_is_permanent_across_reopen(db_url: str) -> None:
    batch = ids(3)
    storage = await open_storage(db_url)
    await enroll(storage)
    assert await storage.ingest(AGENT, rows(*batch[:2]), NOW) == [True, True]
    await storage.close()
    storage = await open_storage(db_url)
    try:
        assert await storage.ingest(AGENT, rows(*batch), NOW) == [False, False, True]
        assert await storage.count_events(AGENT.store_id, "scan") == 3
    finally:
        await storage.close()


async def test_concurrent_overlapping_batches_store_each_event_once(enrolled: Storage) -> None:
    # A retry racing its original (say on two replicas): every id ends up accepted once.
    batch = ids(200)
    results = await asyncio.gather(
        *(enrolled.ingest(AGENT, rows(*batch[i : i + 120]), NOW) for i in (0, 40, 80, 0))
    )
    accepted = sum(sum(r) for r in results)
    assert accepted == 200
    events = await enrolled.list_events(EventFilter(limit=1000))
    assert len(events) == 200
    assert await enrolled.count_events(AGENT.store_id, None) == 200


async def test_a_failed_batch_stores_nothing(enrolled: Storage) -> None:
    bad = EventRow(uuid7_str(), 2**70, "scanner", "scan", NOW, b"{}")  # overflows 64 bits
    with pytest.raises((StorageError, OverflowError)):
        await enrolled.ingest(AGENT, [*rows(uuid7_str()), bad], NOW)
    assert await enrolled.count_events(None, None) == 0
    assert await enrolled.list_events(EventFilter()) == []


async def test_events_page_in_cursor_order_without_gaps(enrolled: Storage) -> None:
    batches = [ids(7) for _ in range(5)]
    for n, batch in enumerate(batches):
        await enrolled.ingest(AGENT, rows(*batch, start=1 + 7 * n), NOW)
    seen: list[int] = []
    after = None
    while page := await enrolled.list_events(EventFilter(after=after, limit=4)):
        seen += [e.cursor for e in page]
        after = page[-1].cursor
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) == 35
    first = await enrolled.list_events(EventFilter(limit=1))
    assert first[0].body == '{"seq": 1}'
    assert first[0].received_at == NOW


async def test_event_filters(enrolled: Storage) -> None:
    other = AgentIdentity("agt-2", "store-2")
    await enroll(enrolled, other, "token-2")
    await enrolled.ingest(AGENT, rows(*ids(3)), NOW)
    await enrolled.ingest(AGENT, rows(*ids(2), kind="coupon.redeemed", start=4), NOW)
    await enrolled.ingest(other, rows(*ids(4)), NOW)

    assert len(await enrolled.list_events(EventFilter(store_id="store-1"))) == 5
    assert len(await enrolled.list_events(EventFilter(store_id="store-1", kind="scan"))) == 3
    assert len(await enrolled.list_events(EventFilter(kind="scan"))) == 7
    assert len(await enrolled.list_events(EventFilter(kind="coupon.redeemed"))) == 2
    assert await enrolled.list_events(EventFilter(since=NOW + timedelta(seconds=1))) == []
    assert len(await enrolled.list_events(EventFilter(since=NOW))) == 9
    assert await enrolled.count_events("store-1", None) == 5
    assert await enrolled.count_events("store-1", "coupon.redeemed") == 2
    assert await enrolled.count_events(None, "scan") == 7
    assert await enrolled.count_events("store-9", None) == 0
    assert await enrolled.count_events(None, None) == 9


async def test_enrollment_codes_are_single_use_and_expire(storage: Storage) -> None:
    first = await issue_enroll_code(storage, "store-9", now=NOW)
    second = await issue_enroll_code(storage, "store-9", ttl=timedelta(hours=1), now=NOW)
    assert (first.store_created, second.store_created) == (True, False)
    who = await storage.enroll(hash_code(first.code), "agt-a", "th-a", {}, NOW)
    assert who == AgentIdentity("agt-a", "store-9")
    refusals = [
        (first.code, NOW, "code_used"),
        ("NOPE-NOPE-NOPE-NOPE", NOW, "code_unknown"),
        (second.code, NOW + timedelta(hours=2), "code_expired"),
    ]
    for code, when, key in refusals:
        with pytest.raises(EnrollmentRefused) as caught:
            await storage.enroll(hash_code(code), "agt-b", "th-b", {}, when)
        assert caught.value.key == key
    assert await storage.authenticate("th-b") is None


async def test_racing_enrollments_spend_a_code_once(storage: Storage) -> None:
    issued = await issue_enroll_code(storage, "store-r", now=NOW)
    outcomes = await asyncio.gather(
        *(storage.enroll(hash_code(issued.code), f"agt-{n}", f"th-{n}", {}, NOW) for n in range(4)),
        return_exceptions=True,
    )
    assert sum(isinstance(o, AgentIdentity) for o in outcomes) == 1
    assert sum(isinstance(o, EnrollmentRefused) for o in outcomes) == 3


async def test_revoked_agent_no_longer_authenticates(enrolled: Storage) -> None:
    assert await enrolled.authenticate("token-hash") == AGENT
    assert await enrolled.revoke_agent(AGENT.agent_id, NOW) is True
    assert await enrolled.revoke_agent(AGENT.agent_id, NOW) is False
    assert await enrolled.authenticate("token-hash") is None


async def test_heartbeats_keep_the_latest_and_honour_the_interval(enrolled: Storage) -> None:
    def beat(at: datetime, backlog: int) -> HeartbeatRecord:
        return HeartbeatRecord(at, backlog, 1.5, {"backlog_events": backlog})

    interval = timedelta(seconds=10)
    assert await enrolled.record_heartbeat(AGENT.agent_id, beat(NOW, 5), interval)
    assert not await enrolled.record_heartbeat(
        AGENT.agent_id, beat(NOW + timedelta(seconds=3), 6), interval
    )
    assert await enrolled.record_heartbeat(AGENT.agent_id, beat(NOW + interval, 7), interval)
    detail = await enrolled.get_store(AGENT.store_id)
    assert detail is not None
    (agent,) = detail.agents
    assert agent.heartbeat == beat(NOW + interval, 7)
    assert agent.agent_info == {"v": 1}
    assert detail.summary.backlog_events == 7
    assert detail.summary.last_heartbeat_at == NOW + interval
    assert await enrolled.get_store("store-none") is None


async def test_rate_limit_admits_a_burst_then_asks_to_wait(storage: Storage) -> None:
    limit = RateLimit(rate=100.0, burst=500.0)
    assert await storage.admit("agt-1", 300, limit, NOW) == 0.0
    assert await storage.admit("agt-1", 200, limit, NOW) == 0.0
    wait = await storage.admit("agt-1", 100, limit, NOW)
    assert wait == pytest.approx(1.0, abs=1e-6)  # 100 units at 100/s
    # A refused request is not charged: after the wait it goes through.
    assert await storage.admit("agt-1", 100, limit, NOW + timedelta(seconds=1)) == 0.0
    assert await storage.admit("agt-2", 500, limit, NOW) == 0.0  # buckets are per key


async def test_store_list_pages_and_filters(storage: Storage) -> None:
    for n in range(12):
        await issue_enroll_code(storage, f"{'north' if n % 2 else 'south'}-{n:02d}", now=NOW)
    await enroll(storage, AgentIdentity("agt-n1", "north-01"), "th-n1")
    await storage.record_heartbeat("agt-n1", HeartbeatRecord(NOW, 0, None, {}))
    names: list[str] = []
    after = None
    while page := await storage.list_stores(StoreFilter(after=after, limit=5)):
        names += [s.store_id for s in page]
        after = page[-1].store_id
    assert names == sorted(names)
    assert len(names) == 12
    north = await storage.list_stores(StoreFilter(prefix="north-"))
    assert [s.store_id for s in north] == [f"north-{n:02d}" for n in range(1, 12, 2)]
    assert north[0].agents == 1
    silent = await storage.list_stores(StoreFilter(prefix="north-", silent_since=NOW))
    assert "north-01" not in [s.store_id for s in silent]
    assert len(silent) == 5
    later = await storage.list_stores(
        StoreFilter(prefix="north-0", silent_since=NOW + timedelta(1))
    )
    assert [s.store_id for s in later] == [
        "north-01",
        "north-03",
        "north-05",
        "north-07",
        "north-09",
    ]


async def test_fleet_stats_and_pool_usage(enrolled: Storage) -> None:
    await enroll(enrolled, AgentIdentity("agt-2", "store-1"), "th-2")
    await enrolled.record_heartbeat("agt-2", HeartbeatRecord(NOW, 0, None, {}))
    stats = await enrolled.fleet_stats(online_since=NOW - timedelta(seconds=90))
    assert (stats.stores, stats.agents, stats.agents_online) == (1, 2, 1)
    usage = enrolled.pool_usage()
    assert usage.size >= 1
    assert usage.busy == 0
    assert usage.waiting == 0


async def test_maintain_is_harmless_and_close_is_idempotent(storage: Storage) -> None:
    await storage.maintain(NOW)
    await storage.maintain(NOW)
    await storage.ping()
    await storage.close()
    await storage.close()
    with pytest.raises(StorageError, match="closed"):
        await storage.ping()


async def test_concurrent_heartbeats_and_logins_each_get_their_own_answer(
    storage: Storage,
) -> None:
    # Backends may group concurrent calls into one statement; answers must not mix.
    agents = [AgentIdentity(f"agt-c{n}", f"store-c{n % 3}") for n in range(40)]
    for n, agent in enumerate(agents):
        await enroll(storage, agent, f"th-c{n}")
    logins = await asyncio.gather(
        *(storage.authenticate(f"th-c{n}") for n in range(40)), storage.authenticate("nope")
    )
    assert logins == [*agents, None]
    interval = timedelta(seconds=30)
    beats = await asyncio.gather(
        *(
            storage.record_heartbeat(a.agent_id, HeartbeatRecord(NOW, n, None, {"n": n}), interval)
            for n, a in enumerate(agents)
        )
    )
    assert beats == [True] * 40
    again = await asyncio.gather(
        *(
            storage.record_heartbeat(a.agent_id, HeartbeatRecord(NOW, 0, None, {}), interval)
            for a in agents[:5]
        )
    )
    assert again == [False] * 5
    detail = await storage.get_store("store-c1")
    assert detail is not None
    assert sorted(a.heartbeat.body["n"] for a in detail.agents if a.heartbeat) == list(
        range(1, 40, 3)
    )


async def test_a_staged_token_works_beside_the_old_until_its_first_use(enrolled: Storage) -> None:
    assert await enrolled.rotate_token(AGENT.agent_id, "th-next", NOW) is True
    # The answer carrying the new token may be lost: the old one keeps working meanwhile.
    assert await enrolled.authenticate("token-hash") == AGENT
    assert await enrolled.authenticate("token-hash") == AGENT
    assert await enrolled.authenticate("th-next") == AGENT
    assert await enrolled.authenticate("token-hash") is None
    assert await enrolled.authenticate("th-next") == AGENT


async def test_staging_again_replaces_an_unused_staged_token(enrolled: Storage) -> None:
    assert await enrolled.rotate_token(AGENT.agent_id, "th-first", NOW)
    assert await enrolled.rotate_token(AGENT.agent_id, "th-second", NOW)
    assert await enrolled.authenticate("th-first") is None
    assert await enrolled.authenticate("token-hash") == AGENT
    assert await enrolled.authenticate("th-second") == AGENT
    assert await enrolled.authenticate("token-hash") is None


async def test_only_an_active_agent_rotates_and_revoking_drops_the_staged_token(
    enrolled: Storage,
) -> None:
    assert await enrolled.rotate_token("agt-unknown", "th-x", NOW) is False
    assert await enrolled.rotate_token(AGENT.agent_id, "th-next", NOW)
    assert await enrolled.revoke_agent(AGENT.agent_id, NOW)
    assert await enrolled.authenticate("th-next") is None
    assert await enrolled.rotate_token(AGENT.agent_id, "th-later", NOW) is False
    assert await enrolled.authenticate("th-later") is None


async def test_concurrent_logins_with_old_and_staged_token_agree(enrolled: Storage) -> None:
    # Backends may look these up in one statement; the staged token is promoted once.
    others = [AgentIdentity(f"agt-o{n}", "store-1") for n in range(3)]
    for n, other in enumerate(others):
        await enroll(enrolled, other, f"th-o{n}")
    await enrolled.rotate_token(AGENT.agent_id, "th-next", NOW)
    logins = await asyncio.gather(
        *(enrolled.authenticate("th-next") for _ in range(5)),
        *(enrolled.authenticate(f"th-o{n}") for n in range(3)),
        enrolled.authenticate("nope"),
    )
    assert logins == [AGENT] * 5 + others + [None]
    assert await enrolled.authenticate("token-hash") is None
    assert await enrolled.authenticate("th-next") == AGENT


async def test_two_replicas_promoting_one_staged_token_both_let_it_in(db_url: str) -> None:
    first, second = await open_storage(db_url), await open_storage(db_url)
    try:
        await enroll(first)
        await first.rotate_token(AGENT.agent_id, "th-next", NOW)
        logins = await asyncio.gather(
            *(storage.authenticate("th-next") for storage in (first, second) for _ in range(3))
        )
        assert logins == [AGENT] * 6
        assert await second.authenticate("token-hash") is None
        assert await first.authenticate("token-hash") is None
    finally:
        await first.close()
        await second.close()


async def test_reenrollment_rekeys_unrevokes_and_keeps_the_agent_row(enrolled: Storage) -> None:
    await enrolled.rotate_token(AGENT.agent_id, "th-staged", NOW)
    await enrolled.revoke_agent(AGENT.agent_id, NOW)
    issued = await issue_enroll_code(enrolled, AGENT.store_id, now=NOW)
    later = NOW + timedelta(minutes=5)
    again = await enrolled.reenroll(
        hash_code(issued.code), AGENT.agent_id, "th-new", {"v": 2}, later
    )
    assert again == AGENT
    assert await enrolled.authenticate("th-new") == AGENT
    assert await enrolled.authenticate("token-hash") is None
    assert await enrolled.authenticate("th-staged") is None
    detail = await enrolled.get_store(AGENT.store_id)
    assert detail is not None
    (row,) = detail.agents
    assert (row.revoked_at, row.agent_info, row.enrolled_at) == (None, {"v": 2}, NOW)
    with pytest.raises(EnrollmentRefused) as caught:
        await enrolled.reenroll(hash_code(issued.code), AGENT.agent_id, "th-3", {}, later)
    assert caught.value.key == "code_used"


async def test_reenrolling_an_unknown_id_registers_it(storage: Storage) -> None:
    issued = await issue_enroll_code(storage, "store-u", now=NOW)
    who = await storage.reenroll(hash_code(issued.code), "agt-lost", "th-lost", {}, NOW)
    assert who == AgentIdentity("agt-lost", "store-u")
    assert await storage.authenticate("th-lost") == who


async def test_reenrollment_never_crosses_stores_and_then_spends_nothing(
    enrolled: Storage,
) -> None:
    issued = await issue_enroll_code(enrolled, "store-2", now=NOW)
    with pytest.raises(EnrollmentRefused, match="belongs to store store-1") as caught:
        await enrolled.reenroll(hash_code(issued.code), AGENT.agent_id, "th-x", {}, NOW)
    assert caught.value.key == "agent_other_store"
    assert await enrolled.authenticate("token-hash") == AGENT
    assert await enrolled.authenticate("th-x") is None
    fresh = await enrolled.enroll(hash_code(issued.code), "agt-2", "th-2", {}, NOW)
    assert fresh == AgentIdentity("agt-2", "store-2")


async def test_racing_reenrollments_of_one_new_id_leave_one_token(storage: Storage) -> None:
    codes = [await issue_enroll_code(storage, "store-r", now=NOW) for _ in range(4)]
    outcomes = await asyncio.gather(
        *(
            storage.reenroll(hash_code(c.code), "agt-r", f"th-r{n}", {}, NOW)
            for n, c in enumerate(codes)
        )
    )
    assert outcomes == [AgentIdentity("agt-r", "store-r")] * 4
    logins = [await storage.authenticate(f"th-r{n}") for n in range(4)]
    assert logins.count(None) == 3
    detail = await storage.get_store("store-r")
    assert detail is not None
    assert len(detail.agents) == 1
