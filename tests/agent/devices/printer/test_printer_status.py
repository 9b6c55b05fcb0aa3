"""DLE EOT and ASB decoding and the status framer, fed whole and byte by byte (devices.md §2.2)."""

import pytest

from agent.devices.printer import status
from agent.devices.printer.errors import StatusError
from agent.devices.printer.status import (
    AsbBlock,
    Junk,
    PrinterStatus,
    ProcessDone,
    Reply,
    StatusFramer,
)

H = bytes.fromhex


def test_requests_are_dle_eot_n() -> None:
    assert [status.request(n) for n in (1, 2, 3, 4)] == [
        H("10 04 01"),
        H("10 04 02"),
        H("10 04 03"),
        H("10 04 04"),
    ]
    with pytest.raises(ValueError, match="1–4"):
        status.request(5)


@pytest.mark.parametrize(
    ("n", "value", "flags"),
    [
        (1, 0x12, {"offline": False}),
        (1, 0x1A, {"offline": True}),
        (1, 0x16, {"offline": False}),  # drawer pin 3 high only
        (2, 0x12, {"cover_open": False, "paper_out": False, "error": False}),
        (2, 0x16, {"cover_open": True, "paper_out": False, "error": False}),
        (2, 0x32, {"cover_open": False, "paper_out": True, "error": False}),
        (2, 0x52, {"cover_open": False, "paper_out": False, "error": True}),
        (3, 0x1A, {"cutter_error": True, "unrecoverable": False, "auto_recoverable": False}),
        (3, 0x32, {"cutter_error": False, "unrecoverable": True, "auto_recoverable": False}),
        (3, 0x52, {"cutter_error": False, "unrecoverable": False, "auto_recoverable": True}),
        (4, 0x12, {"paper_near_end": False, "paper_out": False}),
        (4, 0x1E, {"paper_near_end": True, "paper_out": False}),
        (4, 0x7E, {"paper_near_end": True, "paper_out": True}),
        (4, 0x72, {"paper_near_end": False, "paper_out": True}),  # python-escpos RT_MASK_NOPAPER
    ],
)
def test_reply_bits(n: int, value: int, flags: dict[str, bool]) -> None:
    assert status.decode_reply(n, value) == flags


@pytest.mark.parametrize("value", [0x00, 0xFF, 0x13, 0x02, 0x92, 0x10, 0x37])
def test_reply_breaking_the_fixed_bits_is_a_status_error(value: int) -> None:
    with pytest.raises(StatusError, match="0xx1xx10"):
        status.decode_reply(1, value)


@pytest.mark.parametrize(
    ("replies", "condition", "can_print"),
    [
        ({1: 0x12, 2: 0x12, 3: 0x12, 4: 0x12}, "ok", True),
        ({1: 0x12, 2: 0x12, 3: 0x12, 4: 0x1E}, "paper_near_end", True),
        ({1: 0x1A, 2: 0x32, 3: 0x12, 4: 0x7E}, "paper_out", False),
        ({1: 0x1A, 2: 0x16, 3: 0x12, 4: 0x12}, "cover_open", False),
        ({1: 0x1A, 2: 0x52, 3: 0x1A, 4: 0x12}, "cutter_error", False),
        ({1: 0x1A, 2: 0x52, 3: 0x32, 4: 0x12}, "unrecoverable_error", False),
        ({1: 0x1A, 2: 0x12, 3: 0x12, 4: 0x12}, "printer_offline", False),
        ({1: 0x1A, 2: 0x36, 3: 0x12, 4: 0x7E}, "cover_open", False),  # worst condition wins
    ],
)
def test_merged_status_maps_to_upos_style_conditions(
    replies: dict[int, int], condition: str, can_print: bool
) -> None:
    merged = status.merge(replies)
    assert (merged.condition, merged.can_print) == (condition, can_print)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (H("10 00 00 00"), PrinterStatus()),
        (H("18 00 00 00"), PrinterStatus(offline=True)),
        (H("38 00 00 00"), PrinterStatus(offline=True, cover_open=True)),
        (H("18 08 00 00"), PrinterStatus(offline=True, cutter_error=True)),
        (H("18 20 00 00"), PrinterStatus(offline=True, unrecoverable=True)),
        (H("10 00 03 00"), PrinterStatus(paper_near_end=True)),
        (H("18 00 0f 00"), PrinterStatus(offline=True, paper_near_end=True, paper_out=True)),
    ],
)
def test_asb_blocks(block: bytes, expected: PrinterStatus) -> None:
    assert status.decode_asb(block) == expected


@pytest.mark.parametrize("block", [H("12 00 00 00"), H("10 10 00 00"), H("10 00 80 00"), H("10")])
def test_asb_with_broken_fixed_bits_is_a_status_error(block: bytes) -> None:
    with pytest.raises(StatusError):
        status.decode_asb(block)


STREAM = b"".join(
    [
        H("12 1a"),  # replies to DLE EOT 1 and 2
        H("18 20 00 00"),  # an ASB block pushed in between
        H("12 7e"),  # replies to 3 and 4
        H("37 22 41 42 43 44 00"),  # process-ID answer "ABCD"
        H("ff"),  # noise nobody asked for
        H("37 20 00"),  # a response block of a kind we do not use
        H("10 00 03 00"),  # ASB: paper near end
    ]
)
EXPECTED = [
    Reply(1, 0x12),
    Reply(2, 0x1A),
    AsbBlock(PrinterStatus(offline=True, unrecoverable=True)),
    Reply(3, 0x12),
    Reply(4, 0x7E),
    ProcessDone(b"ABCD"),
    Junk(H("ff"), "unexpected byte"),
    Junk(H("37"), "unsupported response block"),
    Junk(H("20"), "unexpected byte"),
    Junk(H("00"), "unexpected byte"),
    AsbBlock(PrinterStatus(paper_near_end=True)),
]


@pytest.mark.parametrize("chunk", [len(STREAM), 1, 2, 3])
def test_framer_demultiplexes_in_any_chunking(chunk: int) -> None:
    framer = StatusFramer()
    assert framer.expect(1, 2, 3, 4) == H("10 04 01 10 04 02 10 04 03 10 04 04")
    items = []
    for start in range(0, len(STREAM), chunk):
        items += framer.feed(STREAM[start : start + chunk])
    assert items == EXPECTED
    assert framer.pending == 0
    assert framer.junk == 4


def test_junk_answer_spends_the_request_it_answered() -> None:
    framer = StatusFramer()
    framer.expect(1, 2)
    items = framer.feed(H("ff 12"))
    assert isinstance(items[0], Junk)
    assert "DLE EOT 1" in items[0].reason
    assert items[1] == Reply(2, 0x12)  # still lined up with its own request


def test_unsolicited_status_byte_and_reset() -> None:
    framer = StatusFramer()
    assert framer.feed(H("12")) == [Junk(H("12"), "status byte nobody asked for")]
    framer.expect(1, 2, 3, 4)
    framer.feed(H("12"))
    framer.reset()  # a poll timed out: its late answers must not satisfy the next one
    assert framer.pending == 0
    assert framer.feed(H("12")) == [Junk(H("12"), "status byte nobody asked for")]


def test_broken_process_id_is_junk_and_the_next_byte_still_parses() -> None:
    framer = StatusFramer()
    framer.expect(1)
    # The reply to DLE EOT 1 cuts a process-ID answer short: the fragment is junk, the reply
    # is still a reply.
    assert framer.feed(H("37 22 41 12")) == [
        Junk(H("37 22 41"), "unsupported response block"),
        Reply(1, 0x12),
    ]
