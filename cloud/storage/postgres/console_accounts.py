"""The account half of the PostgreSQL console storage: pool, accounts, sessions, audit, leases."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import asyncpg

from cloud.errors import Overloaded, StorageError, UsageError
from cloud.storage.console import AuditEntry, AuditRecord, Role, SessionRecord, UserRecord
from cloud.storage.postgres import console_rollup as rollup
from cloud.storage.postgres._pool import DB_ERRORS
from cloud.storage.postgres._types import Conn
from cloud.storage.postgres.console_sql import USER_COLUMNS, user_from_row

ACQUIRE_TIMEOUT_S = 5.0
# A session's last use is written at most this often: not one write per page view.
SESSION_TOUCH = timedelta(seconds=60)


class PostgresConsoleAccounts:
    """Accounts, sessions, audit and leases on a pool; `PostgresConsoleStorage` adds the rest."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._closed = False

    async def close(self) -> None:
        """Close every pooled connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._pool.close()

    # --- accounts, sessions, audit -----------------------------------------------------

    async def add_user(
        self, username: str, password_hash: str, role: Role, now: datetime
    ) -> UserRecord:
        """Create an account; UsageError when the name is taken (case-insensitively)."""
        try:
            async with self._connection() as conn:
                row = await conn.fetchrow(
                    "INSERT INTO console_users (username, password_hash, role, created_at,"
                    f" password_changed_at) VALUES ($1, $2, $3, $4, $4) RETURNING {USER_COLUMNS}",
                    username,
                    password_hash,
                    role,
                    now,
                )
        except StorageError as exc:
            if isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                raise UsageError(f"user {username!r} already exists") from exc.__cause__
            raise
        assert row is not None
        return user_from_row(row)

    async def user_login(self, username: str) -> tuple[UserRecord, str] | None:
        """The account and its password hash, or None."""
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {USER_COLUMNS}, password_hash FROM console_users"
                " WHERE lower(username) = lower($1)",
                username,
            )
        return None if row is None else (user_from_row(row), row["password_hash"])

    async def list_users(self) -> list[UserRecord]:
        """Every account by name (case-insensitively, as SQLite's NOCASE orders them)."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {USER_COLUMNS} FROM console_users ORDER BY lower(username), username"
            )
        return [user_from_row(r) for r in rows]

    async def update_user(
        self,
        username: str,
        now: datetime,
        *,
        role: Role | None = None,
        password_hash: str | None = None,
        disabled: bool | None = None,
    ) -> UserRecord | None:
        """Change an account; never leaves the console without an active admin."""
        async with self._connection() as conn, conn.transaction():
            # One account change at a time: two admins demoting each other at once would
            # each still see the other and both succeed.
            await rollup.lock_meta(conn, "accounts")
            row = await conn.fetchrow(
                f"SELECT {USER_COLUMNS} FROM console_users WHERE lower(username) = lower($1)",
                username,
            )
            if row is None:
                return None
            user = user_from_row(row)
            row = await conn.fetchrow(
                "UPDATE console_users SET role = coalesce($2, role),"
                " password_hash = coalesce($3, password_hash),"
                " password_changed_at = CASE WHEN $3::text IS NULL THEN password_changed_at"
                " ELSE $4 END,"
                " disabled_at = CASE WHEN $5::boolean IS NULL THEN disabled_at"
                " WHEN $5 THEN $4 END"
                f" WHERE user_id = $1 RETURNING {USER_COLUMNS}",
                user.user_id,
                role,
                password_hash,
                now,
                disabled,
            )
            if password_hash is not None or disabled:
                await conn.execute("DELETE FROM console_sessions WHERE user_id = $1", user.user_id)
            admins = await conn.fetchval(
                "SELECT count(*) FROM console_users WHERE role = 'admin' AND disabled_at IS NULL"
            )
            if admins == 0 and user.role == "admin":
                raise UsageError("refused: the console would be left without an active admin")
        assert row is not None
        return user_from_row(row)

    async def create_session(
        self, token_hash: str, user_id: int, csrf_token: str, now: datetime, expires_at: datetime
    ) -> None:
        """Store a new session."""
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO console_sessions (token_hash, user_id, csrf_token, created_at,"
                " expires_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $4)",
                token_hash,
                user_id,
                csrf_token,
                now,
                expires_at,
            )

    async def get_session(
        self, token_hash: str, now: datetime, idle_s: float
    ) -> SessionRecord | None:
        """The live session of an active user, or None; marks it used."""
        user_cols = ", ".join(f"u.{c.strip()}" for c in USER_COLUMNS.split(","))
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {user_cols}, s.csrf_token, s.created_at AS s_created, s.expires_at,"
                " s.last_seen_at FROM console_sessions s JOIN console_users u USING (user_id)"
                " WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3"
                " AND u.disabled_at IS NULL",
                token_hash,
                now,
                now - timedelta(seconds=idle_s),
            )
            if row is None:
                return None
            if now - row["last_seen_at"] > SESSION_TOUCH:
                await conn.execute(
                    "UPDATE console_sessions SET last_seen_at = $2 WHERE token_hash = $1",
                    token_hash,
                    now,
                )
        return SessionRecord(
            user_from_row(row), row["csrf_token"], row["s_created"], row["expires_at"]
        )

    async def delete_session(self, token_hash: str) -> None:
        """End a session; unknown hashes are ignored."""
        async with self._connection() as conn:
            await conn.execute("DELETE FROM console_sessions WHERE token_hash = $1", token_hash)

    async def record_audit(self, entry: AuditEntry) -> None:
        """Append to the audit log."""
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO console_audit (at, actor, action, target, detail, remote)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                entry.at,
                entry.actor,
                entry.action,
                entry.target,
                entry.detail,
                entry.remote,
            )

    async def list_audit(self, offset: int, limit: int) -> tuple[list[AuditRecord], int]:
        """Newest first, with the total."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT audit_id, at, actor, action, target, detail, remote FROM console_audit"
                " ORDER BY audit_id DESC LIMIT $1 OFFSET $2",
                limit,
                offset,
            )
            total: int = await conn.fetchval("SELECT count(*) FROM console_audit")
        return [AuditRecord(r[0], AuditEntry(*r[1:])) for r in rows], total

    # --- background work ---------------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, now: datetime, ttl_s: float) -> bool:
        """Take the lease if free or expired, renew it if ours: one conditional upsert."""
        async with self._connection() as conn:
            taken = await conn.fetchval(
                "INSERT INTO console_leases AS l (name, holder, expires_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                " expires_at = excluded.expires_at WHERE l.holder = $2 OR l.expires_at <= $4"
                " RETURNING true",
                name,
                holder,
                now + timedelta(seconds=ttl_s),
                now,
            )
        return bool(taken)

    async def release_lease(self, name: str, holder: str) -> None:
        """Let another replica take over at once."""
        async with self._connection() as conn:
            await conn.execute(
                "DELETE FROM console_leases WHERE name = $1 AND holder = $2", name, holder
            )

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        # The one place database errors become StorageError (and a dry pool Overloaded).
        if self._closed:
            raise StorageError("storage is closed")
        try:
            conn = await self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
        except TimeoutError as exc:
            raise Overloaded("busy: no console database connection free, retry shortly") from exc
        except DB_ERRORS as exc:
            raise StorageError(f"postgresql: {exc}") from exc
        try:
            yield conn
        except DB_ERRORS as exc:
            raise StorageError(f"postgresql: {exc}") from exc
        except BaseException as exc:
            # Cancelled mid-statement: the session may sit in a transaction holding locks.
            # Closing it makes the server roll back; it is never pooled again. An error of
            # ours (UsageError) left the connection clean: its transaction has rolled back.
            if not isinstance(exc, Exception):
                conn.terminate()
            raise
        finally:
            await self._pool.release(conn)
