"""`storeedge sim fleet`: virtual agents against a cloud, with a live view and a summary."""

import argparse
import os
import sys
from typing import Any

ADMIN_TOKEN_ENV = "STOREEDGE_ADMIN_TOKEN"


def register(subparsers: "argparse._SubParsersAction[Any]") -> None:
    """Add the `sim` command tree; each leaf sets `func(args) -> int`."""
    sim = subparsers.add_parser("sim", help="simulators for load and scale testing")
    commands = sim.add_subparsers(dest="sim_command", required=True, metavar="COMMAND")
    fleet = commands.add_parser(
        "fleet",
        help="drive N virtual agents against a cloud",
        description="Enroll N virtual agents, then for the duration let each heartbeat and "
        "send scan events (at Poisson times) the way the real agent does: one batch in "
        "flight, retries of the same bytes, Retry-After honoured on 429/503. Without "
        "--cloud a local `storeedge cloud serve` is started on --db (a temporary SQLite "
        f"file by default). ${ADMIN_TOKEN_ENV} (or --admin-token) must be the cloud's.",
    )
    fleet.add_argument("--agents", type=int, default=100, metavar="N", help="virtual agents")
    fleet.add_argument(
        "--events-per-min", type=float, default=6.0, metavar="R", help="events per agent per minute"
    )
    fleet.add_argument("--duration", type=float, default=60.0, metavar="S", help="seconds to run")
    fleet.add_argument(
        "--cloud",
        action="append",
        metavar="URL",
        help="cloud URL; repeat for several replicas (agents are spread over them)",
    )
    fleet.add_argument("--db", metavar="URL", help="database of the local cloud (no --cloud)")
    fleet.add_argument("--admin-token", metavar="TOKEN", help=f"default ${ADMIN_TOKEN_ENV}")
    fleet.add_argument("--heartbeat", type=float, default=30.0, metavar="S", help="interval")
    fleet.add_argument(
        "--linger", type=float, default=0.0, metavar="S", help="wait this long to batch events"
    )
    fleet.add_argument(
        "--duplicate-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="fraction of batches sent twice, as if the first answer were lost",
    )
    fleet.add_argument(
        "--bad-rate", type=float, default=0.0, metavar="P", help="fraction of invalid events"
    )
    fleet.add_argument(
        "--connections",
        type=int,
        default=0,
        help="HTTP connections per URL (default 0: one per agent as needed, like a real fleet)",
    )
    fleet.add_argument("--seed", type=int, default=1, help="random seed of the traffic")
    fleet.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    fleet.add_argument("--quiet", action="store_true", help="no live view, summary only")
    fleet.set_defaults(func=fleet_command)


def fleet_command(args: argparse.Namespace) -> int:
    """Run the fleet; exit 0 when nothing was left undelivered or dead-lettered."""
    import asyncio
    import contextlib
    import signal

    from rich.console import Console
    from rich.live import Live

    from sim.display import live_view, summary_table
    from sim.fleet import Fleet, FleetOptions
    from sim.local import local_cloud

    for name in ("agents", "duration", "heartbeat"):
        if getattr(args, name) <= 0:
            print(f"error: --{name} must be positive", file=sys.stderr)
            return 2
    for name in ("events_per_min", "linger", "connections"):
        if getattr(args, name) < 0:
            print(f"error: --{name.replace('_', '-')} must not be negative", file=sys.stderr)
            return 2
    for name in ("duplicate_rate", "bad_rate"):
        if not 0 <= getattr(args, name) <= 1:
            print(f"error: --{name.replace('_', '-')} must be within 0..1", file=sys.stderr)
            return 2
    token = args.admin_token or os.environ.get(ADMIN_TOKEN_ENV)
    if args.cloud and not token:
        print(f"error: set ${ADMIN_TOKEN_ENV} or --admin-token to the cloud's", file=sys.stderr)
        return 2
    console = Console(stderr=True)

    async def main(clouds: list[str], admin_token: str) -> dict[str, Any]:
        options = FleetOptions(
            clouds=tuple(url.rstrip("/") for url in clouds),
            admin_token=admin_token,
            agents=args.agents,
            events_per_min=args.events_per_min,
            duration_s=args.duration,
            heartbeat_s=args.heartbeat,
            linger_s=args.linger,
            duplicate_rate=args.duplicate_rate,
            bad_rate=args.bad_rate,
            connections=args.connections,
            seed=args.seed,
        )
        fleet = Fleet(options)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, fleet.stop.set)
        if args.quiet or not console.is_terminal:
            return await fleet.run()
        with Live(live_view(fleet), console=console, refresh_per_second=4, transient=True) as live:
            ticker = asyncio.create_task(_refresh(live, fleet))
            try:
                return await fleet.run()
            finally:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker

    try:
        with local_cloud(args.cloud, args.db, token) as (clouds, admin_token):
            if not args.cloud:
                console.print(f"local cloud at {clouds[0]}")
            summary = _run(main(clouds, admin_token))
    except PermissionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    Console().print(summary_table(summary))
    if args.json:
        import json

        with open(args.json, "w") as out:
            json.dump(summary, out, indent=2)
    lost = summary["events"].get("undelivered", 0) + summary["events"].get("dead_lettered", 0)
    return 0 if lost == 0 and summary["agents"] == args.agents else 1


async def _refresh(live: Any, fleet: Any) -> None:
    import asyncio

    from sim.display import live_view

    while True:
        live.update(live_view(fleet))
        await asyncio.sleep(0.25)


def _run(coro: Any) -> Any:
    """asyncio.run on uvloop when installed: 10,000 agents are a lot of timers."""
    import asyncio

    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
