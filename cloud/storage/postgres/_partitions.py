"""Daily partitions of `events`: created ahead without blocking ingest, dropped for retention.

A new day is CREATE TABLE … (LIKE events) + ATTACH PARTITION, which takes only SHARE UPDATE
EXCLUSIVE on the parent, so ingest into other days goes on meanwhile. Dropping a day takes
ACCESS EXCLUSIVE on the parent for an instant; `lock_timeout` keeps a slow reader from turning
that wait into an ingest stall (the next maintenance round tries again).
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from cloud.storage.postgres._types import Conn

# Days of partitions kept ready ahead of today: maintenance can fail for a week before an
# ingest finds no partition (and then it creates its own, see PostgresStorage.ingest).
DAYS_AHEAD = 7
# pg_advisory_xact_lock key serializing partition DDL across replicas ("se" "pa").
PARTITION_LOCK = 0x7365_7061
# How long DDL may wait for a lock before giving up this round.
LOCK_TIMEOUT = "2s"
_PREFIX = "events_p"


@dataclass(frozen=True, slots=True)
class Dropped:
    """One day removed by retention."""

    day: date
    events: int


def partition_name(day: date) -> str:
    """`events_pYYYYMMDD`: the table holding events received on that UTC day."""
    return f"{_PREFIX}{day:%Y%m%d}"


def day_of(moment: datetime) -> date:
    """The UTC day a timestamp falls in."""
    return moment.astimezone(UTC).date()


async def attached_days(conn: Conn) -> list[date]:
    """Days with a partition attached to `events`, oldest first."""
    names = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'events'::regclass"
    )
    days = [_parse(name) for (name,) in names]
    return sorted(day for day in days if day is not None)


async def ensure_partitions(conn: Conn, first: date, last: date) -> list[date]:
    """Create the missing daily partitions from `first` to `last` inclusive; those created."""
    have = set(await attached_days(conn))
    created = []
    day = first
    while day <= last:
        if day not in have and await _create(conn, day):
            created.append(day)
        day += timedelta(days=1)
    return created


async def drop_before(conn: Conn, cutoff: date) -> list[Dropped]:
    """Drop every day partition older than `cutoff`, adjusting the kept counts; those dropped."""
    dropped = []
    for day in await attached_days(conn):
        if day >= cutoff:
            break
        dropped.append(await _drop(conn, day))
    return dropped


async def _create(conn: Conn, day: date) -> bool:
    name = partition_name(day)
    low = datetime.combine(day, time(), UTC)
    high = low + timedelta(days=1)
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
            return False  # another replica made it while we waited for the lock
        await conn.execute(
            f"CREATE TABLE {name} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        # Literal bounds: ATTACH does not take parameters. Both come from a date, not input.
        await conn.execute(
            f"ALTER TABLE events ATTACH PARTITION {name}"
            f" FOR VALUES FROM ('{low.isoformat()}') TO ('{high.isoformat()}')"
        )
    return True


async def _drop(conn: Conn, day: date) -> Dropped:
    name = partition_name(day)
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
        # Locked first, so no late insert lands between counting and dropping.
        await conn.execute(f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE")
        total = await conn.fetchval(
            f"""
            WITH gone AS (
                SELECT agent_id, store_id, kind, count(*) AS n FROM {name}
                GROUP BY agent_id, store_id, kind
            ), by_kind AS (
                UPDATE event_counts c SET events = c.events - g.n
                FROM (SELECT store_id, kind, sum(n) AS n FROM gone GROUP BY store_id, kind) g
                WHERE c.store_id = g.store_id AND c.kind = g.kind
            ), by_agent AS (
                UPDATE agents a SET events_total = a.events_total - g.n
                FROM (SELECT agent_id, sum(n) AS n FROM gone GROUP BY agent_id) g
                WHERE a.agent_id = g.agent_id
            )
            SELECT coalesce(sum(n), 0) FROM gone
            """
        )
        await conn.execute(f"DROP TABLE {name}")
    return Dropped(day, int(total))


def _parse(name: str) -> date | None:
    if not name.startswith(_PREFIX):
        return None
    try:
        return datetime.strptime(name[len(_PREFIX) :], "%Y%m%d").date()
    except ValueError:
        return None
