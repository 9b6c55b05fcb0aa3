"""`storeedge hw …`: the device emulators, runnable on their own (printer and mirror come later)."""

import argparse
import itertools
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from hardware.emulators.scanner import EmulatorError, PtyScanner, realistic_scans

# Suffixes scanners are commonly set to send (devices.md §1.1).
TERMINATORS: dict[str, bytes] = {
    "crlf": b"\r\n",
    "cr": b"\r",
    "lf": b"\n",
    "tab": b"\t",
    "etx": b"\x03",
    "none": b"",
}
_ESCAPE = re.compile(rb"\\x([0-9A-Fa-f]{2})")


class _Terminated(Exception):
    """SIGTERM arrived; unwind and close the pty."""


def register(subparsers: Any) -> None:
    """Add `hw` and its device subcommands to the top-level parser."""
    hw = subparsers.add_parser(
        "hw", help="device emulators", description="Emulated devices for tests and demos."
    )
    devices = hw.add_subparsers(dest="device", required=True, metavar="DEVICE")
    _register_scanner(devices)


def _register_scanner(devices: Any) -> None:
    parser = devices.add_parser(
        "scanner",
        help="a serial barcode scanner on a pty",
        description="Emulate a serial scanner: sends one scan per stdin line, or generated scans.",
    )
    parser.add_argument(
        "--link", type=Path, required=True, help="symlink to the pty; point the agent's port here"
    )
    parser.add_argument(
        "--generate", type=int, metavar="N", help="send N generated scans (0: until stopped)"
    )
    parser.add_argument(
        "--rate", type=float, default=2.0, metavar="PER_S", help="scans per second (default 2)"
    )
    parser.add_argument("--aim", action="store_true", help="prefix generated scans with AIM ids")
    parser.add_argument(
        "--terminator", choices=list(TERMINATORS), default="crlf", help="suffix after each scan"
    )
    parser.add_argument(
        "--escapes", action="store_true", help=r"read \xNN in stdin lines as a byte (\x1d = GS)"
    )
    parser.add_argument("--seed", type=int, help="seed for reproducible generated scans")
    parser.set_defaults(func=run_scanner)


def run_scanner(args: argparse.Namespace) -> int:
    """Serve scans until input ends, N were sent, or SIGTERM/Ctrl-C; exit code."""
    if args.rate <= 0:
        print("error: --rate must be positive", file=sys.stderr)
        return 2
    restore = _handle_sigterm()
    try:
        with PtyScanner(args.link) as scanner:
            print(f"scanner: {args.link} -> {scanner.device_path}", file=sys.stderr, flush=True)
            scans: Iterable[bytes]
            if args.generate is not None:
                count = args.generate or None
                scans = itertools.islice(
                    realistic_scans(random.Random(args.seed), aim=args.aim), count
                )
            else:
                scans = _stdin_scans(args.escapes)
            _send(scanner, scans, TERMINATORS[args.terminator], 1.0 / args.rate)
            if not scanner.drain():
                print("warning: nobody read the last scans", file=sys.stderr)
        return 0
    except _Terminated:
        return 0
    except KeyboardInterrupt:
        return 130
    except EmulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        restore()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m hardware.cli scanner …`, for when the full CLI is not wanted."""
    parser = argparse.ArgumentParser(prog="storeedge")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["hw", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


def _send(scanner: PtyScanner, scans: Iterable[bytes], terminator: bytes, interval: float) -> None:
    next_at = time.monotonic()
    for data in scans:
        time.sleep(max(0.0, next_at - time.monotonic()))
        scanner.scan(data, terminator)
        print(str(data)[2:-1], flush=True)  # bytes repr shows GS and garbage as \x1d etc.
        next_at = max(next_at + interval, time.monotonic())  # late: no catch-up burst


def _stdin_scans(escapes: bool) -> Iterator[bytes]:
    for line in sys.stdin.buffer:
        data = line.rstrip(b"\r\n")
        if escapes:
            data = _ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), data)
        yield data


def _handle_sigterm() -> Callable[[], object]:
    """Make SIGTERM unwind like Ctrl-C (so the pty and link are removed); returns a restorer."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signals only reach the main thread; nothing to install

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, on_term)
    return lambda: signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
