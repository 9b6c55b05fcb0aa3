"""`storeedge cloud serve | enroll-code | migrate | retention | user`; heavy imports stay inside."""

import argparse
import asyncio
import os
import sys
from datetime import timedelta
from typing import Any

ADMIN_TOKEN_ENV = "STOREEDGE_ADMIN_TOKEN"


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    """Add the `cloud` command tree; each leaf sets `func(args) -> int`."""
    from cloud.config import DEFAULT_DB_URL, DEFAULT_HOST, DEFAULT_PORT, CloudConfig

    defaults = CloudConfig(admin_token="-")

    cloud = subparsers.add_parser("cloud", help="the cloud ingest service and its tools")
    commands = cloud.add_subparsers(dest="cloud_command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the ingest and admin API",
        description=f"Run the cloud service. ${ADMIN_TOKEN_ENV} sets the admin bearer token; "
        "without it a random one is generated and printed on stderr.",
    )
    serve.add_argument("--db", default=DEFAULT_DB_URL, metavar="URL", help="database URL")
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port")
    serve.add_argument(
        "--insecure-cookies",
        action="store_true",
        help="console session cookies without Secure (plain HTTP on a trusted LAN only)",
    )
    serve.add_argument(
        "--pool-size",
        type=int,
        default=defaults.db_pool_size,
        metavar="N",
        help="PostgreSQL connections of this process",
    )
    serve.add_argument(
        "--agent-rate",
        type=float,
        default=defaults.agent_events_per_s,
        metavar="EV/S",
        help="events per second one agent may send, sustained (429 beyond)",
    )
    serve.add_argument(
        "--agent-burst",
        type=float,
        default=defaults.agent_events_burst,
        metavar="EVENTS",
        help="events one agent may send at once after a quiet spell",
    )
    serve.add_argument(
        "--max-inflight",
        type=int,
        default=defaults.max_inflight_batches,
        metavar="N",
        help="event batches processed at once (503 beyond)",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log every request (off by default: at fleet scale it costs more than it tells; "
        "see GET /metrics)",
    )
    serve.set_defaults(func=serve_command)

    migrate = commands.add_parser(
        "migrate",
        help="bring the database schema to this build's version",
        description="Apply pending schema migrations and print the version. `cloud serve` "
        "does the same at start; this runs it on its own, e.g. before a rolling upgrade.",
    )
    migrate.add_argument("--db", default=DEFAULT_DB_URL, metavar="URL", help="database URL")
    migrate.set_defaults(func=migrate_command)

    retention = commands.add_parser(
        "retention",
        help="show or set how many days of events PostgreSQL keeps",
        description="Events live in one partition per received day; retention drops whole "
        "days older than the setting (dedupe keys stay forever). The setting is stored in "
        "the database, so every replica applies it; `--apply` drops due days now.",
    )
    retention.add_argument("--db", required=True, metavar="URL", help="postgresql:// URL")
    keep = retention.add_mutually_exclusive_group()
    keep.add_argument("--keep-days", type=int, metavar="N", help="keep N days of events")
    keep.add_argument("--keep-all", action="store_true", help="never drop events")
    retention.add_argument("--apply", action="store_true", help="drop due days right now")
    retention.set_defaults(func=retention_command)

    code = commands.add_parser(
        "enroll-code",
        help="print a single-use enrollment code for a store",
        description="Create the store if new and print a single-use enrollment code alone "
        "on stdout (details on stderr), so `code=$(storeedge cloud enroll-code --store S)` "
        "works.",
    )
    code.add_argument("--store", required=True, metavar="STORE", help="store id")
    code.add_argument("--db", default=DEFAULT_DB_URL, metavar="URL", help="database URL")
    code.add_argument(
        "--ttl-hours", type=float, default=24.0, metavar="H", help="hours until the code expires"
    )
    code.set_defaults(func=enroll_code_command)

    from cloud.console import cli as console_cli

    console_cli.register(commands, DEFAULT_DB_URL)

    from cloud.config_cli import register as register_config

    register_config(commands, DEFAULT_DB_URL)


def serve_command(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; storage closes through the app's cleanup context."""
    import asyncio
    import logging

    from cloud.app import create_app
    from cloud.config import CloudConfig, new_admin_token
    from cloud.errors import CloudError
    from cloud.slowclient import serve
    from cloud.storage import check_db_url

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    token = os.environ.get(ADMIN_TOKEN_ENV)
    if not token:
        token = new_admin_token()
        print(f"admin token (set ${ADMIN_TOKEN_ENV} to choose one): {token}", file=sys.stderr)
    try:
        from cloud.console.settings import ConsoleSettings

        console = ConsoleSettings(secure_cookies=not args.insecure_cookies)
        config = CloudConfig(
            db_url=args.db,
            admin_token=token,
            host=args.host,
            port=args.port,
            db_pool_size=args.pool_size,
            agent_events_per_s=args.agent_rate,
            agent_events_burst=args.agent_burst,
            max_inflight_batches=args.max_inflight,
            console=console,
        )
        check_db_url(args.db)  # fail before logging "running on …"
        # SIGINT and SIGTERM end serve() gracefully, which runs cleanup_ctx; its runner cuts
        # off slow clients (cloud/slowclient.py).
        access_log = logging.getLogger("aiohttp.access") if args.access_log else None
        with asyncio.Runner(loop_factory=_fast_loop) as runner:
            runner.run(serve(create_app(config), config, _stderr, access_log))
    except CloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the port is taken, or the address is not ours
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    return 0


def enroll_code_command(args: argparse.Namespace) -> int:
    """Print only the code on stdout; what it is for and when it expires on stderr."""
    import asyncio

    from cloud.errors import CloudError
    from cloud.service import create_enroll_code

    if args.ttl_hours <= 0:
        print("error: --ttl-hours must be positive", file=sys.stderr)
        return 2
    try:
        issued = asyncio.run(
            create_enroll_code(args.db, args.store, timedelta(hours=args.ttl_hours))
        )
    except CloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    created = " (new store)" if issued.store_created else ""
    expires = issued.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    print(
        f"enrollment code for store {issued.store_id}{created}, single use, expires {expires}\n"
        f"on the store box: storeedge agent enroll --cloud URL --code {issued.code}",
        file=sys.stderr,
    )
    print(issued.code, flush=True)
    return 0


def migrate_command(args: argparse.Namespace) -> int:
    """Migrate, then print `schema version N` on stdout and what was applied on stderr."""
    import asyncio

    from cloud.errors import CloudError
    from cloud.service import migrate_database

    try:
        version, applied = asyncio.run(migrate_database(args.db))
    except CloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for step in applied:
        print(f"applied {step}", file=sys.stderr)
    if not applied:
        print("nothing to apply", file=sys.stderr)
    print(f"schema version {version}")
    return 0


def retention_command(args: argparse.Namespace) -> int:
    """Set retention if asked, drop due days with --apply, and print the setting."""
    import asyncio

    from cloud.errors import CloudError
    from cloud.service import manage_retention

    if args.keep_days is not None and args.keep_days < 1:
        print("error: --keep-days must be at least 1", file=sys.stderr)
        return 2
    try:
        days, dropped = asyncio.run(
            manage_retention(args.db, args.keep_days, args.keep_all, args.apply)
        )
    except CloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for day, events in dropped:
        print(f"dropped {day} ({events} events)", file=sys.stderr)
    print("retention: keep all events" if days is None else f"retention: keep {days} days")
    return 0


def _fast_loop() -> "asyncio.AbstractEventLoop":
    """uvloop where it is installed (Linux, macOS), else the standard loop.

    The same ingest load side by side (two rounds each) gave 6-35 % more events/s per
    replica with it: socket and scheduling work moves from Python into libuv.
    """
    import asyncio

    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)
