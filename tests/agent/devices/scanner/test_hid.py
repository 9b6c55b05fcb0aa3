"""HidDecoder: input_event byte tables, fed whole and byte by byte, under us/uk/de/fr."""

import struct

import pytest

from agent.devices.scanner.hid import EVENT, HidDecoder, HidScan

REC = struct.Struct("@llHHi")  # struct input_event, written out here rather than imported
EV_SYN, EV_KEY, EV_MSC = 0, 1, 4
SHIFT, CTRL, ALT, ALTGR, CAPS = 42, 29, 56, 100, 58
ENTER, KPENTER, TAB, SPACE = 28, 96, 15, 57
DIGIT = {str(d): (11 if d == 0 else d + 1) for d in range(10)}  # KEY_1 = 2 … KEY_0 = 11
KP = {"0": 82, "2": 80, "9": 73, "7": 71}
Q, W, Y, A, Z, APOSTROPHE, RIGHTBRACE, BACKSLASH, GRAVE, F5, F8 = (
    16, 17, 21, 30, 44, 40, 27, 43, 41, 63, 66,
)  # fmt: skip

Chord = tuple[int, ...]


def records(*chords: Chord | int, t0: float = 1000.0, gap: float = 0.002) -> bytes:
    """Each chord as one press report and one release report, modifiers first, SYN after each."""
    out, t = bytearray(), t0
    for chord in chords:
        codes = (chord,) if isinstance(chord, int) else chord
        for value, order in ((1, codes), (0, codes[::-1])):
            sec, usec = int(t), round((t - int(t)) * 1e6)
            for code in order:
                out += REC.pack(sec, usec, EV_MSC, 4, 0x70000 + code)  # MSC_SCAN: ignored
                out += REC.pack(sec, usec, EV_KEY, code, value)
            out += REC.pack(sec, usec, EV_SYN, 0, 0)
            t += gap
    return bytes(out)


def digits(text: str) -> list[Chord | int]:
    return [DIGIT[c] for c in text]


def decode(data: bytes, layout: str = "us", **kwargs: object) -> tuple[list[HidScan], HidDecoder]:
    """Whole and byte by byte must agree; returns the scans and the whole-feed decoder."""
    whole = HidDecoder(layout, **kwargs)  # type: ignore[arg-type]
    scans = whole.feed(data, now=0.0)
    split = HidDecoder(layout, **kwargs)  # type: ignore[arg-type]
    pieces = [scan for i in range(len(data)) for scan in split.feed(data[i : i + 1], now=0.0)]
    assert pieces == scans
    assert split.counters == whole.counters
    return scans, whole


def text_of(data: bytes, layout: str = "us", **kwargs: object) -> str:
    scans, _ = decode(data, layout, **kwargs)
    assert len(scans) == 1, scans
    return scans[0].text


def test_record_layout_is_the_kernels() -> None:
    assert EVENT.size == REC.size == 24  # 64-bit Linux: timeval 16 + type 2 + code 2 + value 4


def test_an_ean_with_aim_id_typed_on_us() -> None:
    data = records((SHIFT, RIGHTBRACE), (SHIFT, 18), *digits("04006381333931"), ENTER)
    assert decode(data)[0] == [HidScan("}E04006381333931", "enter")]
    aim = records(RIGHTBRACE, (SHIFT, 18), *digits("04006381333931"), ENTER)
    assert text_of(aim) == "]E04006381333931"


# The same key positions under each layout (odoo_upos.md §4 item 8, InvenTree#10589).
@pytest.mark.parametrize(
    ("chords", "expected"),
    [
        ([Y, Z, Q, A, W], {"us": "yzqaw", "uk": "yzqaw", "de": "zyqaw", "fr": "ywaqz"}),
        ([(SHIFT, DIGIT["3"])], {"us": "#", "uk": "£", "de": "§", "fr": "3"}),
        ([(SHIFT, DIGIT["2"])], {"us": "@", "uk": '"', "de": '"', "fr": "2"}),
        ([(SHIFT, APOSTROPHE)], {"us": '"', "uk": "@", "de": "Ä", "fr": "%"}),
        ([BACKSLASH, (SHIFT, BACKSLASH)], {"us": "\\|", "uk": "#~", "de": "#'", "fr": "*µ"}),
        (digits("0013748911"), {"us": "0013748911", "uk": "0013748911", "de": "0013748911",
                                "fr": "àà&\"è'_ç&&"}),  # odoo/odoo#214407
    ],
)  # fmt: skip
def test_one_key_code_many_characters(chords: list[Chord | int], expected: dict[str, str]) -> None:
    data = records(*chords, ENTER)
    assert {layout: text_of(data, layout) for layout in expected} == expected


@pytest.mark.parametrize(
    ("layout", "chords", "text"),
    [
        ("de", [(ALTGR, Q), (ALTGR, DIGIT["8"]), (ALTGR, DIGIT["9"])], "@[]"),
        ("fr", [(ALTGR, DIGIT["0"]), (ALTGR, DIGIT["3"]), (SHIFT, DIGIT["0"])], "@#0"),
        ("uk", [(ALTGR, DIGIT["4"]), (SHIFT, DIGIT["3"])], "€£"),
        ("us", [(ALTGR, Q)], "\ufffd"),  # us has no AltGr: Right Alt is Alt, Alt+Q no text
        ("de", [GRAVE, SPACE, DIGIT["1"]], "^1"),  # dead ^ then Space: the accent itself
        ("de", [GRAVE, A], "^a"),  # scanners send ASCII: never composed into â
        ("de", [(SHIFT, 13), SPACE], "`"),
        ("fr", [26, SPACE, (SHIFT, 26), SPACE], "^¨"),
        ("de", [GRAVE, GRAVE, SPACE], "^^"),
        ("us", [CAPS, A, DIGIT["1"], (SHIFT, A), CAPS, A], "A1aa"),
        ("us", [KP["7"], KP["0"], 83, 55], "70.*"),
        ("de", [KP["7"], 83], "7,"),
    ],
)
def test_levels_dead_keys_caps_and_keypad(
    layout: str, chords: list[Chord | int], text: str
) -> None:
    assert text_of(records(*chords, ENTER), layout) == text


@pytest.mark.parametrize(
    ("layout", "gs_substitute", "gs_chord"),
    [
        ("us", None, (CTRL, RIGHTBRACE)),  # Ctrl+]
        ("de", None, (CTRL, ALTGR, DIGIT["9"])),  # Ctrl+] where ] is AltGr+9
        ("fr", None, (CTRL, ALTGR, 12)),  # AltGr+) is ] on AZERTY
        ("us", "|", (SHIFT, BACKSLASH)),
        ("de", "F8", F8),
        ("uk", "~", (SHIFT, BACKSLASH)),
    ],
)
def test_fnc1_arrives_as_gs(layout: str, gs_substitute: str | None, gs_chord: Chord | int) -> None:
    shift = (SHIFT,) if layout == "fr" else ()  # AZERTY digits are shifted
    data = records(*[(*shift, DIGIT[c]) for c in "101"], gs_chord)
    data += records(*[(*shift, DIGIT[c]) for c in "217"], ENTER, t0=1000.1)
    assert text_of(data, layout, gs_substitute=gs_substitute) == "101\x1d217"


def test_alt_numpad_codes() -> None:
    press_alt, release_alt = REC.pack(1, 0, EV_KEY, ALT, 1), REC.pack(1, 0, EV_KEY, ALT, 0)
    alt_0029 = press_alt + records(KP["0"], KP["0"], KP["2"], KP["9"]) + release_alt
    data = records(DIGIT["1"]) + alt_0029 + records(DIGIT["2"], ENTER)
    assert text_of(data) == "1\x1d2"


@pytest.mark.parametrize(("key", "ended_by"), [(ENTER, "enter"), (KPENTER, "enter"), (TAB, "tab")])
def test_terminators(key: int, ended_by: str) -> None:
    assert decode(records(DIGIT["5"], key))[0] == [HidScan("5", ended_by)]


def test_unknown_keys_are_marked_and_counted() -> None:
    scans, decoder = decode(records(DIGIT["1"], F5, DIGIT["2"], ENTER))
    assert scans == [HidScan("1\ufffd2", "enter")]
    assert decoder.counters["unknown_keys"] == 1


def test_autorepeat_is_ignored_and_counted() -> None:
    repeat = REC.pack(1000, 1000, EV_KEY, DIGIT["1"], 2)
    data = records(DIGIT["1"]) + repeat + records(DIGIT["2"], ENTER, t0=1000.01)
    scans, decoder = decode(data)
    assert scans == [HidScan("12", "enter")]
    assert decoder.counters["key_repeats"] == 1


def test_syn_dropped_marks_the_scan_and_forgets_held_keys() -> None:
    dropped = REC.pack(1000, 5000, EV_SYN, 3, 0)  # SYN_DROPPED
    lost_release = REC.pack(1000, 5000, EV_KEY, SHIFT, 0)  # discarded until SYN_REPORT
    data = (
        records((SHIFT, A), t0=1000.0)[: REC.size * 6]  # shift and A pressed, never released
        + dropped + lost_release + REC.pack(1000, 5000, EV_SYN, 0, 0)
        + records(A, ENTER, t0=1000.01)
    )  # fmt: skip
    scans, decoder = decode(data)
    assert scans == [HidScan("A\ufffda", "enter")]
    assert decoder.counters["syn_dropped"] == 1


def test_a_pause_between_key_timestamps_ends_a_scan() -> None:
    data = records(*digits("123"), t0=1000.0) + records(*digits("456"), ENTER, t0=1000.5)
    scans, decoder = decode(data, inter_key_timeout_s=0.1)
    assert scans == [HidScan("123", "timeout"), HidScan("456", "enter")]
    assert decoder.counters["inter_key_timeouts"] == 1


def test_a_suffixless_scan_ends_when_the_clock_passes_the_deadline() -> None:
    decoder = HidDecoder("us", inter_key_timeout_s=0.1)
    assert decoder.feed(records(*digits("42")), now=5.0) == []
    assert decoder.deadline() == pytest.approx(5.1)
    assert decoder.poll(5.05) == []
    assert decoder.poll(5.1) == [HidScan("42", "timeout")]
    assert decoder.deadline() is None


def test_timeout_zero_waits_for_a_terminator() -> None:
    decoder = HidDecoder("us", inter_key_timeout_s=0)
    data = records(*digits("1"), t0=1.0) + records(*digits("2"), ENTER, t0=100.0)
    assert decoder.feed(data, now=0.0) == [HidScan("12", "enter")]
    assert decoder.deadline() is None


def test_empty_and_overlong_scans() -> None:
    data = records(ENTER, *digits("123456"), ENTER, DIGIT["7"], ENTER)
    scans, decoder = decode(data, max_chars=4)
    assert scans == [HidScan("1234", "overlong", True), HidScan("7", "enter")]
    assert (decoder.counters["empty"], decoder.counters["overlong"]) == (1, 1)


def test_flush_ends_the_scan_and_resets_modifiers_and_partial_records() -> None:
    decoder = HidDecoder("us")
    data = records((SHIFT, A))[: REC.size * 6] + records(A)[:10]  # shift held, half a record
    decoder.feed(data, now=0.0)
    assert decoder.flush() == [HidScan("A", "flush")]
    assert decoder.feed(records(A, ENTER), now=1.0) == [HidScan("a", "enter")]


def test_unknown_layouts_and_substitutes_are_refused() -> None:
    with pytest.raises(KeyError):
        HidDecoder("dvorak")
    with pytest.raises(KeyError):
        HidDecoder("us", gs_substitute="F13")
