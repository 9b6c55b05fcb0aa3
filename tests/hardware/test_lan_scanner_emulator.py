"""LanScannerServer misbehaves on cue: byte segments, merged segments, RST, silence, idle close."""

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from hardware.emulators.lan_scanner import LanScannerServer

Link = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def server() -> AsyncIterator[LanScannerServer]:
    async with LanScannerServer() as emulator:
        yield emulator


async def connect(server: LanScannerServer) -> Link:
    accepted = server.connections
    link = await asyncio.open_connection(server.host, server.port)
    async with asyncio.timeout(2.0):
        while server.connections == accepted:  # until the server side has it too
            await asyncio.sleep(0.005)
    return link


async def read_until(reader: asyncio.StreamReader, size: int) -> list[bytes]:
    """Every read() result until `size` bytes came, so tests can see the segments."""
    chunks: list[bytes] = []
    async with asyncio.timeout(2.0):
        while sum(map(len, chunks)) < size:
            chunks.append(await reader.read(4096))
    return chunks


async def test_a_scan_is_its_bytes_and_suffix(server: LanScannerServer) -> None:
    reader, writer = await connect(server)
    await server.scan("4006381333931")
    assert b"".join(await read_until(reader, 15)) == b"4006381333931\r\n"
    writer.close()


async def test_per_byte_sends_many_segments_and_merged_sends_one(server: LanScannerServer) -> None:
    reader, writer = await connect(server)
    reading = asyncio.create_task(read_until(reader, 18))  # reads while the pieces arrive
    await server.scan(b"]E04006381333931", per_byte=True)
    chunks = await reading
    assert b"".join(chunks) == b"]E04006381333931\r\n"
    assert len(chunks) > 3  # TCP_NODELAY and a gap: the reader sees the pieces
    await server.merged([b"A1", b"B2", b"C3"])
    assert await read_until(reader, 12) == [b"A1\r\nB2\r\nC3\r\n"]
    writer.close()


async def test_reset_clients_sends_rst(server: LanScannerServer) -> None:
    reader, writer = await connect(server)
    await server.reset_clients()
    with pytest.raises(ConnectionResetError):
        async with asyncio.timeout(2.0):
            await reader.read(100)
    writer.close()
    assert server.clients == 0


async def test_silent_links_stay_open_but_get_nothing(server: LanScannerServer) -> None:
    old_reader, old_writer = await connect(server)
    server.go_silent()
    assert server.clients == 0
    new_reader, new_writer = await connect(server)
    await server.scan("AFTER")
    assert b"".join(await read_until(new_reader, 7)) == b"AFTER\r\n"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await old_reader.read(100)
    assert not old_reader.at_eof()
    for writer in (old_writer, new_writer):
        writer.close()


async def test_idle_links_are_closed_but_busy_ones_are_not() -> None:
    async with LanScannerServer(idle_close_s=0.2) as server:
        reader, writer = await connect(server)
        for _ in range(3):  # traffic every 0.1 s keeps the link
            await asyncio.sleep(0.1)
            await server.scan("X")
        assert server.clients == 1
        async with asyncio.timeout(2.0):
            while await reader.read(100):
                pass  # EOF: the alive check closed the quiet link
        writer.close()
        assert server.connections == 1


async def test_close_stops_listening(server: LanScannerServer) -> None:
    port = server.port
    await server.close()
    await server.close()  # idempotent
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))
