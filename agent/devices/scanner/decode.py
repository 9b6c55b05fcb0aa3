"""Pure decoding of one frame into a ScanPayload: AIM split, UTF-8, control bytes, then routing."""

import base64

from agent.config import ScanSection
from agent.devices.scanner import aim
from agent.devices.scanner.framer import Frame
from agent.devices.scanner.routing import Route, route
from protocol.constants import MAX_RAW_B64_LEN, MAX_TEXT_LEN
from protocol.events import ScanPayload

# The payload's limits (protocol/constants.py): raw bytes whose base64 fits, and text length.
MAX_RAW_BYTES = MAX_RAW_B64_LEN // 4 * 3
_REASON_LEN = 256  # ScanPayload.reason / decode_error max_length

STX = 0x02  # some scanners frame data as STX … ETX (devices.md §1.1)
GS = 0x1D  # FNC1 in GS1 data: the one control character that is data (devices.md §1.3)
_DEFAULT_SCAN = ScanSection()


def decode_frame(frame: Frame, scan: ScanSection = _DEFAULT_SCAN) -> ScanPayload:
    """Describe one frame for the outbox, routed by `scan`; never raises, whatever the bytes."""
    raw = frame.raw
    body = raw[1:] if raw[:1] == bytes([STX]) else raw
    aim_id, data = aim.split_aim(body)
    prefix_len = len(raw) - len(data)
    text, utf8_error = _text(data, prefix_len)
    control = _first_control(data, prefix_len)
    errors = [e for e in (utf8_error, control) if e]

    if not data:
        empty = f"no data after AIM id {aim_id}" if aim_id else "empty frame"
        verdict = Route("unrecognised", empty)
    elif frame.overlong:
        verdict = Route("unrecognised", f"overlong frame: only the first {len(raw)} bytes kept")
    elif utf8_error:
        verdict = Route("unrecognised", "invalid utf-8")
    elif control:
        verdict = Route("unrecognised", control)
    else:
        verdict = route(text, aim_id, scan)

    if len(raw) > MAX_RAW_BYTES:
        errors.append(f"raw truncated from {len(raw)} to {MAX_RAW_BYTES} bytes for the wire")
    return ScanPayload(
        raw_b64=base64.b64encode(raw[:MAX_RAW_BYTES]).decode("ascii"),
        text=text[:MAX_TEXT_LEN],
        aim_id=aim_id,
        symbology=verdict.symbology or aim.symbology_name(aim_id),
        gs1=verdict.gs1,
        classification=verdict.classification,
        reason=_clip(verdict.reason),
        decode_error=_clip("; ".join(errors) or None),
    )


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
