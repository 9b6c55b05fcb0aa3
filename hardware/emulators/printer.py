"""An ESC/POS receipt printer served on TCP (port-9100 style) and on a pty behind a stable link.

Run it inside an event loop: `await emulator.start_tcp()` and/or `emulator.start_pty(link)`.
Both transports feed one PrinterCore, as one printer with a LAN card and a serial port would.
"""

import asyncio
import contextlib
import logging
import os
import tty
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from hardware.emulators.printer_core import (
    STATUS_FLAGS,
    Output,
    PrinterCore,
    PrinterState,
    StatusMode,
)
from hardware.emulators.receipt import Receipt

__all__ = ["STATUS_FLAGS", "PrinterEmulator", "PrinterState", "StatusMode"]

log = logging.getLogger(__name__)

READ_SIZE = 4096


class PrinterEmulator:
    """One emulated printer: sensors via `set_status`, `power_off`/`power_on`, `receipts`."""

    def __init__(
        self, *, chinese_default: bool = False, on_receipt: Callable[[Receipt], None] | None = None
    ) -> None:
        self.core = PrinterCore(chinese_default=chinese_default, on_receipt=on_receipt)
        self.powered = True
        self.connections = 0  # TCP connections accepted over the emulator's life
        self.host = "127.0.0.1"
        self.port = 0
        self.link: Path | None = None
        self.device_path = ""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._master: int | None = None
        self._slave: int | None = None

    # --- what tests and the CLI use ----------------------------------------------------

    @property
    def receipts(self) -> list[Receipt]:
        """Every receipt printed (cut) so far, oldest first."""
        return self.core.receipts

    @property
    def state(self) -> PrinterState:
        """The sensors as they are now."""
        return self.core.state

    @property
    def status_mode(self) -> StatusMode:
        """How DLE EOT is answered (normal, silent, junk)."""
        return self.core.status_mode

    @status_mode.setter
    def status_mode(self, mode: StatusMode) -> None:
        self.core.status_mode = StatusMode(mode)

    def set_status(self, **changes: bool) -> None:
        """Flip sensors (PrinterState fields); ASB blocks and held-data replies go out at once."""
        self._send_everywhere(self.core.set_status(**changes))

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on `host:port` (0: any free port); returns the port, kept across power cycles."""
        self.host = host
        self._server = await asyncio.start_server(self._serve_tcp, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def start_pty(self, link: Path) -> str:
        """Serve on a new pty whose slave `link` points at; returns the pty's device path."""
        self.link = Path(link)
        self._open_pty()
        return self.device_path

    async def power_off(self) -> None:
        """Cut the power: connections reset, the port refuses, the pty vanishes, buffer lost."""
        self.powered = False
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()  # RST, as a printer losing power would (no FIN)
            await self._wait_handlers()
            self._server = None
        self._close_pty()
        self.core.power_cycle()

    async def power_on(self) -> None:
        """Power back on: listening on the same port again, a fresh pty behind the same link."""
        if self.powered:
            return
        self.powered = True
        if self.port:
            self._server = await asyncio.start_server(self._serve_tcp, self.host, self.port)
        if self.link is not None:
            self._open_pty()

    async def close(self) -> None:
        """Stop serving for good."""
        await self.power_off()
        if self.link is not None:
            self.link.unlink(missing_ok=True)

    async def __aenter__(self) -> "PrinterEmulator":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- TCP ------------------------------------------------------------------------------

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            while self.powered:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                out = self.core.receive(data)
                if out.reply:
                    writer.write(out.reply)
                if out.hang_up:
                    writer.transport.abort()
                    break
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            if task is not None:
                self._handlers.discard(task)

    async def _wait_handlers(self) -> None:
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=1.0)

    # --- pty ------------------------------------------------------------------------------

    def _open_pty(self) -> None:
        assert self.link is not None
        self._close_pty()
        self._master, self._slave = os.openpty()
        # Raw, so the tty layer neither echoes nor rewrites bytes (devices.md §4.2). The slave
        # stays open here too, so the master never sees EIO when the agent closes its end.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.device_path = os.ttyname(self._slave)
        tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(self.device_path, tmp)
        os.replace(tmp, self.link)  # atomic: the agent never sees a half-made link
        asyncio.get_running_loop().add_reader(self._master, self._on_pty_readable)

    def _close_pty(self) -> None:
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
        if self.link is not None and not self.powered:
            self.link.unlink(missing_ok=True)

    def _on_pty_readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            log.warning("pty read failed", exc_info=True)
            return
        out = self.core.receive(data)
        self._write_pty(out.reply)
        if out.hang_up:  # a serial printer cannot hang up; it just never answers
            log.info("link fault on a pty: what follows is dropped, no hang-up on serial")

    def _write_pty(self, data: bytes) -> None:
        if self._master is None or not data:
            return
        with contextlib.suppress(BlockingIOError):  # status bytes are tiny; a full pty drops them
            os.write(self._master, data)

    def _send_everywhere(self, out: Output) -> None:
        for writer in list(self._writers):
            if out.reply:
                writer.write(out.reply)
            if out.hang_up:
                writer.transport.abort()
        self._write_pty(out.reply)
