"""`storeedge` entry point: each area registers its own subcommands; imports stay lazy."""

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The full command tree; each leaf sets `func(args) -> int`."""
    from agent.cli import agent_commands, demo
    from cloud import cli as cloud_cli
    from hardware import cli as hardware_cli
    from sim import cli as sim_cli

    parser = argparse.ArgumentParser(
        prog="storeedge", description="Store-edge agent, cloud ingest and device emulators."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.register(commands)
    agent_commands.register(commands)
    cloud_cli.register(commands)
    hardware_cli.register(commands)
    sim_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its return value is the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
