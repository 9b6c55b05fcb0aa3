"""A scanner behind a serial device server, as a TCP server on loopback (devices.md §1.4).

It pushes scans to every connected client and can misbehave the way device servers do:
split a scan into one segment per byte, merge several into one segment, reset links
(SO_LINGER 0 sends RST), keep links open but silent (a half-open peer), and close links
that stayed idle (Moxa's "TCP alive check").
"""

import asyncio
import contextlib
import socket
import struct
from types import TracebackType


class LanScannerServer:
    """`async with LanScannerServer() as s:` then point the agent at `s.host:s.port`."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, idle_close_s: float | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.idle_close_s = idle_close_s
        self.connections = 0  # accepted since start, for tests that count redials
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}
        self._silent: set[asyncio.StreamWriter] = set()
        self._active_at: dict[asyncio.StreamWriter, float] = {}  # last byte either way
        self._joined = asyncio.Condition()

    @property
    def clients(self) -> int:
        """Links open now that still get scans."""
        return len(self._live())

    async def start(self) -> int:
        """Listen; returns the port (an ephemeral one when constructed with 0)."""
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening and reset every link. Idempotent."""
        if self._server is not None:
            self._server.close()
            self._server = None
        tasks = list(self._clients.values())
        await self.reset_clients()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_for_clients(self, count: int = 1, timeout_s: float | None = 5.0) -> None:
        """Wait until at least `count` live links are open (None: however long it takes)."""
        async with asyncio.timeout(timeout_s), self._joined:
            await self._joined.wait_for(lambda: self.clients >= count)

    async def scan(
        self, data: str | bytes, terminator: bytes = b"\r\n", *, per_byte: bool = False
    ) -> None:
        """Send one scan and its suffix; `per_byte` puts each byte in its own TCP segment."""
        raw = (data.encode("utf-8") if isinstance(data, str) else data) + terminator
        await self.send_raw(raw, chunk=1 if per_byte else 0, gap_s=0.002 if per_byte else 0.0)

    async def merged(self, scans: list[bytes], terminator: bytes = b"\r\n") -> None:
        """Send several scans in one segment, as a device server's buffer flush does."""
        await self.send_raw(b"".join(s + terminator for s in scans))

    async def send_raw(self, data: bytes, *, chunk: int = 0, gap_s: float = 0.0) -> None:
        """Write bytes to every live link, in `chunk`-byte segments `gap_s` apart."""
        step = chunk if chunk > 0 else max(1, len(data))
        for start in range(0, len(data), step):
            if start and gap_s:
                await asyncio.sleep(gap_s)
            for writer in self._live():
                writer.write(data[start : start + step])
                self._active_at[writer] = asyncio.get_running_loop().time()
                with contextlib.suppress(ConnectionError):
                    await writer.drain()  # TCP_NODELAY is set: one write, one segment

    async def reset_clients(self) -> None:
        """Abort every link with RST (SO_LINGER on, timeout 0), as a rebooting box does."""
        for writer in list(self._clients):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._drop(writer)

    def go_silent(self) -> None:
        """Current links stay open but get nothing more, ever (the peer vanished, no FIN)."""
        self._silent.update(self._clients)

    async def __aenter__(self) -> "LanScannerServer":
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _live(self) -> list[asyncio.StreamWriter]:
        return [w for w in self._clients if w not in self._silent and not w.is_closing()]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        self._active_at[writer] = asyncio.get_running_loop().time()
        task = asyncio.current_task()
        assert task is not None
        self._clients[writer] = task
        async with self._joined:
            self._joined.notify_all()
        try:
            await self._watch(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.pop(writer, None)
            self._silent.discard(writer)
            self._active_at.pop(writer, None)
            writer.close()

    async def _watch(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read (and discard) what the host sends; close the link once idle for idle_close_s."""
        loop = asyncio.get_running_loop()
        while True:
            if self.idle_close_s is None:
                data = await reader.read(1024)
            else:
                idle_at = self._active_at.get(writer, loop.time()) + self.idle_close_s
                try:
                    async with asyncio.timeout_at(idle_at):
                        data = await reader.read(1024)
                except TimeoutError:
                    if loop.time() - self._active_at.get(writer, 0.0) < self.idle_close_s:
                        continue  # a scan went out meanwhile: not idle
                    return  # the alive check: a FIN to an idle link
            if not data:
                return
            self._active_at[writer] = loop.time()

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        task = self._clients.pop(writer, None)
        self._silent.discard(writer)
        writer.close()
        if task is not None and task is not asyncio.current_task():
            task.cancel()
