"""agent.toml: the local file that owns the hardware (DESIGN.md "Agent config")."""

import ipaddress
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/storeedge/agent.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentSection(_Section):
    """[agent]: where state lives and how hard the outbox holds on to it."""

    state_dir: Path = Path("/var/lib/storeedge")
    outbox_max_bytes: int = Field(default=2 * 1024**3, ge=1024 * 1024)
    # FULL survives power loss; NORMAL only an application crash (research/perf.md §5.1).
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # A loop this late for a check-in it promised is wedged: the systemd watchdog goes unfed.
    stall_timeout_s: float = Field(default=30.0, gt=0, le=3600)


class CloudSection(_Section):
    """[cloud]: where to sync and how to batch and back off."""

    # Plain http:// to a host other than loopback is refused unless this says it is meant.
    # (Declared before `url` so url's validator sees it.)
    allow_plaintext: bool = False
    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+")]
    batch_max_events: int = Field(default=500, ge=1, le=1000)
    batch_max_bytes: int = Field(default=1024 * 1024, ge=4096, le=4 * 1024 * 1024)
    heartbeat_interval_s: float = Field(default=30.0, gt=0)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_cap_s: float = Field(default=60.0, gt=0)
    request_timeout_s: float = Field(default=30.0, gt=0)
    # PEM file of the CA(s) the cloud's certificate must chain to, instead of the system's.
    ca_bundle: Path | None = None

    @field_validator("url")
    @classmethod
    def _no_accidental_plaintext(cls, url: str, info: ValidationInfo) -> str:
        from agent.tls import check_cloud_url

        try:
            return check_cloud_url(url, bool(info.data.get("allow_plaintext")), what="url")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("url: ")) from None


class SerialScannerConfig(_Section):
    """A barcode/QR scanner on a serial port (or USB CDC-ACM, which looks the same)."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
    kind: Literal["scanner"]
    transport: Literal["serial"]
    port: str
    baudrate: int = Field(default=9600, gt=0)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: Literal[1, 2] = 1
    # At the earliest position where any terminator matches, the longest one wins.
    terminators: list[Annotated[str, Field(min_length=1, max_length=4)]] = ["\r\n", "\r", "\n"]
    idle_timeout_ms: int = Field(default=150, ge=0)  # 0: frames end only at a terminator
    # The wire carries at most 12 KiB of raw bytes per scan (protocol MAX_RAW_B64_LEN).
    max_frame_bytes: int = Field(default=4096, ge=16, le=12 * 1024)
    # A stuck trigger floods frames; past this rate (after a burst) frames are dropped and
    # counted as losses. None keeps the driver's defaults (50/s, burst 200).
    flood_max_per_s: float | None = Field(default=None, gt=0)
    flood_burst: int | None = Field(default=None, ge=1)


class TcpScannerConfig(_Section):
    """A scanner behind a LAN socket: a serial device server or a fixed-mount reader (§1.4)."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
    kind: Literal["scanner"]
    transport: Literal["tcp"]
    host: Annotated[str, Field(min_length=1, max_length=253)]
    port: int = Field(default=4001, ge=1, le=65535)  # Moxa NPort "TCP Server" default (§1.4)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # TCP keepalive notices a device server that vanished without a FIN (§1.4).
    keepalive: bool = True
    keepalive_idle_s: int = Field(default=30, ge=1, le=7200)
    keepalive_interval_s: int = Field(default=10, ge=1, le=600)
    keepalive_count: int = Field(default=3, ge=1, le=20)
    # Reconnect when nothing arrived for this long; only for servers that send heartbeats.
    read_idle_timeout_s: float | None = Field(default=None, gt=0)
    terminators: list[Annotated[str, Field(min_length=1, max_length=4)]] = ["\r\n", "\r", "\n"]
    idle_timeout_ms: int = Field(default=150, ge=0)
    max_frame_bytes: int = Field(default=4096, ge=16, le=12 * 1024)
    flood_max_per_s: float | None = Field(default=None, gt=0)
    flood_burst: int | None = Field(default=None, ge=1)


class HidScannerConfig(_Section):
    """A USB keyboard-wedge scanner read from its evdev node (devices.md §1.5)."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
    kind: Literal["scanner"]
    transport: Literal["hid"]
    path: Annotated[str, Field(min_length=1)]  # /dev/input/by-id/usb-…-event-kbd
    layout: Literal["us", "de", "fr", "uk"] = "us"  # must match the scanner's keyboard country
    # GS (FNC1) cannot be typed: the scanner sends this character or key (F1..F12) instead.
    gs_substitute: Annotated[str, Field(pattern=r"^(?:\S|F[1-9]|F1[0-2])$")] | None = None
    inter_key_timeout_ms: int = Field(default=100, ge=0)  # 0: scans end only at Enter/Tab
    grab: bool = True  # EVIOCGRAB: keystrokes reach no other application
    max_frame_bytes: int = Field(default=4096, ge=16, le=12 * 1024)
    flood_max_per_s: float | None = Field(default=None, gt=0)
    flood_burst: int | None = Field(default=None, ge=1)


class ScanSection(_Section):
    """[scan]: how scans are classified (coupon prefixes, staff badge pattern)."""

    # Anchored regex matched against the whole scan text.
    staff_badge_pattern: str = r"^STAFF-[0-9]{4,10}$"
    coupon_prefixes: list[Annotated[str, Field(min_length=1, max_length=64)]] = ["SE1."]

    @model_validator(mode="after")
    def _pattern_compiles(self) -> "ScanSection":
        try:
            re.compile(self.staff_badge_pattern)
        except re.error as exc:
            raise ValueError(f"staff_badge_pattern is not a valid regex: {exc}") from exc
        return self


_DEVICE_ID = r"^[A-Za-z0-9_.:\-]{1,64}$"


class CouponSection(_Section):
    """[coupons]: offline redemption, the voucher printer and staff attribution."""

    # Device id of the printer that prints a voucher for each redemption (none: no voucher).
    voucher_printer: Annotated[str, Field(pattern=_DEVICE_ID)] | None = None
    # Ask the cloud for an online reservation first; off, every redemption uses the offline
    # policy (for a store whose uplink is metered or known bad).
    reserve_online: bool = True
    # How often the business config (keys, policies) is fetched; a 304 costs one round trip.
    config_poll_interval_s: float = Field(default=60.0, ge=1, le=3600)
    # A shopping guide's badge attributes redemptions at that device for this long after
    # their last activity, unless they badge out (scan the badge again) first.
    staff_session_timeout_s: float = Field(default=4 * 3600.0, gt=0, le=24 * 3600)
    # Accepted clock error when checking valid_from/valid_to (the box may drift offline).
    clock_leeway_s: int = Field(default=120, ge=0, le=3600)


class PosSection(_Section):
    """[pos]: the local coupon endpoint for the store's POS (docs/COUPONS.md "POS API")."""

    # A literal loopback or private LAN address: the endpoint never faces the internet.
    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=1, le=65535)
    token: Annotated[str, Field(min_length=16, max_length=256)]
    # Peers allowed besides loopback, as CIDR networks (e.g. the till VLAN 192.168.10.0/24).
    allowed_networks: list[str] = []

    @model_validator(mode="after")
    def _lan_only(self) -> "PosSection":
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            raise ValueError(f"host {self.host!r} must be a literal IP address") from None
        if address.is_unspecified or not (address.is_loopback or address.is_private):
            raise ValueError(f"host {self.host} is not a loopback or private LAN address")
        for network in self.allowed_networks:
            try:
                net = ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"allowed_networks: {exc}") from None
            if not (net.is_private or net.is_loopback):
                raise ValueError(f"allowed_networks: {network} is not a private network")
        return self


class _PrinterSection(_Section):
    """What every ESC/POS receipt printer has, whatever the cable."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
    kind: Literal["printer"]
    poll_interval_s: float = Field(default=5.0, gt=0, le=300)  # DLE EOT status poll
    status_timeout_s: float = Field(default=2.0, gt=0, le=60)
    # How a job is known to be printed: "process_id" waits for the printer's GS ( H answer
    # (Epson TM and compatibles); "status" only checks it is online afterwards (cheap clones).
    confirm: Literal["process_id", "status"] = "process_id"
    confirm_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    write_timeout_s: float = Field(default=30.0, gt=0, le=600)
    asb: bool = False  # also enable Automatic Status Back (GS a) for pushed status changes
    max_job_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)


class TcpPrinterConfig(_PrinterSection):
    """An ESC/POS printer on the LAN, raw TCP ("port 9100", devices.md §2.4)."""

    transport: Literal["tcp"]
    host: Annotated[str, Field(min_length=1, max_length=253)]
    port: int = Field(default=9100, ge=1, le=65535)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=60)


class SerialPrinterConfig(_PrinterSection):
    """An ESC/POS printer on a serial port or USB-serial adapter (devices.md §2.4)."""

    transport: Literal["serial"]
    port: str
    baudrate: int = Field(default=9600, gt=0)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    rtscts: bool = False
    xonxoff: bool = False


class MirrorConfig(_Section):
    """A smart mirror: found by its mDNS TXT id ("mdns") or at a fixed address ("http")."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
    kind: Literal["mirror"]
    transport: Literal["mdns", "http"]
    # The id the mirror itself reports (TXT `id`, GET /info); defaults to `id`.
    mirror_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")] | None = None
    host: Annotated[str, Field(min_length=1, max_length=253)] | None = None  # "http" only
    port: int | None = Field(default=None, ge=1, le=65535)  # "http" only
    # Browse mDNS only on these local IPv4 addresses (the store LAN's; devices.md §3 advises
    # it on multi-homed boxes). Default: every interface.
    mdns_interfaces: list[Annotated[str, Field(pattern=r"^\d{1,3}(\.\d{1,3}){3}$")]] | None = None

    @model_validator(mode="after")
    def _address_fits_transport(self) -> "MirrorConfig":
        if self.transport == "http" and (self.host is None or self.port is None):
            raise ValueError('transport "http" needs host and port')
        if self.transport == "mdns" and (self.host is not None or self.port is not None):
            raise ValueError('transport "mdns" finds host and port itself; remove them')
        return self


class DiscoverySection(_Section):
    """[discovery]: devices the agent attaches by itself because they announce themselves."""

    # "auto": every mirror advertising _storeedge-mir._tcp whose TXT id matches `mirror_ids`
    # and is not declared under [[devices]] becomes device `<mirror_device_prefix><id>`.
    mirrors: Literal["off", "auto"] = "off"
    # fnmatch patterns on the TXT id, e.g. ["MM-*"]: a shop LAN may carry a neighbour's mirrors.
    mirror_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = ["*"]
    mirror_device_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:\-]{0,32}$")] = "mirror-"
    # Browse only on these local IPv4 addresses (the store LAN's). Default: every interface.
    interfaces: list[Annotated[str, Field(pattern=r"^\d{1,3}(\.\d{1,3}){3}$")]] | None = None
    # A bound on what a LAN full of adverts can make the agent attach; past it, counted.
    max_mirrors: int = Field(default=32, ge=1, le=1024)


def _device_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        return f"{value.get('kind')}/{value.get('transport')}"
    return f"{getattr(value, 'kind', None)}/{getattr(value, 'transport', None)}"


DeviceConfig = Annotated[
    Annotated[SerialScannerConfig, Tag("scanner/serial")]
    | Annotated[TcpScannerConfig, Tag("scanner/tcp")]
    | Annotated[HidScannerConfig, Tag("scanner/hid")]
    | Annotated[TcpPrinterConfig, Tag("printer/tcp")]
    | Annotated[SerialPrinterConfig, Tag("printer/serial")]
    | Annotated[MirrorConfig, Tag("mirror/mdns")]
    | Annotated[MirrorConfig, Tag("mirror/http")],
    Discriminator(
        _device_tag,
        custom_error_type="unknown_device",
        custom_error_message="unknown device kind/transport",
    ),
]


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class LoggingSection(_Section):
    """[logging]: one JSON object per line (journald/stdout), levels per component."""

    format: Literal["json", "text"] = "json"
    # Logger name → level, e.g. {"agent.sync" = "DEBUG", "aiohttp.access" = "WARNING"}.
    levels: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.]{1,100}$")], LogLevel] = {}


class StatusPageSection(_Section):
    """[status_page]: the local page for the field engineer (docs/FIELD-GUIDE.md)."""

    enabled: bool = True
    # Loopback by default. Any other address opens it to the LAN, where every request
    # must carry the token from `token_file` (created 0600 on first start).
    host: Annotated[str, Field(min_length=1, max_length=253)] = "127.0.0.1"
    port: int = Field(default=8421, ge=0, le=65535)
    token_file: Path | None = None  # default: <state_dir>/statuspage.token


class AgentConfig(_Section):
    """The whole agent.toml."""

    agent: AgentSection = AgentSection()
    cloud: CloudSection
    scan: ScanSection = ScanSection()
    logging: LoggingSection = LoggingSection()
    status_page: StatusPageSection = StatusPageSection()
    coupons: CouponSection = CouponSection()
    pos: PosSection | None = None
    discovery: DiscoverySection = DiscoverySection()
    devices: list[DeviceConfig] = []

    def device_ids_unique(self) -> None:
        """Raise ConfigError if two devices share an id (events could not be told apart)."""
        seen: set[str] = set()
        for index, device in enumerate(self.devices):
            if device.id in seen:
                raise ConfigError(f"devices[{index}].id: duplicate device id {device.id!r}")
            seen.add(device.id)

    def references_resolve(self) -> None:
        """Raise ConfigError if a section names a device that is not declared."""
        printer = self.coupons.voucher_printer
        if printer is not None and not any(
            d.id == printer and d.kind == "printer" for d in self.devices
        ):
            raise ConfigError(f"coupons.voucher_printer: no printer device with id {printer!r}")


def load_config(path: Path) -> AgentConfig:
    """Read and validate agent.toml; raise ConfigError naming the key and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from exc
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "agent.toml") -> AgentConfig:
    """Validate TOML text; raise ConfigError naming the key and line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc
    _apply_profiles(data, text, source)
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, text, source)) from exc
    config.device_ids_unique()
    config.references_resolve()
    return config


def known_profiles() -> list[str]:
    """Names of the device profiles shipped in hardware/profiles/."""
    folder = resources.files("hardware") / "profiles"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def _apply_profiles(data: dict[str, Any], text: str, source: str) -> None:
    """Replace each device's `profile = NAME` by the profile's keys, the entry's own winning."""
    devices = data.get("devices")
    if not isinstance(devices, list):
        return
    for index, device in enumerate(devices):
        if not isinstance(device, dict) or "profile" not in device:
            continue
        name = device.pop("profile")
        if not isinstance(name, str) or name not in known_profiles():
            line = _find_line(text, ["devices", index, "profile"])
            where = f"{source}:{line}" if line else source
            raise ConfigError(
                f"{where}: devices[{index}].profile: unknown profile {name!r}; "
                f"known: {', '.join(known_profiles())}"
            )
        profile = (resources.files("hardware") / "profiles" / f"{name}.toml").read_text()
        devices[index] = {**tomllib.loads(profile), **device}


def _describe(exc: ValidationError, text: str, source: str) -> str:
    lines = []
    for error in exc.errors():
        loc = [part for part in error["loc"] if not _is_union_tag(part)]
        key = _dotted(loc)
        line = _find_line(text, loc)
        where = f"{source}:{line}" if line else source
        lines.append(f"{where}: {key}: {error['msg']}")
    return "\n".join(lines)


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and "/" in part


def _dotted(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


def _find_line(text: str, loc: list[Any]) -> int | None:
    """1-based line of the key at `loc` (or of its table when the key is missing)."""
    table: tuple[Any, ...] = ()
    counts: dict[str, int] = {}
    want_table = tuple(loc[:-1]) if loc else ()
    want_key = loc[-1] if loc else None
    table_line: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            name = header.group(2)
            if header.group(1) == "[[":
                counts[name] = counts.get(name, -1) + 1
                table = (name, counts[name])
            else:
                table = tuple(name.split("."))
            if table == want_table or (table == tuple(loc) and table_line is None):
                table_line = number
            continue
        key = _KEY.match(line)
        if key and table == want_table and key.group(1) == want_key:
            return number
    return table_line
