"""`storeedge cloud config get | set | history`: the remote config from a terminal (--db)."""

import argparse
import getpass
import socket
import sys
from pathlib import Path
from typing import Any

DEFAULT_HISTORY = 20


def register(commands: "argparse._SubParsersAction[Any]", default_db: str) -> None:
    """Add `config` and its three leaves under `storeedge cloud`."""
    config = commands.add_parser(
        "config",
        help="the remote business config: fleet document, store overrides, versions",
        description="Every `set` stores a new immutable version; agents fetch theirs with "
        'GET /v1/config (docs/CONFIG.md "Remote config").',
    )
    leaves = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    get = leaves.add_parser("get", help="print the current document (and, for a store, the merge)")
    put = leaves.add_parser("set", help="store FILE (JSON; - for stdin) as a new version")
    history = leaves.add_parser("history", help="list versions, newest first")
    for leaf in (get, put, history):
        scope = leaf.add_mutually_exclusive_group(required=True)
        scope.add_argument("--fleet", action="store_true", help="the fleet-wide document")
        scope.add_argument("--store", metavar="STORE", help="one store's override")
        leaf.add_argument("--db", default=default_db, metavar="URL", help="database URL")
    put.add_argument("file", metavar="FILE", help="the whole document, JSON; - reads stdin")
    put.add_argument("--author", default=_whoami(), help="who makes the change (default: you)")
    put.add_argument("--comment", default="", help="why, for the history")
    put.add_argument(
        "--if-version", type=int, metavar="N", help="refuse unless still at version N (0: none)"
    )
    history.add_argument("--limit", type=int, default=DEFAULT_HISTORY, metavar="N")
    get.set_defaults(func=get_command)
    put.set_defaults(func=set_command)
    history.set_defaults(func=history_command)


def get_command(args: argparse.Namespace) -> int:
    """Print the scope's current document as JSON; a store's with the fleet's and the merge."""
    return _run(_get(args))


def set_command(args: argparse.Namespace) -> int:
    """Store a new version; its number alone on stdout, warnings on stderr."""
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return _run(_set(args, text))


def history_command(args: argparse.Namespace) -> int:
    """One line per version: number, scope, when, who, why."""
    return _run(_history(args))


def _run(work: Any) -> int:
    import asyncio

    from cloud.errors import CloudError

    try:
        result: int = asyncio.run(work)
    except CloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return result


async def _get(args: argparse.Namespace) -> int:
    from cloud.errors import NotFound
    from cloud.settings import effective_settings
    from cloud.views.config import version_json

    async with _storages(args.db) as (storage, config):
        if args.fleet:
            _print({"fleet": version_json(await config.latest_fleet_config())})
            return 0
        store_id = _store_id(args.store)
        if await storage.get_store(store_id) is None:
            raise NotFound(f"unknown store {store_id!r}")
        merged = await effective_settings(config, store_id)
        _print({
            "store_id": store_id, "settings_version": merged.version,
            "fleet": version_json(merged.fleet), "store": version_json(merged.store),
            "effective": merged.settings.model_dump(mode="json"),
        })  # fmt: skip
    return 0


async def _set(args: argparse.Namespace, text: str) -> int:
    import orjson

    from cloud.errors import BadRequest
    from cloud.settings import (
        device_warnings,
        effective_settings,
        set_fleet_config,
        set_store_config,
    )

    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"{args.file}: not JSON: {exc}") from exc
    async with _storages(args.db) as (storage, config):
        if args.fleet:
            version = await set_fleet_config(config, document, args.author, args.comment,
                                             args.if_version)  # fmt: skip
            warnings: list[str] = []
        else:
            store_id = _store_id(args.store)
            version = await set_store_config(config, store_id, document, args.author,
                                             args.comment, args.if_version)  # fmt: skip
            merged = await effective_settings(config, store_id)
            warnings = device_warnings(merged.settings, await storage.get_store(store_id))
    scope = "fleet" if version.store_id is None else f"store {version.store_id}"
    print(f"{scope}: version {version.version} stored", file=sys.stderr)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(version.version, flush=True)
    return 0


async def _history(args: argparse.Namespace) -> int:
    async with _storages(args.db) as (_, config):
        store_id = None if args.fleet else _store_id(args.store)
        rows = await config.list_config_versions(store_id, True, None, max(args.limit, 1))
    for row in rows:
        scope = "fleet" if row.store_id is None else row.store_id
        when = row.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{row.version:>6}  {scope:<16} {when}  {row.author}  {row.comment}")
    return 0


def _store_id(value: str) -> str:
    from cloud.fleet import validate_id

    return validate_id(value)


def _storages(db_url: str) -> Any:
    import contextlib

    from cloud.storage import open_storage
    from cloud.storage.settings import config_storage_for

    @contextlib.asynccontextmanager
    async def opened() -> Any:
        storage = await open_storage(db_url)
        try:
            yield storage, config_storage_for(storage)
        finally:
            await storage.close()

    return opened()


def _print(data: Any) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z).decode())
    sys.stdout.write("\n")


def _whoami() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:128]
