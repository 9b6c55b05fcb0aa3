"""Console storage on both backends: roll-up, exactly-once counting and alerting across replicas."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from cloud.console.app import open_console_storage
from cloud.console.rules import RULES as RULE_INFO
from cloud.errors import UsageError
from cloud.storage import Storage, open_storage
from cloud.storage._console_rollup import RULES_SQL
from cloud.storage.base import AgentIdentity, EventRow, HeartbeatRecord
from cloud.storage.console import (
    AlertQuery,
    AlertThresholds,
    ConsoleStorage,
    FleetQuery,
    FleetRow,
    FleetThresholds,
    UserRecord,
)
from cloud.storage.console_sqlite import SqliteConsoleStorage
from cloud.storage.postgres.console_rollup import RULES as PG_RULES
from protocol.ids import uuid7_str

NOW = datetime.now(UTC).replace(microsecond=0)
RULES = AlertThresholds(
    agent_offline_s=300, backlog_age_s=900, unrecognised_ratio=0.3,
    unrecognised_min_scans=10, unrecognised_window_s=3600,
)  # fmt: skip
SCANNER = {"device_id": "scanner-front", "kind": "scanner", "state": "online",
           "condition": "connected"}  # fmt: skip
REFUSAL = {"settings_version": 7, "config_hash": "ab" * 16, "at": NOW.isoformat(),
           "reason": "devices.scanner-9: no such device on this box"}  # fmt: skip


DB = tuple[Storage, ConsoleStorage]


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[DB]:
    """The ingest storage and a console storage on one database of each backend."""
    storage = await open_storage(db_url)
    console = await open_console_storage(db_url)
    yield storage, console
    await console.close()
    await storage.close()


@pytest.fixture
async def second(db: DB, db_url: str) -> AsyncIterator[ConsoleStorage]:
    """Another replica's console storage on the same database."""
    console = await open_console_storage(db_url)
    yield console
    await console.close()


async def row_of(console: ConsoleStorage, store_id: str) -> FleetRow:
    row = await console.fleet_row(store_id)
    assert row is not None, f"{store_id} is not in the roll-up"
    return row


async def login_of(console: ConsoleStorage, username: str) -> tuple[UserRecord, str]:
    found = await console.user_login(username)
    assert found is not None
    return found


async def enroll(storage: Storage, store_id: str, at: datetime = NOW) -> AgentIdentity:
    await storage.add_enroll_code(store_id, f"code-{store_id}", at + timedelta(days=1), at)
    return await storage.enroll(f"code-{store_id}", f"agt-{store_id}", f"tok-{store_id}", {}, at)


async def beat(
    storage: Storage,
    agent: AgentIdentity,
    at: datetime = NOW,
    backlog: int = 0,
    age: float | None = None,
    devices: list[dict[str, str]] | None = None,
    dead: int = 0,
    config_error: dict[str, Any] | None = None,
) -> None:
    body = {"version": "1.2.3", "clock_offset_s": -0.25, "dead_letters": dead,
            "devices": devices if devices is not None else [SCANNER],
            "config_error": config_error}  # fmt: skip
    await storage.record_heartbeat(agent.agent_id, HeartbeatRecord(at, backlog, age, body))


async def scans(storage: Storage, agent: AgentIdentity, good: int, bad: int,
                at: datetime = NOW, seq0: int = 0) -> None:  # fmt: skip
    rows = []
    for i in range(good + bad):
        payload = {"text": f"<script>{i}</script>", "reason": "no GTIN",
                   "classification": "product" if i < good else "unrecognised"}  # fmt: skip
        body = orjson.dumps({"kind": "scan", "payload": payload})
        rows.append(EventRow(uuid7_str(), seq0 + i + 1, "scanner-front", "scan", at, body))
    await storage.ingest(agent, rows, at)


async def test_the_roll_up_reflects_heartbeats_events_and_new_stores(db: DB) -> None:
    storage, console = db
    agent = await enroll(storage, "store-a")
    await storage.add_enroll_code("store-b", "code-b", NOW + timedelta(days=1), NOW)
    await beat(storage, agent, backlog=7, age=120.0, dead=2,
               devices=[SCANNER, {**SCANNER, "device_id": "printer", "kind": "printer",
                                  "state": "degraded", "condition": "paper_out"}])  # fmt: skip
    await scans(storage, agent, good=3, bad=2)
    assert await console.refresh_fleet(NOW) == 2  # store-a changed, store-b new
    assert await console.aggregate_events(NOW, 100) == 5
    a = await console.fleet_row("store-a")
    assert a is not None
    assert (a.agents, a.backlog_events, a.device_faults, a.dead_letters) == (1, 7, 1, 2)
    assert a.last_seen_at == NOW
    assert a.oldest_unsynced_at == NOW - timedelta(seconds=120)
    assert (a.version, a.clock_offset_s, a.events_today, a.last_event_at) == (
        "1.2.3",
        -0.25,
        5,
        NOW,
    )
    b = await console.fleet_row("store-b")
    assert b is not None
    assert b.agents == 0
    assert b.last_seen_at is None
    devices = {d.device_id: d for d in await console.store_devices("store-a")}
    assert devices["printer"].condition == "paper_out"
    [stats] = await console.scan_stats("store-a", NOW - timedelta(hours=1))
    assert (stats.scans, stats.unrecognised) == (5, 2)
    examples = await console.scan_examples("store-a", 10)
    assert [e.text for e in examples] == ["<script>4</script>", "<script>3</script>"]
    # Nothing new: a second round changes nothing and counts nothing twice.
    assert await console.aggregate_events(NOW, 100) == 0
    assert (await row_of(console, "store-a")).events_today == 5


async def test_a_revoked_agent_leaves_the_roll_up(db: DB) -> None:
    storage, console = db
    agent = await enroll(storage, "store-a")
    await beat(storage, agent)
    await console.refresh_fleet(NOW)
    await storage.revoke_agent(agent.agent_id, NOW + timedelta(seconds=1))
    await console.refresh_fleet(NOW + timedelta(seconds=1))
    row = await console.fleet_row("store-a")
    assert row is not None
    assert row.agents == 0
    assert row.last_seen_at is None
    assert await console.store_devices("store-a") == []


async def test_a_device_the_heartbeat_stops_reporting_leaves_the_store(db: DB) -> None:
    storage, console = db
    agent = await enroll(storage, "store-a")
    printer = {**SCANNER, "device_id": "printer", "kind": "printer", "state": "degraded",
               "condition": "paper_out"}  # fmt: skip
    await beat(storage, agent, devices=[SCANNER, printer])
    await console.refresh_fleet(NOW)
    assert (await row_of(console, "store-a")).device_faults == 1
    later = NOW + timedelta(seconds=30)
    await beat(storage, agent, at=later, devices=[{**SCANNER, "state": "offline"}])
    await console.refresh_fleet(later)
    [scanner] = await console.store_devices("store-a")
    assert (scanner.device_id, scanner.state, scanner.updated_at) == (
        "scanner-front",
        "offline",
        later,
    )
    assert (await row_of(console, "store-a")).device_faults == 1


async def test_two_replicas_counting_at_once_count_every_event_exactly_once(
    db: DB, second: ConsoleStorage
) -> None:
    storage, first = db
    agent = await enroll(storage, "store-a")
    for batch in range(10):
        await scans(storage, agent, good=40, bad=10, seq0=batch * 50)
        # Both replicas race in small chunks while the next batch is being written.
        await asyncio.gather(
            *(s.aggregate_events(NOW, 7) for s in (first, second) for _ in range(6))
        )
    while await first.aggregate_events(NOW, 100) or await second.aggregate_events(NOW, 100):
        pass
    [stats] = await second.scan_stats("store-a", NOW - timedelta(hours=1))
    assert (stats.scans, stats.unrecognised) == (500, 100)
    counts = {
        c.kind: c.count for c in await first.hourly_counts("store-a", NOW - timedelta(hours=1))
    }
    assert counts["events"] == counts["scan"] == 500


async def test_two_replicas_evaluating_at_once_open_one_alert_per_condition(
    db: DB, second: ConsoleStorage
) -> None:
    storage, first = db
    for store in ("store-a", "store-b"):
        agent = await enroll(storage, store)
        await beat(storage, agent, devices=[{**SCANNER, "state": "offline",
                                             "condition": "disconnected"}])  # fmt: skip
    await first.refresh_fleet(NOW)
    results = await asyncio.gather(
        *(s.evaluate_alerts(RULES, NOW) for s in (first, second) for _ in range(5))
    )
    assert sum(r.opened for r in results) == 2
    alerts, total = await second.list_alerts(AlertQuery())
    assert total == 2
    assert {(a.rule, a.store_id, a.device_id) for a in alerts} == {
        ("scanner_disconnected", "store-a", "scanner-front"),
        ("scanner_disconnected", "store-b", "scanner-front"),
    }


async def test_two_replicas_running_whole_rounds_while_agents_write_agree_exactly(
    db: DB, second: ConsoleStorage
) -> None:
    storage, first = db
    offline = {**SCANNER, "state": "offline", "condition": "disconnected"}
    agents = [await enroll(storage, f"store-{i}") for i in range(4)]
    writing = True

    async def agents_write() -> None:
        nonlocal writing
        for batch in range(8):
            for i, agent in enumerate(agents):
                await beat(storage, agent, at=NOW + timedelta(seconds=batch),
                           devices=[offline if i % 2 else SCANNER])  # fmt: skip
                await scans(storage, agent, good=4, bad=1, seq0=batch * 5)
            await asyncio.sleep(0)
        writing = False

    async def replica(console: ConsoleStorage) -> list[int]:
        opened = []
        while writing:
            await console.refresh_fleet(NOW)
            await console.aggregate_events(NOW, 9)
            opened.append((await console.evaluate_alerts(RULES, NOW)).opened)
        return opened

    _, opened_a, opened_b = await asyncio.gather(agents_write(), replica(first), replica(second))
    await first.refresh_fleet(NOW + timedelta(seconds=8))
    while await second.aggregate_events(NOW, 100):
        pass
    last = await first.evaluate_alerts(RULES, NOW)
    for agent in agents:
        [stats] = await first.scan_stats(agent.store_id, NOW - timedelta(hours=1))
        assert (stats.scans, stats.unrecognised) == (40, 8)
        assert (await row_of(second, agent.store_id)).events_today == 40
    alerts, total = await first.list_alerts(AlertQuery())
    assert sorted((a.rule, a.store_id) for a in alerts) == [
        ("scanner_disconnected", "store-1"),
        ("scanner_disconnected", "store-3"),
    ]
    assert sum(opened_a) + sum(opened_b) + last.opened == total == 2


async def test_alert_lifecycle_open_acknowledged_resolved_and_reopened(db: DB) -> None:
    storage, console = db
    agent = await enroll(storage, "store-a")
    await beat(storage, agent)
    await console.refresh_fleet(NOW)
    assert (await console.evaluate_alerts(RULES, NOW)).opened == 0
    later = NOW + timedelta(minutes=6)  # past the 5 min offline threshold
    assert (await console.evaluate_alerts(RULES, later)).opened == 1
    [alert], _ = await console.list_alerts(AlertQuery(store_id="store-a"))
    assert (alert.rule, alert.state) == ("agent_offline", "open")
    assert (await row_of(console, "store-a")).active_alerts == 1
    assert await console.acknowledge_alert(alert.alert_id, "eve", later)
    assert not await console.acknowledge_alert(alert.alert_id, "eve", later)  # not open any more
    assert (await console.evaluate_alerts(RULES, later)).opened == 0  # still firing, still acked
    [acked], _ = await console.list_alerts(AlertQuery())
    assert (acked.state, acked.acknowledged_by) == ("acknowledged", "eve")
    await beat(storage, agent, at=later)  # the agent is back
    await console.refresh_fleet(later)
    assert (await console.evaluate_alerts(RULES, later)).resolved == 1
    assert (await console.list_alerts(AlertQuery()))[1] == 0
    [resolved], _ = await console.list_alerts(AlertQuery(state="resolved"))
    assert resolved.resolved_at == later
    assert (await row_of(console, "store-a")).active_alerts == 0
    # It goes silent again: a new alert, the resolved one stays resolved.
    assert (await console.evaluate_alerts(RULES, later + timedelta(minutes=6))).opened == 1
    assert (await console.list_alerts(AlertQuery(state="resolved")))[1] == 1


@pytest.mark.parametrize(
    ("heartbeat", "events", "rule"),
    [
        ({"backlog": 50, "age": 1000.0}, (0, 0), "backlog_age"),
        ({"devices": [{**SCANNER, "device_id": "p", "kind": "printer", "state": "degraded",
                       "condition": "paper_out"}]}, (0, 0), "printer_paper_out"),
        ({"devices": [{**SCANNER, "device_id": "p", "kind": "printer", "state": "degraded",
                       "condition": "cover_open"}]}, (0, 0), "printer_cover_open"),
        ({"devices": [{**SCANNER, "state": "offline", "condition": "disconnected"}]}, (0, 0),
         "scanner_disconnected"),
        ({}, (6, 4), "unrecognised_scans"),
        ({"dead": 3}, (0, 0), "dead_letters"),
        ({"config_error": REFUSAL}, (0, 0), "config_refused"),
    ],
)  # fmt: skip
async def test_each_rule_fires_on_its_condition_only(
    db: DB, heartbeat: dict[str, Any], events: tuple[int, int], rule: str
) -> None:
    storage, console = db
    agent = await enroll(storage, "store-a")
    await beat(storage, agent, **heartbeat)
    await scans(storage, agent, *events)
    await console.refresh_fleet(NOW)
    await console.aggregate_events(NOW, 1000)
    await console.evaluate_alerts(RULES, NOW)
    alerts, _ = await console.list_alerts(AlertQuery())
    assert [a.rule for a in alerts] == [rule]


def test_every_rule_the_backends_evaluate_is_explained_on_the_alerts_page() -> None:
    assert set(RULES_SQL) == set(PG_RULES) == set(RULE_INFO)


async def test_a_refused_config_opens_an_alert_that_resolves_when_the_agent_applies_one(
    db: DB,
) -> None:
    storage, console = db
    agent = await enroll(storage, "store-a")
    healthy = await enroll(storage, "store-b")
    await beat(storage, healthy)
    await beat(storage, agent, config_error=REFUSAL)
    await console.refresh_fleet(NOW)
    assert (await console.evaluate_alerts(RULES, NOW)).opened == 1
    alerts, _ = await console.list_alerts(AlertQuery(rule="config_refused"))
    assert [(a.store_id, a.device_id, a.state) for a in alerts] == [("store-a", "", "open")]
    assert alerts[0].summary == (
        "The agent refused settings v7: devices.scanner-9: no such device on this box"
    )
    # Heartbeats that keep reporting the refusal keep the one alert open.
    later = NOW + timedelta(seconds=30)
    await beat(storage, agent, at=later, config_error=REFUSAL)
    await console.refresh_fleet(later)
    assert (await console.evaluate_alerts(RULES, later)).opened == 0
    # The agent applied a fixed config: its heartbeat carries no refusal any more.
    healed = later + timedelta(seconds=30)
    await beat(storage, agent, at=healed)
    await console.refresh_fleet(healed)
    assert (await console.evaluate_alerts(RULES, healed)).resolved == 1
    assert (await console.list_alerts(AlertQuery(rule="config_refused")))[1] == 0
    resolved, _ = await console.list_alerts(AlertQuery("resolved", rule="config_refused"))
    assert [a.store_id for a in resolved] == ["store-a"]


async def test_unrecognised_ratio_needs_enough_scans_and_a_high_share(db: DB) -> None:
    storage, console = db
    agent = await enroll(storage, "store-a")
    await beat(storage, agent)
    await scans(storage, agent, good=3, bad=5)  # 62 % but only 8 scans
    await scans(storage, agent, good=0, bad=0)
    await console.refresh_fleet(NOW)
    await console.aggregate_events(NOW, 1000)
    assert (await console.evaluate_alerts(RULES, NOW)).opened == 0
    await scans(storage, agent, good=20, bad=2, seq0=8)  # 30 scans, 7 bad = 23 %
    await console.aggregate_events(NOW, 1000)
    assert (await console.evaluate_alerts(RULES, NOW)).opened == 0


async def test_the_lease_has_one_holder_until_released_or_expired(db: DB) -> None:
    _, console = db
    assert await console.acquire_lease("eval", "a", NOW, 30)
    assert not await console.acquire_lease("eval", "b", NOW + timedelta(seconds=29), 30)
    assert await console.acquire_lease("eval", "a", NOW + timedelta(seconds=29), 30)  # renewed
    assert not await console.acquire_lease("eval", "b", NOW + timedelta(seconds=58), 30)
    assert await console.acquire_lease("eval", "b", NOW + timedelta(seconds=60), 30)  # expired
    await console.release_lease("eval", "a")  # not a's any more: no effect
    assert not await console.acquire_lease("eval", "a", NOW + timedelta(seconds=61), 30)
    await console.release_lease("eval", "b")
    assert await console.acquire_lease("eval", "a", NOW + timedelta(seconds=61), 30)


async def test_fleet_query_filters_sorts_pages_and_counts(db: DB) -> None:
    storage, console = db
    # 25 stores: every 5th offline (10 min silent), every 4th with backlog, every 3rd a fault.
    for i in range(25):
        agent = await enroll(storage, f"store-{i:02d}")
        seen = NOW - timedelta(minutes=10 if i % 5 == 0 else 0)
        devices = [{**SCANNER, "state": "offline"}] if i % 3 == 0 else [SCANNER]
        await beat(storage, agent, at=seen, backlog=i if i % 4 == 0 else 0, age=60.0,
                   devices=devices)  # fmt: skip
    await storage.add_enroll_code("lonely", "code-lonely", NOW + timedelta(days=1), NOW)
    await console.refresh_fleet(NOW)
    th = FleetThresholds(NOW, 90, 300)
    page = await console.fleet_page(FleetQuery(th, limit=10))
    t = page.totals
    assert (t.stores, t.online, t.offline, t.no_agent, t.stale) == (26, 20, 5, 1, 0)
    assert (t.with_faults, t.with_backlog, t.backlog_events) == (
        9,
        6,
        0 + 4 + 8 + 12 + 16 + 20 + 24,
    )
    assert [r.store_id for r in page.rows] == ["lonely"] + [f"store-{i:02d}" for i in range(9)]
    last = await console.fleet_page(FleetQuery(th, limit=10, offset=20))
    assert len(last.rows) == 6
    assert last.matching == 26
    offline = await console.fleet_page(FleetQuery(th, status="offline"))
    assert [r.store_id for r in offline.rows] == [f"store-{i:02d}" for i in (0, 5, 10, 15, 20)]
    both = await console.fleet_page(FleetQuery(th, faults=True, backlog=True))
    assert [r.store_id for r in both.rows] == ["store-12", "store-24"]  # store-00's backlog is 0
    assert both.matching == 2
    by_backlog = await console.fleet_page(FleetQuery(th, sort="backlog", descending=True, limit=3))
    assert [r.backlog_events for r in by_backlog.rows] == [24, 20, 16]
    by_seen = await console.fleet_page(FleetQuery(th, sort="seen", limit=5))
    assert [r.store_id for r in by_seen.rows] == [f"store-{i:02d}" for i in (0, 5, 10, 15, 20)]
    never_last = await console.fleet_page(FleetQuery(th, sort="seen", offset=25))
    assert [r.store_id for r in never_last.rows] == ["lonely"]
    search = await console.fleet_page(FleetQuery(th, search="re-1"))
    assert search.matching == 10
    literal = await console.fleet_page(FleetQuery(th, search="%"))
    assert literal.matching == 0  # LIKE wildcards in the search are literal characters


async def test_accounts_sessions_and_the_last_admin(db: DB) -> None:
    _, console = db
    admin = await console.add_user("Ada", "h1", "admin", NOW)
    with pytest.raises(UsageError, match="already exists"):
        await console.add_user("ada", "h2", "viewer", NOW)
    with pytest.raises(UsageError, match="without an active admin"):
        await console.update_user("ada", NOW, role="viewer")
    with pytest.raises(UsageError, match="without an active admin"):
        await console.update_user("ADA", NOW, disabled=True)
    await console.create_session("s1", admin.user_id, "csrf", NOW, NOW + timedelta(hours=1))
    session = await console.get_session("s1", NOW, idle_s=600)
    assert session is not None
    assert session.user.username == "Ada"
    assert session.csrf_token == "csrf"
    assert await console.get_session("s1", NOW + timedelta(minutes=11), idle_s=600) is None
    assert await console.get_session("s1", NOW + timedelta(hours=2), idle_s=99999) is None
    await console.add_user("bob", "h3", "admin", NOW)
    await console.update_user("ada", NOW, password_hash="new")  # ends her sessions
    assert await console.get_session("s1", NOW, idle_s=600) is None
    assert (await login_of(console, "ADA"))[1] == "new"
    await console.update_user("ada", NOW, disabled=True)  # bob is still an admin
    assert not (await login_of(console, "ada"))[0].active


async def test_prune_drops_old_counts_and_resolved_alerts(db: DB) -> None:
    storage, console = db
    agent = await enroll(storage, "store-a")
    old = NOW - timedelta(days=10)
    await beat(storage, agent, at=old)
    await scans(storage, agent, good=1, bad=0, at=old)
    await console.refresh_fleet(old)
    await console.aggregate_events(old, 100)
    await console.evaluate_alerts(RULES, old + timedelta(minutes=6))
    await beat(storage, agent, at=old + timedelta(minutes=7))
    await console.refresh_fleet(old + timedelta(minutes=7))
    await console.evaluate_alerts(RULES, old + timedelta(minutes=7))
    assert (await console.list_alerts(AlertQuery(state="resolved")))[1] == 1
    await console.prune(NOW - timedelta(days=8), NOW)
    assert (await console.list_alerts(AlertQuery(state="resolved")))[1] == 0
    assert await console.hourly_counts("store-a", old - timedelta(days=1)) == []


async def test_a_memory_database_is_refused_with_a_reason() -> None:
    with pytest.raises(UsageError, match="database file"):
        await SqliteConsoleStorage.open(":memory:")
