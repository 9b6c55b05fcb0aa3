"""Console storage on PostgreSQL only: events committed out of cursor order, migrations."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest

from cloud.storage.base import AgentIdentity, EventRow
from cloud.storage.postgres import PostgresStorage
from cloud.storage.postgres._ingest import ingest_batch
from cloud.storage.postgres.console import PostgresConsoleStorage
from protocol.ids import uuid7_str

NOW = datetime.now(UTC).replace(microsecond=0)
DB = tuple[PostgresStorage, PostgresConsoleStorage]


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[DB]:
    storage = await PostgresStorage.open(postgres_url)
    console = await PostgresConsoleStorage.open(postgres_url)
    yield storage, console
    await console.close()
    await storage.close()


def scan(seq: int) -> EventRow:
    body = orjson.dumps({"kind": "scan", "payload": {"classification": "product", "text": "x"}})
    return EventRow(uuid7_str(), seq, "scanner-front", "scan", NOW, body)


async def test_an_event_committed_after_a_later_cursor_is_counted_and_tailed(
    db: DB, postgres_url: str
) -> None:
    storage, console = db
    await storage.add_enroll_code("store-a", "code-a", NOW + timedelta(days=1), NOW)
    agent: AgentIdentity = await storage.enroll("code-a", "agt-a", "tok-a", {}, NOW)
    slow = await asyncpg.connect(postgres_url)
    try:
        # A batch whose transaction started first (smaller xid, so smaller cursor) but
        # commits after a later batch: the watermark must not pass it while it is open.
        async with slow.transaction():
            await slow.fetchval("SELECT pg_current_xact_id()")
            await storage.ingest(agent, [scan(2)], NOW)
            assert await console.aggregate_events(NOW, 100) == 0
            assert await console.latest_events("store-a", None, 10) == []
            await ingest_batch(slow, agent, [scan(1)], NOW)
        assert await console.aggregate_events(NOW, 100) == 2
    finally:
        await slow.close()
    assert await console.aggregate_events(NOW, 100) == 0
    tail = await console.events_after("store-a", 0, 10)
    assert [orjson.loads(e.body)["kind"] for e in tail] == ["scan", "scan"]
    assert tail[0].cursor < tail[1].cursor
    [stats] = await console.scan_stats("store-a", NOW - timedelta(hours=1))
    assert stats.scans == 2


async def test_the_console_opens_alone_on_an_empty_database(postgres_url: str) -> None:
    # The `console` CLI opens only the console storage: it must bring the schema up itself.
    console = await PostgresConsoleStorage.open(postgres_url)
    try:
        assert await console.live_version() == (0, 0, 0)
        assert await console.list_users() == []
    finally:
        await console.close()
