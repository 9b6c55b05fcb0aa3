"""`storeedge cloud serve | enroll-code`; heavy imports stay inside the handlers."""

import argparse
import os
import sys
from datetime import timedelta
from typing import Any

ADMIN_TOKEN_ENV = "STOREEDGE_ADMIN_TOKEN"


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    """Add the `cloud` command tree; each leaf sets `func(args) -> int`."""
    from cloud.config import DEFAULT_DB_URL, DEFAULT_HOST, DEFAULT_PORT

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
    serve.set_defaults(func=serve_command)

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
        config = CloudConfig(db_url=args.db, admin_token=token, host=args.host, port=args.port)
        check_db_url(args.db)  # fail before logging "running on …"
        # SIGINT and SIGTERM end serve() gracefully, which runs cleanup_ctx; its runner cuts
        # off slow clients (cloud/slowclient.py).
        asyncio.run(serve(create_app(config), config, _stderr))
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


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)
