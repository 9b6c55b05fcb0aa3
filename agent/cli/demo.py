"""`storeedge demo`."""

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    """Add the `demo` command."""
    parser = commands.add_parser(
        "demo", help="cloud + enrolled agent + emulated scanner + outages, on this machine"
    )
    parser.add_argument("--dir", type=Path, help="where to keep state (default: a temp dir)")
    parser.add_argument(
        "--port", type=int, default=8080, help="cloud port (default 8080; 0 picks a free one)"
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--outage-every", type=float, default=60.0, help="seconds between outages")
    parser.add_argument("--outage-for", type=float, default=15.0, help="outage length, seconds")
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from agent.demo import DemoOptions, run_demo

    workdir = args.dir or Path(tempfile.mkdtemp(prefix="storeedge-demo-"))
    options = DemoOptions(
        workdir=workdir,
        port=args.port,
        duration_s=args.duration,
        outage_every_s=args.outage_every,
        outage_s=args.outage_for,
    )
    return asyncio.run(run_demo(options))
