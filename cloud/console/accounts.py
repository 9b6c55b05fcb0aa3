"""Account set-up outside the web UI (demo and scripts)."""

from datetime import UTC, datetime

from cloud.console.app import open_console_storage
from cloud.console.passwords import Passwords, check_new_password
from cloud.console.settings import ConsoleSettings
from cloud.storage.console import AuditEntry, Role


async def ensure_user(
    db_url: str, username: str, role: Role, password: str, actor: str = "cli"
) -> None:
    """Create the account, or reset its password, role and enable it if it exists."""
    now = datetime.now(UTC)
    hashed = await Passwords(ConsoleSettings()).async_hash(check_new_password(password))
    storage = await open_console_storage(db_url)
    try:
        if await storage.user_login(username) is None:
            await storage.add_user(username, hashed, role, now)
            action = "user_add"
        else:
            await storage.update_user(
                username, now, role=role, password_hash=hashed, disabled=False
            )
            action = "user_set_password"
        await storage.record_audit(AuditEntry(now, actor, action, username, f"role {role}"))
    finally:
        await storage.close()
