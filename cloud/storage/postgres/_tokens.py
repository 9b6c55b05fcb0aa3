"""Enrollment and token statements of the PostgreSQL backend: codes, re-keying, promotion."""

from collections.abc import Iterable
from datetime import datetime

from cloud.errors import EnrollmentRefused
from cloud.storage.base import AgentIdentity
from cloud.storage.postgres._types import Conn


async def spend_code(conn: Conn, code_hash: str, agent_id: str, now: datetime) -> str:
    """Mark the code used by `agent_id`; its store, or EnrollmentRefused saying why not."""
    # The WHERE clause is the single-use check: of two replicas spending one code at once,
    # the second waits on the row lock, then matches nothing.
    store_id: str | None = await conn.fetchval(
        "UPDATE enroll_codes SET used_at = $2, used_by = $3 WHERE code_hash = $1"
        " AND used_at IS NULL AND expires_at > $2 RETURNING store_id",
        code_hash,
        now,
        agent_id,
    )
    if store_id is None:
        raise await _refusal(conn, code_hash)
    return store_id


async def rekey(
    conn: Conn, agent_id: str, store_id: str, token_hash: str, info: str, now: datetime
) -> None:
    """Register `agent_id` in `store_id`, or give it `token_hash` and un-revoke it.

    EnrollmentRefused when the agent belongs to another store; the caller's transaction
    then rolls back, leaving the code unspent.
    """
    # One upsert, not SELECT then INSERT: of two replicas re-enrolling one unknown id at
    # once, the second waits on the first's row and re-keys it rather than failing on the
    # primary key. The WHERE keeps an agent in its store.
    rekeyed = await conn.fetchval(
        "INSERT INTO agents AS a (agent_id, store_id, token_hash, agent_info, enrolled_at)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (agent_id) DO UPDATE"
        " SET token_hash = excluded.token_hash, next_token_hash = NULL, revoked_at = NULL,"
        " agent_info = excluded.agent_info WHERE a.store_id = excluded.store_id"
        " RETURNING true",
        agent_id,
        store_id,
        token_hash,
        info,
        now,
    )
    if not rekeyed:
        owner = await conn.fetchval("SELECT store_id FROM agents WHERE agent_id = $1", agent_id)
        raise EnrollmentRefused(
            f"agent {agent_id} belongs to store {owner}, this code is for store {store_id};"
            " enroll as a new agent instead",
            key="agent_other_store",
        )


async def find_agents(conn: Conn, token_hashes: Iterable[str]) -> dict[str, AgentIdentity]:
    """The active agent of each token hash found, current or staged; staged ones promoted."""
    wanted = set(token_hashes)
    # One query in the common case: both columns are indexed (a BitmapOr of the two).
    rows = await conn.fetch(
        "SELECT token_hash, next_token_hash, agent_id, store_id FROM agents"
        " WHERE (token_hash = ANY($1::text[]) OR next_token_hash = ANY($1::text[]))"
        " AND revoked_at IS NULL",
        list(wanted),
    )
    found: dict[str, AgentIdentity] = {}
    staged: dict[str, str] = {}  # a presented staged token hash -> its agent id
    for current, upcoming, agent_id, store_id in rows:
        found[current] = AgentIdentity(agent_id, store_id)
        if upcoming in wanted:
            staged[upcoming] = agent_id
    if staged:  # the rare case: first use of a rotated token
        await _promote(conn, staged, found)
    return found


async def _promote(conn: Conn, staged: dict[str, str], found: dict[str, AgentIdentity]) -> None:
    # First use of a staged token makes it the only valid one. The WHERE re-checks the row,
    # so a token re-staged or revoked since the lookup is not promoted; one promoted meanwhile
    # by another replica is then found as current by a second statement (a fresh snapshot).
    tokens = list(staged)
    rows = await conn.fetch(
        "UPDATE agents a SET token_hash = a.next_token_hash, next_token_hash = NULL"
        " FROM unnest($1::text[], $2::text[]) AS p(agent_id, token)"
        " WHERE a.agent_id = p.agent_id AND a.next_token_hash = p.token"
        " AND a.revoked_at IS NULL RETURNING a.token_hash, a.agent_id, a.store_id",
        [staged[token] for token in tokens],
        tokens,
    )
    for token, agent_id, store_id in rows:
        found[token] = AgentIdentity(agent_id, store_id)
    missed = [token for token in tokens if token not in found]
    if missed:
        rows = await conn.fetch(
            "SELECT token_hash, agent_id, store_id FROM agents"
            " WHERE token_hash = ANY($1::text[]) AND revoked_at IS NULL",
            missed,
        )
        for token, agent_id, store_id in rows:
            found[token] = AgentIdentity(agent_id, store_id)


async def _refusal(conn: Conn, code_hash: str) -> EnrollmentRefused:
    used_at = await conn.fetchrow(
        "SELECT used_at FROM enroll_codes WHERE code_hash = $1", code_hash
    )
    if used_at is None:
        return EnrollmentRefused("unknown enrollment code", key="code_unknown")
    if used_at[0] is not None:
        return EnrollmentRefused("enrollment code already used", key="code_used")
    return EnrollmentRefused("enrollment code expired", key="code_expired")
