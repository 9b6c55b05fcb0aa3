"""Pure decoding of one frame into a ScanPayload: AIM split, UTF-8, GTIN and GS1 checks."""

import base64
import re

from agent.devices.scanner import aim, gs1
from agent.devices.scanner.framer import Frame
from protocol.constants import MAX_RAW_B64_LEN, MAX_TEXT_LEN
from protocol.events import ScanClass, ScanPayload

# The payload's limits (protocol/constants.py): raw bytes whose base64 fits, and text length.
MAX_RAW_BYTES = MAX_RAW_B64_LEN // 4 * 3
_REASON_LEN = 256  # ScanPayload.reason / decode_error max_length

STX = 0x02  # some scanners frame data as STX … ETX (devices.md §1.1)
GS = 0x1D  # FNC1 in GS1 data: the one control character that is data (devices.md §1.3)
_DIGITS = re.compile(r"[0-9]+")

_GTIN_NAMES: dict[int, str] = {8: "EAN-8", 12: "UPC-A", 13: "EAN-13", 14: "GTIN-14"}
# ]E0 covers EAN-13, UPC-A and UPC-E; the digit count tells which (EAN-8 comes as ]E4).
_E0_NAMES: dict[int, str] = {8: "UPC-E", 12: "UPC-A", 13: "EAN-13"}

_Verdict = tuple[ScanClass, str | None, dict[str, str] | None]


def decode_frame(frame: Frame) -> ScanPayload:
    """Describe one frame for the outbox; never raises, whatever the bytes are."""
    raw = frame.raw
    body = raw[1:] if raw[:1] == bytes([STX]) else raw
    aim_id, data = aim.split_aim(body)
    prefix_len = len(raw) - len(data)
    text, utf8_error = _text(data, prefix_len)
    control = _first_control(data, prefix_len)
    errors = [e for e in (utf8_error, control) if e]
    symbology = aim.symbology_name(aim_id)

    if not data:
        empty = f"no data after AIM id {aim_id}" if aim_id else "empty frame"
        verdict: _Verdict = ("unrecognised", empty, None)
    elif frame.overlong:
        verdict = ("unrecognised", f"overlong frame: only the first {len(raw)} bytes kept", None)
    elif utf8_error:
        verdict = ("unrecognised", "invalid utf-8", None)
    elif control:
        verdict = ("unrecognised", control, None)
    else:
        verdict = classify(aim_id, text)
        if verdict[0] == "product" and aim_id == "]E0":
            symbology = _E0_NAMES.get(len(text), symbology)

    if len(raw) > MAX_RAW_BYTES:
        errors.append(f"raw truncated from {len(raw)} to {MAX_RAW_BYTES} bytes for the wire")
    classification, reason, fields = verdict
    return ScanPayload(
        raw_b64=base64.b64encode(raw[:MAX_RAW_BYTES]).decode("ascii"),
        text=text[:MAX_TEXT_LEN],
        aim_id=aim_id,
        symbology=symbology,
        gs1=fields,
        classification=classification,
        reason=_clip(reason),
        decode_error=_clip("; ".join(errors) or None),
    )


def classify(aim_id: str | None, text: str) -> _Verdict:
    """(classification, reason if unrecognised, GS1 fields) of clean text after the AIM id."""
    if aim.is_gs1(aim_id):
        return _gs1(text, digital_link=text.startswith(("http://", "https://")))
    if aim_id in aim.GTIN_IDS:
        return _gtin(aim_id, text)
    if text.startswith(chr(GS)) or (chr(GS) in text and text[:1].isdigit()):
        return _gs1(text, digital_link=False)
    if _DIGITS.fullmatch(text) and len(text) in _GTIN_NAMES:
        return _gtin(aim_id, text)
    if text.startswith(("http://", "https://")):
        verdict = _gs1(text, digital_link=True)
        if verdict[0] == "product":
            return verdict
    return "unrecognised", f"unknown format: {aim_id or 'no AIM id'}, {len(text)} chars", None


def upce_to_upca(upce: str) -> str:
    """Expand an 8-digit UPC-E (number system, 6 digits, check) to its 12-digit UPC-A."""
    ns, d, check = upce[0], upce[1:7], upce[7]
    last = d[5]
    if last in "012":
        body = d[0:2] + last + "0000" + d[2:5]
    elif last == "3":
        body = d[0:3] + "00000" + d[3:5]
    elif last == "4":
        body = d[0:4] + "00000" + d[4]
    else:
        body = d[0:5] + "0000" + last
    return ns + body + check


def _gtin(aim_id: str | None, text: str) -> _Verdict:
    digits = text
    if aim_id == "]E3" and len(text) in (10, 13, 14, 15, 17, 18):
        digits = text[:-2] if len(text) in (10, 14, 15) else text[:-5]  # drop the add-on
    if not _DIGITS.fullmatch(digits) or len(digits) not in _GTIN_NAMES:
        return "unrecognised", f"not a GTIN: {len(text)} chars after {aim_id}", None
    if gs1.check_digit_ok(digits):
        return "product", None, None
    if len(digits) == 8 and digits[0] in "01" and gs1.check_digit_ok(upce_to_upca(digits)):
        return "product", None, None
    expected = gs1.gtin_check_digit(digits[:-1])
    name = _GTIN_NAMES[len(digits)]
    return "unrecognised", f"bad check digit: {name} {digits} should end in {expected}", None


def _gs1(text: str, *, digital_link: bool) -> _Verdict:
    try:
        if digital_link:
            fields = gs1.parse_digital_link(text)
            if fields is None:
                return "unrecognised", "GS1: not a Digital Link URI", None
        else:
            fields = gs1.parse_element_strings(text)
    except gs1.GS1Error as exc:
        return "unrecognised", f"GS1: {exc}", None
    return "product", None, fields


def _text(data: bytes, offset: int) -> tuple[str, str | None]:
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", errors="replace")
        return text, f"invalid utf-8 at byte {offset + exc.start}: {exc.reason}"


def _first_control(data: bytes, offset: int) -> str | None:
    found = [i for i, b in enumerate(data) if (b < 0x20 and b != GS) or b == 0x7F]
    if not found:
        return None
    first = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return f"control character 0x{data[first]:02X} at byte {offset + first}{more}"


def _clip(message: str | None) -> str | None:
    if message is None or len(message) <= _REASON_LEN:
        return message
    return message[: _REASON_LEN - 1] + "…"
