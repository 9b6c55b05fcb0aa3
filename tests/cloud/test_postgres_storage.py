"""PostgreSQL backend beyond the shared contract: migrations, partitions, retention, cursors,
and token promotion racing other replicas."""

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from cloud.credentials import hash_code
from cloud.errors import EnrollmentRefused, StorageError
from cloud.fleet import issue_enroll_code
from cloud.storage.base import AgentIdentity, EventFilter, EventRow
from cloud.storage.postgres import PostgresStorage
from cloud.storage.postgres._migrate import load_migrations
from cloud.storage.postgres._partitions import DAYS_AHEAD, attached_days, day_of
from protocol.ids import uuid7_str

NOW = datetime.now(UTC)
AGENT = AgentIdentity("agt-1", "store-1")


def rows(event_ids: list[str], when: datetime = NOW) -> list[EventRow]:
    return [
        EventRow(event_id, seq, "scanner", "scan", when, b"{}")
        for seq, event_id in enumerate(event_ids, start=1)
    ]


async def open_enrolled(url: str) -> PostgresStorage:
    storage = await PostgresStorage.open(url)
    issued = await issue_enroll_code(storage, AGENT.store_id, now=NOW)
    await storage.enroll(hash_code(issued.code), AGENT.agent_id, "th", {}, NOW)
    return storage


async def test_migrations_apply_once_even_when_replicas_start_together(postgres_url: str) -> None:
    opened = await asyncio.gather(*(PostgresStorage.open(postgres_url) for _ in range(3)))
    try:
        applied = sorted(len(s.applied) for s in opened)
        assert applied == [0, 0, len(load_migrations())]
        conn = await asyncpg.connect(postgres_url)
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        finally:
            await conn.close()
        assert sorted(versions) == list(range(1, len(load_migrations()) + 1))
    finally:
        for storage in opened:
            await storage.close()


async def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    storage = await PostgresStorage.open(postgres_url)
    await storage.close()
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (99, 'future')")
    finally:
        await conn.close()
    with pytest.raises(StorageError, match="schema version 99 is newer than this build"):
        await PostgresStorage.open(postgres_url)


async def test_maintenance_keeps_partitions_ahead(postgres_url: str) -> None:
    storage = await PostgresStorage.open(postgres_url)
    try:
        await storage.maintain(NOW)
        conn = await asyncpg.connect(postgres_url)
        try:
            days = await attached_days(conn)
        finally:
            await conn.close()
        today = day_of(NOW)
        assert days == [today + timedelta(days=n) for n in range(-1, DAYS_AHEAD + 1)]
    finally:
        await storage.close()


async def test_retention_drops_old_days_but_dedupe_outlives_them(postgres_url: str) -> None:
    storage = await open_enrolled(postgres_url)
    try:
        old_ids, new_ids = [uuid7_str() for _ in range(4)], [uuid7_str() for _ in range(3)]
        long_ago = NOW - timedelta(days=40)
        # No partition exists for that day: ingest makes it rather than fail.
        assert await storage.ingest(AGENT, rows(old_ids), long_ago) == [True] * 4
        assert await storage.ingest(AGENT, rows(new_ids), NOW) == [True] * 3
        assert await storage.count_events(AGENT.store_id, None) == 7

        await storage.set_retention(30)
        assert await storage.retention_days() == 30
        (dropped,) = await storage.apply_retention(NOW)
        assert (dropped.day, dropped.events) == (day_of(long_ago), 4)
        assert await storage.apply_retention(NOW) == []

        assert await storage.count_events(AGENT.store_id, "scan") == 3
        assert len(await storage.list_events(EventFilter())) == 3
        detail = await storage.get_store(AGENT.store_id)
        assert detail is not None
        assert detail.summary.events_total == 3
        assert detail.agents[0].events_total == 3
        # A retry of a dropped event years later is still a duplicate, never stored again.
        assert await storage.ingest(AGENT, rows(old_ids), NOW) == [False] * 4
        await storage.set_retention(None)
        assert await storage.retention_days() is None
    finally:
        await storage.close()


async def test_listing_holds_back_rows_an_older_open_transaction_could_precede(
    postgres_url: str,
) -> None:
    storage = await open_enrolled(postgres_url)
    blocker = await asyncpg.connect(postgres_url)
    try:
        first = uuid7_str()
        await storage.ingest(AGENT, rows([first]), NOW)
        # An open transaction with an xid, as a slow ingest on another replica would be:
        # rows committed after it started may get larger cursors than the rows it will add.
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.fetchval("SELECT pg_current_xact_id()")
        await storage.ingest(AGENT, rows([uuid7_str()]), NOW)
        visible = await storage.list_events(EventFilter())
        assert len(visible) == 1  # the newer row waits until the older transaction ends
        await transaction.commit()
        after = await storage.list_events(EventFilter(after=visible[-1].cursor))
        assert len(after) == 1
        assert await storage.count_events(None, None) == 2
    finally:
        await blocker.close()
        await storage.close()


async def test_a_refusal_keeps_its_pooled_connection(postgres_url: str) -> None:
    # Only a cancellation mid-statement may leave a session dirty; a refusal must not cost
    # the pool a connection (a burst of bad enrollment codes would churn them all).
    storage = await PostgresStorage.open(postgres_url, pool_size=1)
    try:
        async with storage.connection() as conn:
            before = await conn.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(EnrollmentRefused):
            await storage.enroll("unknown-code-hash", "agt-x", "th-x", {}, NOW)
        async with storage.connection() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == before
    finally:
        await storage.close()


async def wait_for_a_lock_wait(conn: asyncpg.Connection) -> None:
    """Return once a pooled connection of this database waits on a lock (5 s at most)."""
    for _ in range(500):
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'storeedge-cloud' AND wait_event_type = 'Lock'"
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no connection ever waited on a lock")


@pytest.mark.parametrize(
    ("meanwhile", "staged", "old"),
    [
        # Another replica promoted it first: it is the current token now, so it still works.
        ("SET token_hash = next_token_hash, next_token_hash = NULL", AGENT, None),
        # Revoked, or staged again, while this login was on its way: no longer valid (and
        # the old token stays the current one of an agent staged again).
        ("SET revoked_at = now(), next_token_hash = NULL", None, None),
        ("SET next_token_hash = 'th-other'", None, AGENT),
    ],
)
async def test_a_staged_token_changed_during_its_promotion_answers_by_the_change(
    postgres_url: str, meanwhile: str, staged: AgentIdentity | None, old: AgentIdentity | None
) -> None:
    storage = await open_enrolled(postgres_url)
    other = await asyncpg.connect(postgres_url)
    try:
        await storage.rotate_token(AGENT.agent_id, "th-next", NOW)
        # The other replica's change holds the row lock: this login's lookup still sees the
        # staged token, and its promoting UPDATE waits, then re-checks the changed row.
        transaction = other.transaction()
        await transaction.start()
        await other.execute(f"UPDATE agents {meanwhile} WHERE agent_id = $1", AGENT.agent_id)
        login = asyncio.create_task(storage.authenticate("th-next"))
        await wait_for_a_lock_wait(other)
        await transaction.commit()
        assert await login == staged
        assert await storage.authenticate("th") == old
        assert await storage.authenticate("th-next") == staged
    finally:
        await other.close()
        await storage.close()


def test_migrate_and_retention_commands(postgres_url: str) -> None:
    storeedge = [sys.executable, "-m", "agent.cli.main", "cloud"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*storeedge, *args], capture_output=True, text=True, timeout=60)

    first = run("migrate", "--db", postgres_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"schema version {len(load_migrations())}\n"
    assert "applied 0001_fleet" in first.stderr
    again = run("migrate", "--db", postgres_url)
    assert "nothing to apply" in again.stderr
    keep = run("retention", "--db", postgres_url, "--keep-days", "90", "--apply")
    assert keep.returncode == 0, keep.stderr
    assert keep.stdout == "retention: keep 90 days\n"
    shown = run("retention", "--db", postgres_url)
    assert shown.stdout == "retention: keep 90 days\n"
    sqlite = run("retention", "--db", "sqlite:///x.db")
    assert sqlite.returncode == 2
    assert "retention needs PostgreSQL" in sqlite.stderr
