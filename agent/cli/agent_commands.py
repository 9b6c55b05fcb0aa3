"""`storeedge agent …`: enroll and run; the field-engineer tools live in field_commands."""

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from agent.config import DEFAULT_CONFIG_PATH


def register(commands: Any) -> None:
    """Add the `agent` command tree."""
    parser = commands.add_parser("agent", help="the in-store agent")
    sub = parser.add_subparsers(dest="agent_command", required=True, metavar="COMMAND")

    enroll = sub.add_parser("enroll", help="trade an enrollment code for credentials")
    enroll.add_argument("--cloud", required=True, help="cloud base URL, e.g. https://ingest…")
    enroll.add_argument("--code", required=True, help="code from `storeedge cloud enroll-code`")
    enroll.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH)
    enroll.add_argument(
        "--state-dir", type=Path, help="override [agent].state_dir (before a config exists)"
    )
    enroll.add_argument(
        "--allow-plaintext",
        action="store_true",
        help="accept a plain http:// cloud URL that is not loopback (a trusted network only)",
    )
    enroll.add_argument(
        "--new-identity",
        action="store_true",
        help="enroll as a new agent even if this box has credentials (default: keep its id)",
    )
    enroll.set_defaults(func=_enroll)

    run = sub.add_parser("run", help="run the agent until SIGTERM")
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH)
    run.set_defaults(func=_run)

    from agent.cli import field_commands

    field_commands.register(sub)


def _enroll(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.credentials import (
        EnrollmentError,
        credentials_lock,
        enroll,
        load_credentials,
        save_credentials,
    )
    from agent.diagnostics.offline import outbox_backlog
    from agent.errors import ConfigError
    from agent.tls import check_cloud_url, client_ssl_context

    state_dir: Path | None = args.state_dir
    ca_bundle = None
    try:
        check_cloud_url(args.cloud, args.allow_plaintext, what="--cloud")
        if state_dir is None:
            config = load_config(args.config)
            state_dir, ca_bundle = config.agent.state_dir, config.cloud.ca_bundle
        elif args.config.exists():
            ca_bundle = load_config(args.config).cloud.ca_bundle
        context = client_ssl_context(ca_bundle)
    except ConfigError as exc:
        print(f"error: {exc}\n(or pass --state-dir)", file=sys.stderr)
        return 2
    try:
        previous = load_credentials(state_dir)
    except ConfigError:
        previous = None
    # Re-enrollment keeps the agent id: events already in the outbox carry it, and the cloud
    # only accepts them from a token of that agent.
    keep = None if previous is None or args.new_identity else previous.agent_id
    try:
        with credentials_lock(state_dir):
            credentials = asyncio.run(
                enroll(args.cloud, args.code, agent_id=keep, ssl_context=context)
            )
            path = save_credentials(state_dir, credentials)
    except EnrollmentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    again = "re-enrolled" if keep else "enrolled"
    print(
        f"{again} as agent {credentials.agent_id} of store {credentials.store_id}; "
        f"credentials saved to {path} (0600)",
        file=sys.stderr,
    )
    if previous is not None and previous.agent_id != credentials.agent_id:
        backlog = outbox_backlog(state_dir)
        if backlog and backlog[0]:
            print(
                f"warning: {backlog[0]} events in the outbox belong to agent "
                f"{previous.agent_id}; the cloud will reject them under the new identity and "
                "they will be kept as dead letters",
                file=sys.stderr,
            )
    return 0


def _run(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.credentials import load_credentials
    from agent.errors import ConfigError
    from agent.runtime import run_until_signalled
    from agent.tls import check_cloud_url, client_ssl_context

    try:
        config = load_config(args.config)
        credentials = load_credentials(config.agent.state_dir)
        # The URL enrollment saved is the one used: it must pass the same rule as the config's.
        check_cloud_url(credentials.cloud_url, config.cloud.allow_plaintext, "credentials")
        client_ssl_context(config.cloud.ca_bundle)  # an unreadable bundle stops us here
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from agent.logs import register_secret, setup_logging

    setup_logging(config.agent.log_level, config.logging.levels, config.logging.format)
    register_secret(credentials.token)
    return asyncio.run(run_until_signalled(config, credentials))
