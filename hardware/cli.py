"""`storeedge hw …`: the device emulators, runnable on their own (printer and mirror come later)."""

import argparse
import contextlib
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
UNPLUGGED_POLL_S = 0.05  # how often a scan waiting for the replug looks again


class _Terminated(Exception):
    """SIGTERM arrived; unwind and close the pty."""


def register(subparsers: Any) -> None:
    """Add `hw` and its device subcommands to the top-level parser."""
    hw = subparsers.add_parser(
        "hw", help="device emulators", description="Emulated devices for tests and demos."
    )
    devices = hw.add_subparsers(dest="device", required=True, metavar="DEVICE")
    _register_scanner(devices)
    _register_mirror(devices)
    _register_printer(devices)
    _register_lan_scanner(devices)
    _register_hid_scanner(devices)


def _register_scanner(devices: Any) -> None:
    parser = devices.add_parser(
        "scanner",
        help="a serial barcode scanner on a pty",
        description="Emulate a serial scanner: sends one scan per stdin line, or generated scans.",
        epilog="The USB cable from the command line: `kill -USR1 PID` unplugs the scanner (the "
        "pty goes away, the link is removed, a reader sees EIO); `kill -USR2 PID` plugs it back "
        "in (a new pty behind the same link). Scans due while unplugged wait for the replug; "
        "one cut off mid-scan is sent again whole. SIGTERM or Ctrl-C exits.",
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
        with PtyScanner(args.link) as scanner, _usb_cable_signals(scanner):
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


def _register_mirror(devices: Any) -> None:
    parser = devices.add_parser(
        "mirror",
        help="a smart mirror on HTTP, advertised by mDNS",
        description="Emulate a smart mirror (docs/MIRRORS.md): /info, /events and /display on "
        "HOST:PORT, announced over mDNS on HOST, with generated shopper sessions.",
    )
    parser.add_argument("--id", default="mirror-emu-1", help="the mirror's id (TXT id, /info)")
    parser.add_argument("--host", default="127.0.0.1", help="IPv4 address to serve and announce")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: any free one)")
    parser.add_argument(
        "--pace", type=float, default=2.0, metavar="S",
        help="about S seconds between shopper actions (0: no generated traffic)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, help="seed for reproducible shopper traffic")
    parser.add_argument("--no-mdns", action="store_true", help="do not announce over mDNS")
    parser.set_defaults(func=run_mirror)


def run_mirror(args: argparse.Namespace) -> int:
    """Serve the mirror until SIGTERM (exit 0) or Ctrl-C (130); events go to stdout as JSON."""
    import asyncio
    import ipaddress

    try:
        host = ipaddress.IPv4Address(args.host)
    except ValueError:
        host = None
    if host is None or host.is_unspecified:
        print("error: --host must be one IPv4 address (it is announced)", file=sys.stderr)
        return 2
    if args.pace < 0 or not 0 <= args.port <= 65535:
        print("error: --pace must be >= 0 and --port within 0..65535", file=sys.stderr)
        return 2
    if not re.fullmatch(r"[A-Za-z0-9_.:\-]{1,64}", args.id):  # protocol.base.Id
        print("error: --id: letters, digits and _ . : - only, at most 64", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve_mirror(args))
    except KeyboardInterrupt:
        return 130


async def _serve_mirror(args: argparse.Namespace) -> int:
    import asyncio

    from hardware.emulators.mirror import MirrorEmulator, shopper_traffic

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with MirrorEmulator(args.id, args.host, args.port, mdns=not args.no_mdns) as mirror:
            print(f"mirror {args.id}: {mirror.url}", file=sys.stderr, flush=True)
            traffic = None
            if args.pace > 0:
                traffic = asyncio.create_task(
                    shopper_traffic(
                        mirror,
                        random.Random(args.seed),
                        args.pace,
                        on_event=lambda event: print(
                            event.model_dump_json(exclude_none=True), flush=True
                        ),
                    )
                )
            await stop.wait()
            if traffic is not None:
                traffic.cancel()
                await asyncio.gather(traffic, return_exceptions=True)
    except OSError as exc:  # the port is taken, or the address is not this host's
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    return 0


def _register_printer(devices: Any) -> None:
    parser = devices.add_parser(
        "printer",
        help="an ESC/POS receipt printer on TCP or a pty",
        description="Emulate an ESC/POS printer (docs/PRINTERS.md): answers DLE EOT status, "
        "prints each received receipt as text on stdout, optionally as PNG too.",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=int, metavar="PORT", help="listen on TCP PORT (0: any free)")
    where.add_argument("--link", type=Path, help="symlink to a pty; point the agent's port here")
    parser.add_argument("--host", default="127.0.0.1", help="address for --tcp (default loopback)")
    parser.add_argument("--png-dir", type=Path, help="also save each receipt as a PNG here")
    parser.add_argument(
        "--chinese-default", action="store_true",
        help="power up in Chinese (GB18030) mode, as many CN printers do",
    )  # fmt: skip
    parser.set_defaults(func=run_printer)


def run_printer(args: argparse.Namespace) -> int:
    """Serve the printer until SIGTERM (exit 0) or Ctrl-C (130); receipts go to stdout."""
    import asyncio

    if args.tcp is not None and not 0 <= args.tcp <= 65535:
        print("error: --tcp must be within 0..65535", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve_printer(args))
    except KeyboardInterrupt:
        return 130


async def _serve_printer(args: argparse.Namespace) -> int:
    import asyncio

    from hardware.emulators.printer import PrinterEmulator
    from hardware.emulators.receipt import Receipt, to_png, to_text

    if args.png_dir is not None:
        args.png_dir.mkdir(parents=True, exist_ok=True)
    numbers = itertools.count(1)
    started = time.strftime("%Y%m%d-%H%M%S")

    def show(receipt: Receipt) -> None:
        n = next(numbers)
        print(f"--- receipt {n} ---\n{to_text(receipt)}", end="", flush=True)
        if args.png_dir is not None:
            to_png(receipt, args.png_dir / f"receipt-{started}-{n:04d}.png")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with PrinterEmulator(chinese_default=args.chinese_default, on_receipt=show) as emu:
            if args.tcp is not None:
                port = await emu.start_tcp(args.host, args.tcp)
                print(f"printer: listening on {args.host}:{port}", file=sys.stderr, flush=True)
            else:
                path = emu.start_pty(args.link)
                print(f"printer: {args.link} -> {path}", file=sys.stderr, flush=True)
            await stop.wait()
    except OSError as exc:  # the port is taken, or the link's folder is missing
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    return 0


def _add_scan_source(parser: Any) -> None:
    """The options every scanner emulator shares: what to send and how fast."""
    parser.add_argument(
        "--generate", type=int, metavar="N", help="send N generated scans (0: until stopped)"
    )
    parser.add_argument(
        "--rate", type=float, default=2.0, metavar="PER_S", help="scans per second (default 2)"
    )
    parser.add_argument("--aim", action="store_true", help="prefix generated scans with AIM ids")
    parser.add_argument(
        "--escapes", action="store_true", help=r"read \xNN in stdin lines as a byte (\x1d = GS)"
    )
    parser.add_argument("--seed", type=int, help="seed for reproducible generated scans")


def _scan_source(args: argparse.Namespace) -> Iterable[bytes]:
    if args.generate is None:
        return _stdin_scans(args.escapes)
    scans = realistic_scans(random.Random(args.seed), aim=args.aim)
    return itertools.islice(scans, args.generate or None)


def _register_lan_scanner(devices: Any) -> None:
    parser = devices.add_parser(
        "lan-scanner",
        help="a scanner behind a serial device server, on TCP",
        description="Emulate a serial-to-Ethernet box in TCP server mode (docs/SCANNERS.md): "
        "pushes one scan per stdin line, or generated scans, to every connected client.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=4001, help="TCP port (default 4001, Moxa's)")
    parser.add_argument("--per-byte", action="store_true", help="one TCP segment per byte")
    parser.add_argument(
        "--idle-close", type=float, metavar="S", help="close links idle for S seconds"
    )
    _add_scan_source(parser)
    parser.set_defaults(func=run_lan_scanner)


def run_lan_scanner(args: argparse.Namespace) -> int:
    """Serve scans until input ends, N were sent, or SIGTERM/Ctrl-C; exit code."""
    import asyncio

    if args.rate <= 0 or not 0 <= args.port <= 65535:
        print("error: --rate must be positive and --port within 0..65535", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve_lan_scanner(args))
    except KeyboardInterrupt:
        return 130


async def _serve_lan_scanner(args: argparse.Namespace) -> int:
    import asyncio

    from hardware.emulators.lan_scanner import LanScannerServer

    loop = asyncio.get_running_loop()
    scans: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=16)

    def produce() -> None:  # a daemon thread: a blocked stdin read must not hold up exit
        with contextlib.suppress(RuntimeError):  # the loop is gone: we are exiting
            for data in _lazy(args):
                asyncio.run_coroutine_threadsafe(scans.put(data), loop).result()

    async def send(server: LanScannerServer) -> None:
        while (data := await scans.get()) is not None:
            await server.wait_for_clients(timeout_s=None)  # a box with no client drops data
            await server.scan(data, per_byte=args.per_byte)
            print(str(data)[2:-1], flush=True)
            await asyncio.sleep(1.0 / args.rate)

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with LanScannerServer(args.host, args.port, idle_close_s=args.idle_close) as server:
            print(f"lan-scanner: listening on {args.host}:{server.port}", file=sys.stderr)
            threading.Thread(target=produce, daemon=True).start()
            sender = asyncio.create_task(send(server))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({sender, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in (sender, stopper):
                task.cancel()
            await asyncio.gather(sender, stopper, return_exceptions=True)
    except OSError as exc:  # the port is taken, or the address is not this host's
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    return 0


def _lazy(args: argparse.Namespace) -> Iterator[bytes | None]:
    """The scans, then None to say there are no more."""
    yield from _scan_source(args)
    yield None


def _register_hid_scanner(devices: Any) -> None:
    parser = devices.add_parser(
        "hid-scanner",
        help="a USB keyboard-wedge scanner, as input_event records into a FIFO",
        description="Emulate a keyboard-wedge scanner (docs/SCANNERS.md): types one scan per "
        "stdin line, or generated scans, as evdev records into a FIFO at --path.",
    )
    parser.add_argument("--path", type=Path, required=True, help="FIFO to create; the agent's path")
    parser.add_argument("--layout", choices=["us", "uk", "de", "fr"], default="us")
    parser.add_argument("--gs", default="ctrl", help="how FNC1 is typed: ctrl, F1..F12 or a char")
    parser.add_argument(
        "--terminator", choices=["enter", "kpenter", "tab", "none"], default="enter"
    )
    _add_scan_source(parser)
    parser.set_defaults(func=run_hid_scanner)


def run_hid_scanner(args: argparse.Namespace) -> int:
    """Type scans until input ends, N were typed, or SIGTERM/Ctrl-C; exit code."""
    from hardware.emulators.hid_scanner import HidEmulatorError, HidScannerEmulator

    if args.rate <= 0:
        print("error: --rate must be positive", file=sys.stderr)
        return 2
    terminator = None if args.terminator == "none" else args.terminator
    restore = _handle_sigterm()
    try:
        with HidScannerEmulator(args.path, args.layout, gs=args.gs) as scanner:
            print(f"hid-scanner: {args.path} ({args.layout})", file=sys.stderr, flush=True)
            for data in _scan_source(args):
                try:
                    scanner.scan(data.decode("utf-8"), terminator)
                except (UnicodeDecodeError, HidEmulatorError) as exc:
                    print(f"skipped {data!r}: {exc}", file=sys.stderr)
                    continue
                print(str(data)[2:-1], flush=True)
                time.sleep(1.0 / args.rate)
            if not scanner.drain():
                print("warning: nobody read the last scans", file=sys.stderr)
        return 0
    except _Terminated:
        return 0
    except KeyboardInterrupt:
        return 130
    except (OSError, HidEmulatorError) as exc:
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
        _send_whole(scanner, data + terminator)
        print(str(data)[2:-1], flush=True)  # bytes repr shows GS and garbage as \x1d etc.
        next_at = max(next_at + interval, time.monotonic())  # late: no catch-up burst


def _send_whole(scanner: PtyScanner, data: bytes) -> None:
    """Send one scan; while unplugged wait for the replug, and resend one cut off by an unplug."""
    while True:
        while not scanner.plugged:
            time.sleep(UNPLUGGED_POLL_S)
        device = scanner.device_path
        try:
            scanner.send_raw(data)
            return
        except (EmulatorError, OSError):  # OSError: the fd closed under a write (EBADF)
            if scanner.plugged and scanner.device_path == device:
                raise  # the same pty, still failing: nobody is reading
            # Unplugged mid-scan (SIGUSR1): the partial scan died with the pty.


@contextlib.contextmanager
def _usb_cable_signals(scanner: PtyScanner) -> Iterator[None]:
    """SIGUSR1 unplugs `scanner`, SIGUSR2 plugs it back in, for the life of the block."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals only reach the main thread; nothing to install
        return

    def unplug(signum: int, frame: FrameType | None) -> None:
        if scanner.plugged:
            scanner.unplug()
            print("scanner: unplugged (SIGUSR1)", file=sys.stderr, flush=True)

    def replug(signum: int, frame: FrameType | None) -> None:
        if not scanner.plugged:
            scanner.replug()
            print(f"scanner: plugged in (SIGUSR2): {scanner.link} -> {scanner.device_path}",
                  file=sys.stderr, flush=True)  # fmt: skip

    previous = [signal.signal(signal.SIGUSR1, unplug), signal.signal(signal.SIGUSR2, replug)]
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous[0])
        signal.signal(signal.SIGUSR2, previous[1])


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
