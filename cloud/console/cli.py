"""`storeedge cloud user add | list | set-role | set-password | disable | enable`."""

import argparse
import getpass
import secrets
import sys
from typing import Any

GENERATED_BYTES = 18  # 24 URL-safe characters, ~144 bits


def register(commands: "argparse._SubParsersAction[Any]", default_db: str) -> None:
    """Add `user …` under `storeedge cloud`."""
    user = commands.add_parser("user", help="console accounts (admin, engineer, viewer)")
    verbs = user.add_subparsers(dest="user_command", required=True, metavar="COMMAND")

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = verbs.add_parser(
            name, help=help_text, description=help_text
        )
        parser.add_argument("--db", default=default_db, metavar="URL", help="database URL")
        return parser

    add = verb("add", "create a console account")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=("admin", "engineer", "viewer"))
    _password_options(add)
    add.set_defaults(func=_run, action="add")

    verb("list", "list console accounts").set_defaults(func=_run, action="list")

    role = verb("set-role", "change an account's role")
    role.add_argument("username")
    role.add_argument("role", choices=("admin", "engineer", "viewer"))
    role.set_defaults(func=_run, action="set-role")

    password = verb("set-password", "set a new password (ends the account's sessions)")
    password.add_argument("username")
    _password_options(password)
    password.set_defaults(func=_run, action="set-password")

    for name, text in (("disable", "disable an account (ends its sessions)"),
                       ("enable", "enable a disabled account")):  # fmt: skip
        parser = verb(name, text)
        parser.add_argument("username")
        parser.set_defaults(func=_run, action=name)


def _password_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (one line)"
    )
    group.add_argument(
        "--generate", action="store_true", help="generate a password and print it on stdout"
    )


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from cloud.errors import CloudError

    try:
        return asyncio.run(_async_run(args))
    except CloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print("error: no password given", file=sys.stderr)
        return 2


async def _async_run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from cloud.console.app import open_console_storage
    from cloud.console.passwords import Passwords, check_new_password
    from cloud.console.settings import ConsoleSettings
    from cloud.console.views.admin import check_username
    from cloud.storage.console import AuditEntry

    now = datetime.now(UTC)
    storage = await open_console_storage(args.db)
    try:
        if args.action == "list":
            for u in await storage.list_users():
                state = "active" if u.active else "disabled"
                print(f"{u.username}\t{u.role}\t{state}")
            return 0
        username = check_username(args.username)
        changes: dict[str, Any] = {}
        shown = None
        if args.action in ("add", "set-password"):
            password, shown = _password(args)
            hashed = await Passwords(ConsoleSettings()).async_hash(check_new_password(password))
            changes["password_hash"] = hashed
        if args.action == "add":
            await storage.add_user(username, changes["password_hash"], args.role, now)
            detail = f"role {args.role}"
        else:
            if args.action == "set-role":
                changes["role"] = args.role
            elif args.action in ("disable", "enable"):
                changes["disabled"] = args.action == "disable"
            if await storage.update_user(username, now, **changes) is None:
                print(f"error: no user {username!r}", file=sys.stderr)
                return 2
            detail = f"role {args.role}" if args.action == "set-role" else ""
        action = "user_" + args.action.replace("-", "_")
        await storage.record_audit(AuditEntry(now, "cli", action, username, detail, "cli"))
        print(f"{args.action}: {username} done", file=sys.stderr)
        if shown is not None:
            print(shown, flush=True)
        return 0
    finally:
        await storage.close()


def _password(args: argparse.Namespace) -> tuple[str, str | None]:
    """(password, text to print on stdout or None)."""
    if args.generate:
        password = secrets.token_urlsafe(GENERATED_BYTES)
        return password, password
    if args.password_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n"), None
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise EOFError("passwords differ")
    return first, None
