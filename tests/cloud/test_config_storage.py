"""The `ConfigStorage` contract (cloud/storage/settings.py), run against both backends alike."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from cloud.credentials import hash_code
from cloud.errors import Conflict, NotFound
from cloud.fleet import issue_enroll_code
from cloud.storage import open_storage
from cloud.storage.base import Storage
from cloud.storage.postgres.settings import CONFIG_LOCK
from cloud.storage.settings import ConfigStorage, ConfigVersion, config_storage_for
from protocol.settings import ConfigRefusal

NOW = datetime.now(UTC).replace(microsecond=0)
STORES = ("store-1", "store-2")


@dataclass
class Db:
    storage: Storage
    config: ConfigStorage


async def open_db(url: str) -> Db:
    storage = await open_storage(url)
    return Db(storage, config_storage_for(storage))


async def warm(storage: Storage) -> None:
    """Open a pool's connections before a race, so the racers overlap rather than queue."""
    await asyncio.gather(*(storage.ping() for _ in range(8)))


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Db]:
    opened = await open_db(db_url)
    try:
        for store_id in STORES:
            await issue_enroll_code(opened.storage, store_id, now=NOW)
        yield opened
    finally:
        await opened.storage.close()


async def write(
    config: ConfigStorage, store_id: str | None, n: int, if_version: int | None = None
) -> ConfigVersion:
    at = NOW + timedelta(seconds=n)
    return await config.add_config_version(
        store_id, {"n": n}, f"admin-{n}", f"change {n}", at, if_version
    )


async def test_fleet_and_store_versions_are_one_sequence_of_immutable_rows(db: Db) -> None:
    fleet1 = await write(db.config, None, 1)
    store1 = await write(db.config, "store-1", 2)
    store2 = await write(db.config, "store-2", 3)
    fleet2 = await write(db.config, None, 4)
    newer1 = await write(db.config, "store-1", 5)
    versions = [v.version for v in (fleet1, store1, store2, fleet2, newer1)]
    assert versions == sorted(versions)
    assert len(set(versions)) == 5
    assert fleet1 == ConfigVersion(
        fleet1.version, None, {"n": 1}, "admin-1", "change 1", NOW + timedelta(seconds=1)
    )
    assert await db.config.get_config_version(store1.version) == store1
    assert await db.config.get_config_version(newer1.version + 100) is None
    assert await db.config.current_config("store-1") == (fleet2, newer1)
    assert await db.config.current_config("store-9") == (fleet2, None)
    assert await db.config.latest_fleet_config() == fleet2
    assert await db.config.latest_store_configs() == [newer1, store2]


async def test_an_empty_history_has_no_versions(db: Db) -> None:
    assert await db.config.current_config("store-1") == (None, None)
    assert await db.config.latest_fleet_config() is None
    assert await db.config.latest_store_configs() == []
    assert await db.config.list_config_versions(None, True, None, 10) == []


async def test_documents_come_back_as_written(db: Db) -> None:
    document = {"zeta": {"b": [1, 2.5, None], "a": "ü"}, "alpha": True}
    written = await db.config.add_config_version(None, document, "a", "", NOW)
    (read,) = await db.config.list_config_versions(None, False, None, 1)
    assert read.document == document
    # Key order too: an admin reads the history back the way they wrote it.
    assert list(read.document) == ["zeta", "alpha"]
    assert list(read.document["zeta"]) == ["b", "a"]
    assert written == read


async def test_history_lists_newest_first_by_scope_and_pages(db: Db) -> None:
    scopes = [None, "store-1", "store-2", "store-1", None, "store-1"]
    written = [await write(db.config, scope, n) for n, scope in enumerate(scopes)]
    by_number = {v.version: v for v in written}

    async def listed(
        store_id: str | None, fleet: bool, before: int | None, limit: int
    ) -> list[int]:
        rows = await db.config.list_config_versions(store_id, fleet, before, limit)
        assert all(by_number[r.version] == r for r in rows)
        return [r.version for r in rows]

    numbers = [v.version for v in written]
    store1 = [v for v, s in zip(numbers, scopes, strict=True) if s == "store-1"][::-1]
    fleet = [v for v, s in zip(numbers, scopes, strict=True) if s is None][::-1]
    both = [v for v, s in zip(numbers, scopes, strict=True) if s in (None, "store-1")][::-1]
    assert await listed(None, False, None, 10) == fleet
    assert await listed(None, True, None, 10) == fleet
    assert await listed("store-1", False, None, 10) == store1
    assert await listed("store-1", True, None, 10) == both
    assert await listed("store-1", True, None, 2) == both[:2]
    assert await listed("store-1", True, both[1], 2) == both[2:4]
    assert await listed("store-1", True, both[-1], 2) == []


async def test_a_store_must_exist_and_a_refused_write_stores_nothing(db: Db) -> None:
    with pytest.raises(NotFound) as caught:
        await write(db.config, "store-none", 1)
    assert caught.value.key == "unknown_store"
    assert await db.config.list_config_versions("store-none", True, None, 10) == []


async def test_if_version_is_a_compare_and_set_on_its_own_scope(db: Db) -> None:
    first = await write(db.config, None, 1, if_version=0)
    with pytest.raises(Conflict, match=f"at version {first.version}, not 0") as caught:
        await write(db.config, None, 2, if_version=0)
    assert caught.value.key == "config_conflict"
    # A store's scope starts at 0 whatever the fleet is at.
    store = await write(db.config, "store-1", 3, if_version=0)
    second = await write(db.config, None, 4, if_version=first.version)
    with pytest.raises(Conflict, match="store store-1"):
        await write(db.config, "store-1", 5, if_version=second.version)
    assert await db.config.current_config("store-1") == (second, store)
    assert len(await db.config.list_config_versions("store-1", True, None, 10)) == 3


async def test_concurrent_writers_get_distinct_versions_in_commit_order(db_url: str) -> None:
    # Two replicas (two pools or two connections) writing at once, and a reader polling: it
    # must never see a version while a smaller one is still to appear.
    replicas = [await open_db(db_url), await open_db(db_url)]
    for store_id in STORES:
        await issue_enroll_code(replicas[0].storage, store_id, now=NOW)
    scopes = [None, *STORES]
    done = asyncio.Event()
    seen: list[list[int]] = []

    async def poll() -> None:
        while not done.is_set():
            rows = await replicas[1].config.list_config_versions("store-1", True, None, 1000)
            seen.append([r.version for r in rows])
            await asyncio.sleep(0)

    try:
        for replica in replicas:
            await warm(replica.storage)
        reader = asyncio.create_task(poll())
        written = await asyncio.gather(
            *(write(replicas[n % 2].config, scopes[n % 3], n) for n in range(30))
        )
        done.set()
        await reader
        numbers = sorted(v.version for v in written)
        assert len(set(numbers)) == 30
        final = [
            v.version for v in written if v.store_id in (None, "store-1")
        ]  # every version the reader's scope holds
        final.sort(reverse=True)
        for snapshot in seen:
            # Newest first; a later commit with a smaller number would leave a hole here.
            assert snapshot == final[len(final) - len(snapshot) :], snapshot
        assert len(seen) > 1
    finally:
        for replica in replicas:
            await replica.storage.close()


async def test_racing_compare_and_set_writers_exactly_one_wins(db: Db) -> None:
    await warm(db.storage)
    outcomes = await asyncio.gather(
        *(write(db.config, None, n, if_version=0) for n in range(8)), return_exceptions=True
    )
    assert sum(isinstance(o, ConfigVersion) for o in outcomes) == 1
    assert sum(isinstance(o, Conflict) for o in outcomes) == 7
    assert len(await db.config.list_config_versions(None, False, None, 10)) == 1


async def enroll_agents(db: Db) -> None:
    for n, store_id in enumerate(("store-1", "store-1", "store-2")):
        issued = await issue_enroll_code(db.storage, store_id, now=NOW)
        at = NOW + timedelta(seconds=n)
        await db.storage.enroll(hash_code(issued.code), f"agt-{n}", f"th-{n}", {}, at)


async def test_reports_keep_the_applied_config_and_the_last_refusal_ever(db: Db) -> None:
    await enroll_agents(db)
    refusal = ConfigRefusal(settings_version=3, config_hash="3" * 32, reason="no printer", at=NOW)

    h2, h4 = "2" * 32, "4" * 32

    async def state(agent_id: str = "agt-1") -> tuple[object, ...]:
        (row,) = [r for r in await db.config.config_reports("store-1") if r.agent_id == agent_id]
        return row.changed_at, row.applied_version, row.applied_hash, row.refusal

    def at(seconds: int) -> datetime:
        return NOW + timedelta(seconds=seconds)

    await db.config.record_config_report("agt-1", 2, h2, None, at(10))
    assert await state() == (at(10), 2, h2, None)
    # The same report again (every heartbeat) writes nothing: changed_at stays.
    await db.config.record_config_report("agt-1", 2, h2, None, at(20))
    assert await state() == (at(10), 2, h2, None)
    await db.config.record_config_report("agt-1", 2, h2, refusal, at(30))
    assert await state() == (at(30), 2, h2, refusal)
    await db.config.record_config_report("agt-1", 2, h2, refusal, at(40))
    await db.config.record_config_report("agt-1", 2, h2, None, at(50))
    assert await state() == (at(30), 2, h2, refusal)
    # Healed: the new applied config is kept, and so is the last refusal, for the console.
    await db.config.record_config_report("agt-1", 4, h4, None, at(60))
    assert await state() == (at(60), 4, h4, refusal)
    other = ConfigRefusal(reason="bad rules", at=at(70))  # no version or hash known
    await db.config.record_config_report("agt-1", 4, h4, other, at(70))
    assert await state() == (at(70), 4, h4, other)
    await db.config.record_config_report("agt-1", None, None, None, at(80))
    assert await state() == (at(80), None, None, other)


async def test_config_reports_list_a_stores_reporting_agents_in_enrollment_order(
    db: Db,
) -> None:
    await enroll_agents(db)
    assert await db.config.config_reports("store-1") == []
    for agent_id in ("agt-1", "agt-0", "agt-2"):
        await db.config.record_config_report(agent_id, 1, "h1", None, NOW)
    assert [r.agent_id for r in await db.config.config_reports("store-1")] == ["agt-0", "agt-1"]
    assert [r.agent_id for r in await db.config.config_reports("store-2")] == ["agt-2"]
    assert await db.config.config_reports("store-none") == []


async def test_a_postgresql_writer_waits_for_the_one_before_to_commit(postgres_url: str) -> None:
    db = await open_db(postgres_url)
    other = await asyncpg.connect(postgres_url)
    try:
        # Another replica mid-write: it holds the writers' lock and has drawn its number.
        transaction = other.transaction()
        await transaction.start()
        await other.execute("SELECT pg_advisory_xact_lock($1)", CONFIG_LOCK)
        earlier = await other.fetchval(
            "INSERT INTO config_versions (document, author, comment, created_at)"
            " VALUES ('{}', 'other', '', now()) RETURNING version"
        )
        writing = asyncio.create_task(write(db.config, None, 1))
        await asyncio.sleep(0.3)
        assert not writing.done()  # drawing a number now could commit before `earlier`
        await transaction.commit()
        later = await writing
        assert later.version > earlier
        assert [v.version for v in await db.config.list_config_versions(None, True, None, 5)] == [
            later.version,
            earlier,
        ]
    finally:
        await other.close()
        await db.storage.close()
