"""Byte pipes to a printer: TCP on asyncio streams, serial on pyserial off the event loop."""

import asyncio
import contextlib
import socket
import termios
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import serial

from agent.config import SerialPrinterConfig
from agent.devices.printer.errors import PrinterError

READ_SIZE = 4096
# A blocked serial read wakes this often, so closing or cancelling never waits longer.
SERIAL_READ_TIMEOUT_S = 0.05
# pyserial raises SerialException (an OSError); termios.error is not one (devices.md §4.4).
_PORT_ERRORS = (OSError, termios.error)


class LinkLost(PrinterError):
    """The connection is gone or never came up; the driver reconnects with backoff."""


class Link(Protocol):
    """A bidirectional byte stream to one printer."""

    describe: str

    async def read(self) -> bytes:
        """Some bytes (never empty); LinkLost on EOF or error."""
        ...

    async def write(self, data: bytes) -> None:
        """All of `data` handed to the OS; LinkLost on error."""
        ...

    async def close(self) -> None:
        """Release the connection; never raises."""
        ...


class TcpLink:
    """Raw TCP ("port 9100"): status bytes come back on the same socket (devices.md §2.4)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, describe: str):
        self._reader = reader
        self._writer = writer
        self.describe = describe

    @classmethod
    async def open(cls, host: str, port: int, timeout_s: float) -> "TcpLink":
        """Connect within `timeout_s`; LinkLost if refused, unreachable or too slow."""
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            raise LinkLost(f"cannot connect to {host}:{port}: {exc or 'timed out'}") from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:  # a printer unplugged from the LAN sends no FIN: let TCP notice
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return cls(reader, writer, f"{host}:{port}")

    async def read(self) -> bytes:
        """Some bytes; LinkLost when the printer closes or resets the connection."""
        try:
            data = await self._reader.read(READ_SIZE)
        except OSError as exc:
            raise LinkLost(f"{self.describe}: {exc}") from exc
        if not data:
            raise LinkLost(f"{self.describe}: printer closed the connection")
        return data

    async def write(self, data: bytes) -> None:
        """Write and drain; LinkLost if the connection broke."""
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            raise LinkLost(f"{self.describe}: {exc}") from exc

    async def close(self) -> None:
        """Close the socket; errors on a dead connection are ignored."""
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


class SerialLink:
    """A serial port; blocking pyserial calls run on the link's own two threads."""

    def __init__(self, port: Any, describe: str) -> None:
        self._port = port
        self.describe = describe
        # One thread reads, one writes: pyserial allows that pair concurrently on POSIX.
        self._reader = ThreadPoolExecutor(1, thread_name_prefix=f"printer-read:{describe}")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"printer-write:{describe}")

    @classmethod
    async def open(cls, config: SerialPrinterConfig) -> "SerialLink":
        """Open the port off the loop; LinkLost if it is missing, busy or refuses the settings."""

        def open_port() -> Any:
            return serial.Serial(
                port=config.port, baudrate=config.baudrate, bytesize=config.bytesize,
                parity=config.parity, stopbits=config.stopbits, timeout=SERIAL_READ_TIMEOUT_S,
                write_timeout=config.write_timeout_s, rtscts=config.rtscts,
                xonxoff=config.xonxoff,
                # flock: a second process on the port would take half of every status reply.
                exclusive=True,
            )  # fmt: skip

        try:
            port = await asyncio.to_thread(open_port)
        except (*_PORT_ERRORS, ValueError) as exc:
            raise LinkLost(f"cannot open {config.port}: {exc}") from exc
        return cls(port, config.port)

    async def read(self) -> bytes:
        """Some bytes; LinkLost when the port vanishes (unplug: EIO or an empty ready read)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data: bytes = await loop.run_in_executor(self._reader, self._read_once)
            except _PORT_ERRORS as exc:
                raise LinkLost(f"{self.describe}: {exc}") from exc
            if data:
                return data

    async def write(self, data: bytes) -> None:
        """Write everything; LinkLost on error or when the printer holds off past the timeout."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._writer, self._port.write, data)
        except (*_PORT_ERRORS, serial.SerialTimeoutException) as exc:
            raise LinkLost(f"{self.describe}: write failed: {exc}") from exc

    async def close(self) -> None:
        """Close the port once no call is running on it; never raises."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(*_PORT_ERRORS):
            await loop.run_in_executor(self._writer, self._port.close)
        self._reader.shutdown(wait=False)
        self._writer.shutdown(wait=False)

    def _read_once(self) -> bytes:
        data: bytes = self._port.read(self._port.in_waiting or 1)
        return data
