"""Hostile input for every parser the agent and the cloud run on bytes they do not control.

Each target takes arbitrary bytes and must either give a result that keeps its contract or
raise the error its callers handle (a "clear error"); anything else is a bug. The same targets
run under hypothesis in CI (tests/faults/test_hostile_input.py) and, many more times, from
seeded mutations of valid inputs in `bench/chaos` (`fuzz`).
"""

import base64
import contextlib
import gzip
import json
import random
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agent.config import parse_config
from agent.devices.mirror.errors import MirrorProtocolError
from agent.devices.mirror.stream import MirrorStream
from agent.devices.printer.errors import StatusError
from agent.devices.printer.status import StatusFramer, decode_asb
from agent.devices.scanner.aim import split_aim
from agent.devices.scanner.decode import decode_frame
from agent.devices.scanner.framer import Frame, ScanFramer
from agent.devices.scanner.hid import EVENT, HidDecoder
from agent.errors import ConfigError
from cloud.batch import check_events, decode_body, parse_batch
from cloud.errors import RequestError
from cloud.storage.base import AgentIdentity
from hardware.emulators.escpos_parse import EscPosParser
from protocol.coupons import CouponError, parse_token
from protocol.events import EVENT_ADAPTER

MAX_FRAME = 256
HID_MAX_CHARS = 128
BODY_LIMIT = 64 * 1024
AGENT = AgentIdentity(agent_id="agt-fuzz", store_id="store-fuzz")


def _chunks(data: bytes) -> list[bytes]:
    # The first byte picks the chunking, so one input covers framing across reads too.
    step = 1 + (data[0] % 7 if data else 0)
    return [data[i : i + step] for i in range(0, len(data), step)]


def scan_framer(data: bytes) -> None:
    """Frames are never empty, never past the cap, and nothing stays buffered after flush."""
    framer = ScanFramer(
        [b"\r\n", b"\r", b"\n", b"\t"], idle_timeout_s=0.05, max_frame_bytes=MAX_FRAME
    )
    frames: list[Frame] = []
    for n, chunk in enumerate(_chunks(data)):
        frames += framer.feed(chunk, now=n * 0.03)
    frames += framer.flush()
    for frame in frames:
        assert 0 < len(frame.raw) <= MAX_FRAME, len(frame.raw)
    assert framer.deadline() is None


def scan_decode(data: bytes) -> None:
    """Any frame decodes to a payload that validates, raw bytes kept exactly."""
    payload = decode_frame(Frame(data[:MAX_FRAME] or b"\x00"))
    assert base64.b64decode(payload.raw_b64) == (data[:MAX_FRAME] or b"\x00")
    payload.model_validate(payload.model_dump())
    # Reaches the wire as a whole event the cloud's validator accepts.
    event = {
        "event_id": "0190b6a2-1234-7abc-8def-0123456789ab", "agent_id": AGENT.agent_id,
        "store_id": AGENT.store_id, "seq": 1, "device_id": "scanner-1", "kind": "scan",
        "occurred_at": "2026-01-01T00:00:00Z", "schema": 1,
        "payload": payload.model_dump(mode="json"),
    }  # fmt: skip
    EVENT_ADAPTER.validate_json(json.dumps(event))


def aim(data: bytes) -> None:
    """An AIM prefix, when found, is split off the front and nothing else changes."""
    aim_id, rest = split_aim(data)
    if aim_id is None:
        assert rest == data
    else:
        assert data.endswith(rest)
        assert len(data) - len(rest) == 3


def hid(data: bytes) -> None:
    """Key events in any chunking decode to bounded scans; garbage is counted, not raised."""
    decoder = HidDecoder("us", inter_key_timeout_s=0.1, max_chars=HID_MAX_CHARS)
    scans = []
    for n, chunk in enumerate(_chunks(data)):
        scans += decoder.feed(chunk, now=n * 0.01)
        scans += decoder.poll(n * 0.01)
    scans += decoder.flush()
    for scan in scans:
        assert len(scan.text) <= HID_MAX_CHARS


def hid_events(data: bytes) -> None:
    """Well-formed evdev records with hostile types, codes and values (the common case)."""
    records = b"".join(
        EVENT.pack(0, i * 1000, data[i] % 5, data[(i + 1) % len(data)], data[i] % 3 - 1)
        for i in range(len(data))
    )
    hid(records)


def printer_status(data: bytes) -> None:
    """Replies, ASB blocks and junk from a printer in any chunking: items, never an error."""
    framer = StatusFramer()
    framer.expect(1, 2, 3, 4)
    for chunk in _chunks(data):
        framer.feed(chunk)
    if len(data) >= 4:
        # A block that breaks the header pattern says so with StatusError.
        with contextlib.suppress(StatusError):
            decode_asb(data[:4])


def escpos_emulator(data: bytes) -> None:
    """The printer emulator's parser survives any print stream (the agent's bugs included)."""
    parser = EscPosParser()
    for chunk in _chunks(data):
        parser.feed(chunk)


def mirror_stream(data: bytes) -> None:
    """Frames from a mirror: a step, or MirrorProtocolError when the stream cannot go on."""
    stream = MirrorStream("mirror-1")
    stream.subscribe_params()
    hello = '{"type":"hello","mirror_id":"mirror-1","epoch":"e1","first":1,"last":5}'
    for frame in (hello, data.decode("utf-8", "replace"), data):
        try:
            stream.receive(frame)
        except MirrorProtocolError:
            return


def coupon_token(data: bytes) -> None:
    """Any text is a parsed token or a CouponError (BadFormat, Truncated, Oversized…)."""
    for text in (data.decode("utf-8", "replace"), "SE1." + data.decode("latin-1")):
        with contextlib.suppress(CouponError):
            parse_token(text)


def agent_config(data: bytes) -> None:
    """agent.toml from a stranger: a config, or ConfigError naming where."""
    try:
        parse_config(data.decode("utf-8", "replace"))
    except ConfigError as exc:
        if not str(exc):
            raise AssertionError("a ConfigError without a message") from exc


def ingest_body(data: bytes) -> None:
    """A request body (gzip or not): per-event verdicts, or a RequestError for the batch."""
    for encoding in (None, "gzip"):
        try:
            body = decode_body(data, encoding, BODY_LIMIT)
            events = parse_batch(body)
        except RequestError:
            continue
        checked = check_events(events, AGENT)
        results = checked.complete([True] * len(checked.rows))
        assert len(results) == len(events)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "scan_framer": scan_framer,
    "scan_decode": scan_decode,
    "aim": aim,
    "hid": hid,
    "hid_events": hid_events,
    "printer_status": printer_status,
    "escpos_emulator": escpos_emulator,
    "mirror_stream": mirror_stream,
    "coupon_token": coupon_token,
    "agent_config": agent_config,
    "ingest_body": ingest_body,
}


def seeds() -> dict[str, list[bytes]]:
    """Valid inputs per target, the starting points of mutation."""
    now = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    event = {
        "event_id": "0190b6a2-1234-7abc-8def-0123456789ab", "agent_id": AGENT.agent_id,
        "store_id": AGENT.store_id, "seq": 1, "device_id": "scanner-1", "kind": "scan",
        "occurred_at": now, "schema": 1, "payload": {"raw_b64": "QUJD", "text": "ABC"},
    }  # fmt: skip
    batch = json.dumps({"events": [event, {**event, "seq": 2}]}).encode()
    config = (
        b'[agent]\nstate_dir = "/tmp/x"\n[cloud]\nurl = "https://c.example"\n'
        b'[[devices]]\nid = "s1"\nkind = "scanner"\ntransport = "serial"\nport = "/dev/x"\n'
    )
    tomllib.loads(config.decode())
    hello = b'{"type":"hello","mirror_id":"mirror-1","epoch":"e1","first":1,"last":5}'
    scan = b"]E04006381333931\r\n]C1(01)09506000134352\x1d10ABC\r\n"
    keys = b"".join(EVENT.pack(0, 0, 1, code, 1) + EVENT.pack(0, 0, 1, code, 0) for code in
                    (2, 3, 4, 28))  # fmt: skip
    return {
        "scan_framer": [scan],
        "scan_decode": [scan],
        "aim": [b"]E04006381333931", b"]Q1https://x"],
        "hid": [keys],
        "hid_events": [bytes(range(64))],
        "printer_status": [b"\x16\x12\x12\x12", b"\x14\x00\x00\x0f"],
        "escpos_emulator": [b"\x1b@hello\n\x1dV\x00\x1d(k\x03\x001C\x03"],
        "mirror_stream": [hello, b'{"type":"session","counter":2}'],
        "coupon_token": [b"SE1.AQAAAAEAAAAB"],
        "agent_config": [config],
        "ingest_body": [batch, gzip.compress(batch)],
    }


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A few random edits: bit flips, insertions, deletions, truncation, repetition."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        choice = rng.random()
        if choice < 0.3 and out:
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        elif choice < 0.5:
            i = rng.randrange(len(out) + 1)
            out[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif choice < 0.65 and out:
            i = rng.randrange(len(out))
            del out[i : i + rng.randint(1, 16)]
        elif choice < 0.75:
            out = out[: rng.randrange(len(out) + 1)]
        elif choice < 0.85 and out:
            i = rng.randrange(len(out))
            out[i:i] = out[i : i + rng.randint(1, 32)] * rng.randint(2, 20)
        else:
            out += bytes(rng.choice(b'\r\n\t\x1b\x1d\x10{}[]",:0\x00\xff') for _ in range(4))
    return bytes(out)


@dataclass
class FuzzReport:
    """Inputs tried and failures found, per target."""

    tried: Counter[str] = field(default_factory=Counter)
    failures: dict[str, list[str]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Inputs tried over all targets."""
        return sum(self.tried.values())


def fuzz(iterations: int, seed: int = 1) -> FuzzReport:
    """`iterations` inputs per target: mutated seeds, and now and then pure random bytes."""
    rng = random.Random(seed)
    report = FuzzReport()
    corpus = seeds()
    for name, target in TARGETS.items():
        for _ in range(iterations):
            if rng.random() < 0.2:
                data = bytes(rng.randrange(256) for _ in range(rng.randrange(512)))
            else:
                data = mutate(rng.choice(corpus.get(name) or [b""]), rng)
            report.tried[name] += 1
            try:
                target(data)
            except Exception as exc:  # a crash: remember the input to reproduce it
                report.failures.setdefault(name, []).append(f"{exc!r}: {data!r}"[:500])
    return report
