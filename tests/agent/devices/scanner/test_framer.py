"""ScanFramer: byte tables fed whole, split and byte by byte; idle flush; overlong; bounds."""

from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.devices.scanner.framer import Frame, ScanFramer

DEFAULT = [b"\r\n", b"\r", b"\n"]  # agent.config's default terminators
CRLF = [b"\r\n"]

Chunker = Callable[[bytes], list[bytes]]


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def threes(data: bytes) -> list[bytes]:
    return [data[i : i + 3] for i in range(0, len(data), 3)]


CHUNKERS = pytest.mark.parametrize("chunker", [whole, bytewise, threes])


def run(framer: ScanFramer, chunks: Sequence[bytes], now: float = 0.0) -> list[Frame]:
    frames: list[Frame] = []
    for chunk in chunks:
        frames += framer.feed(chunk, now)
    return frames


def raws(frames: list[Frame]) -> list[bytes]:
    return [f.raw for f in frames]


@CHUNKERS
@pytest.mark.parametrize(
    ("terminators", "stream", "expected"),
    [
        (CRLF, b"4006381333931\r\n96385074\r\n", [b"4006381333931", b"96385074"]),
        (DEFAULT, b"A\r\nB\rC\nD\r\n", [b"A", b"B", b"C", b"D"]),  # CRLF is one terminator
        (DEFAULT, b"A\rB\r\n", [b"A", b"B"]),  # CR followed by data is CR alone
        (CRLF, b"A\rB\nC\r\n", [b"A\rB\nC"]),  # lone CR/LF are data when only CRLF ends frames
        ([b"\x03"], b"\x02ABC\x03\x02DEF\x03", [b"\x02ABC", b"\x02DEF"]),  # STX … ETX framing
        ([b"\t"], b"123\t456\t", [b"123", b"456"]),
        (DEFAULT, b"]C10101234\x1d21XYZ\r\n", [b"]C10101234\x1d21XYZ"]),  # GS is data
        ([b"\n", b"\r\n"], b"A\r\nB\n", [b"A", b"B"]),  # longest wins whatever the order
        (DEFAULT, b"\xff\xfe\x00garbage\r\n", [b"\xff\xfe\x00garbage"]),
    ],
)
def test_frames_split_on_terminators(
    chunker: Chunker, terminators: list[bytes], stream: bytes, expected: list[bytes]
) -> None:
    framer = ScanFramer(terminators, idle_timeout_s=0.15, max_frame_bytes=64)
    assert raws(run(framer, chunker(stream))) == expected
    assert framer.buffered == 0


@CHUNKERS
def test_empty_frames_are_skipped_and_counted(chunker: Chunker) -> None:
    framer = ScanFramer(DEFAULT, idle_timeout_s=0.15, max_frame_bytes=64)
    assert raws(run(framer, chunker(b"\r\n\r\nA\r\n\n\r"))) == [b"A"]
    assert framer.flush() == []
    assert framer.counters["empty"] == 4  # CRLF, CRLF, LF, and the CR ended by flush


def test_cr_waits_for_a_possible_lf_then_the_idle_timeout_ends_the_frame() -> None:
    framer = ScanFramer(DEFAULT, idle_timeout_s=0.15, max_frame_bytes=64)
    assert framer.feed(b"ABC\r", now=0.0) == []
    assert framer.deadline() == pytest.approx(0.15)
    assert framer.poll(0.1) == []
    assert raws(framer.poll(0.15)) == [b"ABC"]  # the CR was the terminator, not data
    assert framer.deadline() is None


def test_cr_followed_by_lf_in_the_next_read_is_one_terminator() -> None:
    framer = ScanFramer(DEFAULT, idle_timeout_s=0.15, max_frame_bytes=64)
    assert framer.feed(b"ABC\r", now=0.0) == []
    assert raws(framer.feed(b"\nDEF\r", now=0.01)) == [b"ABC"]
    assert raws(framer.feed(b"GHI\r\n", now=0.02)) == [b"DEF", b"GHI"]
    assert framer.counters["empty"] == 0


def test_suffixless_scanner_is_framed_by_the_idle_timeout_which_restarts_per_byte() -> None:
    framer = ScanFramer(DEFAULT, idle_timeout_s=0.15, max_frame_bytes=64)
    assert framer.feed(b"40063", now=0.0) == []
    assert framer.feed(b"81333931", now=0.1) == []
    assert framer.poll(0.2) == []  # 0.1 s since the last byte
    assert raws(framer.poll(0.25)) == [b"4006381333931"]
    assert framer.counters["idle_flushed"] == 1


def test_a_late_read_flushes_the_stale_partial_before_the_new_bytes() -> None:
    framer = ScanFramer(CRLF, idle_timeout_s=0.15, max_frame_bytes=64)
    assert framer.feed(b"12", now=0.0) == []
    assert raws(framer.feed(b"34\r\n", now=1.0)) == [b"12", b"34"]


def test_zero_idle_timeout_never_flushes() -> None:
    framer = ScanFramer(CRLF, idle_timeout_s=0, max_frame_bytes=64)
    framer.feed(b"partial", now=0.0)
    assert framer.deadline() is None
    assert framer.poll(1e9) == []
    assert raws(framer.feed(b"\r\n", now=1e9)) == [b"partial"]


def test_flush_keeps_a_trailing_cr_as_data_when_only_crlf_terminates() -> None:
    framer = ScanFramer(CRLF, idle_timeout_s=0.15, max_frame_bytes=64)
    framer.feed(b"ABC\r", now=0.0)
    assert raws(framer.flush()) == [b"ABC\r"]


@CHUNKERS
def test_overlong_frame_is_emitted_once_cut_and_the_rest_discarded(chunker: Chunker) -> None:
    framer = ScanFramer(DEFAULT, idle_timeout_s=0.15, max_frame_bytes=8)
    frames = run(framer, chunker(b"0123456789ABCDEF\r\nOK\r\n12345678\r\n"))
    assert frames == [Frame(b"01234567", overlong=True), Frame(b"OK"), Frame(b"12345678")]
    assert framer.counters["overlong"] == 1


def test_overlong_tail_without_terminator_ends_at_the_idle_timeout() -> None:
    framer = ScanFramer(CRLF, idle_timeout_s=0.15, max_frame_bytes=8)
    assert framer.feed(b"0123456789", now=0.0) == [Frame(b"01234567", overlong=True)]
    assert framer.feed(b"more junk", now=0.1) == []
    assert framer.poll(0.3) == []  # the tail is dropped, not emitted
    assert raws(framer.feed(b"OK\r\n", now=0.4)) == [b"OK"]


def test_ten_megabytes_without_terminator_keep_memory_bounded() -> None:
    framer = ScanFramer(DEFAULT, idle_timeout_s=0, max_frame_bytes=4096)
    chunk = bytes(range(14, 256)) * 271  # ~64 KiB, no CR or LF
    frames: list[Frame] = []
    peak = 0
    for _ in range(10 * 1024 * 1024 // len(chunk)):
        frames += framer.feed(chunk, now=0.0)
        peak = max(peak, framer.buffered)
    assert peak <= 4096 + 1
    assert [(len(f.raw), f.overlong) for f in frames] == [(4096, True)]
    assert raws(framer.feed(b"\r\nOK\r\n", now=0.0)) == [b"OK"]


def test_rejects_an_empty_terminator() -> None:
    with pytest.raises(ValueError, match="terminators"):
        ScanFramer([b""], idle_timeout_s=0.1, max_frame_bytes=16)


TERMINATOR_SETS = st.sampled_from([DEFAULT, CRLF, [b"\r"], [b"\x03"], [b"\r\n", b"\n"]])


@given(
    terminators=TERMINATOR_SETS,
    stream=st.lists(st.sampled_from([b"A", b"7", b"\r", b"\n", b"\x03", b"\x1d", b"\xff"])),
    cut=st.integers(min_value=1, max_value=7),
)
def test_chunking_never_changes_the_frames(
    terminators: list[bytes], stream: list[bytes], cut: int
) -> None:
    data = b"".join(stream)
    results = []
    for chunks in (
        whole(data),
        bytewise(data),
        [data[i : i + cut] for i in range(0, len(data), cut)],
    ):
        framer = ScanFramer(terminators, idle_timeout_s=0.15, max_frame_bytes=5)
        results.append((run(framer, chunks) + framer.flush(), framer.counters))
    assert results[0] == results[1] == results[2]
    for frame in results[0][0]:
        assert 0 < len(frame.raw) <= 5
