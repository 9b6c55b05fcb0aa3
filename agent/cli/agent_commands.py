"""`storeedge agent …`: enroll and run."""

import argparse
import asyncio
import logging
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
    enroll.set_defaults(func=_enroll)

    run = sub.add_parser("run", help="run the agent until SIGTERM")
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH)
    run.set_defaults(func=_run)


def _enroll(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.credentials import EnrollmentError, enroll, save_credentials
    from agent.errors import ConfigError

    state_dir: Path | None = args.state_dir
    if state_dir is None:
        try:
            state_dir = load_config(args.config).agent.state_dir
        except ConfigError as exc:
            print(f"error: {exc}\n(or pass --state-dir)", file=sys.stderr)
            return 2
    try:
        credentials = asyncio.run(enroll(args.cloud, args.code))
    except EnrollmentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    path = save_credentials(state_dir, credentials)
    print(
        f"enrolled as agent {credentials.agent_id} of store {credentials.store_id}; "
        f"credentials saved to {path} (0600)",
        file=sys.stderr,
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.credentials import load_credentials
    from agent.errors import ConfigError
    from agent.runtime import run_until_signalled

    try:
        config = load_config(args.config)
        credentials = load_credentials(config.agent.state_dir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.agent.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(run_until_signalled(config, credentials))
