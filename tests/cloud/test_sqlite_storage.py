"""SQLite backend directly: permanent dedupe, migrations, lifecycle, URL selection."""

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.errors import EnrollmentRefused, StorageError, UsageError
from cloud.fleet import issue_enroll_code
from cloud.storage import open_storage, sqlite_path
from cloud.storage._schema import MIGRATIONS
from cloud.storage.base import AgentIdentity, EventFilter, EventRow
from cloud.storage.sqlite import SqliteStorage
from protocol.ids import uuid7_str

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
AGENT = AgentIdentity("agt-1", "store-1")


def rows(*event_ids: str) -> list[EventRow]:
    return [
        EventRow(event_id, seq, "scanner", "scan", NOW, b'{"n": %d}' % seq)
        for seq, event_id in enumerate(event_ids, start=1)
    ]


async def enrolled(storage: SqliteStorage) -> None:
    issued = await issue_enroll_code(storage, AGENT.store_id, now=NOW)
    from cloud.credentials import hash_code

    await storage.enroll(hash_code(issued.code), AGENT.agent_id, "token-hash", {}, NOW)


async def test_dedupe_is_permanent_across_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "cloud.db")
    ids = [uuid7_str() for _ in range(3)]
    storage = await SqliteStorage.open(path)
    await enrolled(storage)
    assert await storage.ingest(AGENT, rows(*ids[:2]), NOW) == [True, True]
    await storage.close()

    storage = await SqliteStorage.open(path)
    try:
        assert await storage.ingest(AGENT, rows(*ids), NOW) == [False, False, True]
        assert await storage.count_events(AGENT.store_id, None) == 3
        assert await storage.count_events(AGENT.store_id, "scan") == 3
        (summary,) = await storage.list_stores()
        assert summary.events_total == 3
    finally:
        await storage.close()


async def test_a_failed_batch_stores_nothing(tmp_path: Path) -> None:
    storage = await SqliteStorage.open(str(tmp_path / "cloud.db"))
    try:
        await enrolled(storage)
        bad = EventRow(uuid7_str(), 2**70, "scanner", "scan", NOW, b"{}")  # overflows INTEGER
        with pytest.raises(OverflowError):
            await storage.ingest(AGENT, [*rows(uuid7_str()), bad], NOW)
        assert await storage.count_events(None, "scan") == 0
        assert await storage.list_events(EventFilter()) == []
    finally:
        await storage.close()


async def test_enroll_refusal_leaves_no_agent(tmp_path: Path) -> None:
    storage = await SqliteStorage.open(str(tmp_path / "cloud.db"))
    try:
        with pytest.raises(EnrollmentRefused) as caught:
            await storage.enroll("no-such-hash", "agt-x", "th", {}, NOW)
        assert caught.value.status == 403
        assert await storage.authenticate("th") is None
    finally:
        await storage.close()


async def test_revoked_agent_no_longer_authenticates(tmp_path: Path) -> None:
    storage = await SqliteStorage.open(str(tmp_path / "cloud.db"))
    try:
        await enrolled(storage)
        assert await storage.authenticate("token-hash") == AGENT
        assert await storage.revoke_agent(AGENT.agent_id, NOW) is True
        assert await storage.revoke_agent(AGENT.agent_id, NOW) is False
        assert await storage.authenticate("token-hash") is None
    finally:
        await storage.close()


async def test_schema_is_versioned_and_reopen_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "cloud.db"
    for _ in range(2):
        storage = await SqliteStorage.open(str(path))
        await storage.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cloud.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StorageError, match="newer than this build"):
        await SqliteStorage.open(str(path))


async def test_close_is_idempotent_and_ends_the_thread(tmp_path: Path) -> None:
    path = str(tmp_path / "cloud.db")

    def own() -> list[threading.Thread]:
        # By name, not by count: another test's threads may still be ending meanwhile.
        return [t for t in threading.enumerate() if t.name == f"cloud-sqlite:{path}"]

    storage = await SqliteStorage.open(path)
    assert len(own()) == 1
    await storage.close()
    await storage.close()
    assert own() == []
    with pytest.raises(StorageError, match="closed"):
        await storage.ping()


async def test_expired_codes_and_store_creation(tmp_path: Path) -> None:
    storage = await SqliteStorage.open(str(tmp_path / "cloud.db"))
    try:
        first = await issue_enroll_code(storage, "store-9", now=NOW)
        second = await issue_enroll_code(storage, "store-9", ttl=timedelta(hours=1), now=NOW)
        assert (first.store_created, second.store_created) == (True, False)
        assert second.expires_at == NOW + timedelta(hours=1)
        with pytest.raises(UsageError, match="invalid store id"):
            await issue_enroll_code(storage, "no spaces please")
    finally:
        await storage.close()


async def test_open_storage_picks_the_backend_by_scheme(tmp_path: Path) -> None:
    storage = await open_storage(f"sqlite:///{tmp_path / 'x.db'}")
    await storage.ping()
    await storage.close()
    with pytest.raises(UsageError, match="name the database"):
        await open_storage("postgresql://user@db")
    with pytest.raises(UsageError, match="unknown database URL scheme"):
        await open_storage("mysql://db/storeedge")


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///relative.db", "relative.db"),
        ("sqlite:////abs/cloud.db", "/abs/cloud.db"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_sqlite_url_paths(url: str, path: str) -> None:
    assert sqlite_path(url) == path


def test_unopenable_database_is_a_storage_error(tmp_path: Path) -> None:
    import asyncio

    with pytest.raises(StorageError, match="cannot open database"):
        asyncio.run(SqliteStorage.open(str(tmp_path / "missing-dir" / "cloud.db")))
