"""agent.toml: a bad file is refused with the key and line named; profiles fill defaults."""

from pathlib import Path

import pytest

from agent.config import known_profiles, load_config, parse_config
from agent.errors import ConfigError

GOOD = """\
[agent]
state_dir = "/tmp/state"

[cloud]
url = "https://ingest.example.com"

[[devices]]
id = "scanner-front"
kind = "scanner"
transport = "serial"
port = "/dev/ttyACM0"
"""


def test_a_good_file_loads_with_defaults() -> None:
    config = parse_config(GOOD)
    assert config.cloud.url == "https://ingest.example.com"
    assert config.agent.synchronous == "FULL"
    device = config.devices[0]
    assert device.kind == "scanner"
    assert device.baudrate == 9600  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace('port = "/dev/ttyACM0"', 'port = "/dev/ttyACM0"\nbaudrate = "fast"'),
         "agent.toml:12: devices[0].baudrate: Input should be a valid integer"),
        (lambda t: t.replace('port = "/dev/ttyACM0"', 'port = "/dev/ttyACM0"\nbaudrat = 9600'),
         "agent.toml:12: devices[0].baudrat: Extra inputs are not permitted"),
        (lambda t: t.replace('kind = "scanner"', 'kind = "scaner"'),
         "agent.toml:7: devices[0]: unknown device kind/transport"),
        (lambda t: t.replace('url = "https://ingest.example.com"', 'url = "ftp://x"'),
         "agent.toml:5: cloud.url: String should match pattern"),
        (lambda t: t.replace('synchronous', 'x') + "", None),
        (lambda t: t.replace('[cloud]\nurl = "https://ingest.example.com"\n', ""),
         "agent.toml: cloud: Field required"),
        (lambda t: t + '[[devices]]\nid = "scanner-front"\nkind = "scanner"\n'
                       'transport = "serial"\nport = "/dev/ttyACM1"\n',
         "devices[1].id: duplicate device id 'scanner-front'"),
        (lambda t: t.replace("[agent]", "[agent"), "agent.toml: invalid TOML"),
    ],
)  # fmt: skip
def test_a_bad_file_names_the_key_and_line(edit: object, expected: str | None) -> None:
    text = edit(GOOD)  # type: ignore[operator]
    if expected is None:
        parse_config(text)
        return
    with pytest.raises(ConfigError) as error:
        parse_config(text)
    assert expected in str(error.value)


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")


def test_a_profile_fills_defaults_and_the_entry_overrides_them() -> None:
    text = GOOD.replace(
        'kind = "scanner"\ntransport = "serial"\n', 'profile = "honeywell-1900"\nbaudrate = 9600\n'
    )
    device = parse_config(text).devices[0]
    assert device.kind == "scanner"
    assert device.terminators == ["\r\n", "\r"]  # type: ignore[union-attr]
    assert device.baudrate == 9600  # type: ignore[union-attr]  # the entry wins over 115200


def test_an_unknown_profile_is_refused_with_its_line() -> None:
    text = GOOD.replace('kind = "scanner"', 'profile = "acme-9000"\nkind = "scanner"')
    with pytest.raises(ConfigError, match=r"agent.toml:9: devices\[0\].profile: unknown profile"):
        parse_config(text)


def test_every_shipped_profile_is_a_valid_device_entry() -> None:
    assert "honeywell-1900" in known_profiles()
    for name in known_profiles():
        entry = f'id = "d"\nprofile = "{name}"\nport = "/dev/x"\n'
        if "hid" in name:
            entry = f'id = "d"\nprofile = "{name}"\npath = "/dev/input/event0"\n'
        parse_config(GOOD.split("[[devices]]")[0] + "[[devices]]\n" + entry)


def test_pos_section_must_stay_on_loopback_or_the_store_lan() -> None:
    base = '[cloud]\nurl = "http://127.0.0.1:1"\n[pos]\ntoken = "0123456789abcdef"\n'
    assert parse_config(base).pos is not None
    for line, problem in [
        ('host = "0.0.0.0"', "not a loopback or private LAN address"),
        ('host = "8.8.8.8"', "not a loopback or private LAN address"),
        ('host = "till.local"', "must be a literal IP address"),
        ('allowed_networks = ["8.8.8.0/24"]', "not a private network"),
        ('allowed_networks = ["nonsense"]', "allowed_networks"),
    ]:
        with pytest.raises(ConfigError, match=problem) as info:
            parse_config(base + line + "\n")
        assert "pos" in str(info.value)
    with pytest.raises(ConfigError, match="token"):
        parse_config('[cloud]\nurl = "http://127.0.0.1:1"\n[pos]\ntoken = "short"\n')
    lan = parse_config(base + 'host = "192.168.10.5"\nallowed_networks = ["192.168.10.0/24"]\n')
    assert lan.pos is not None
    assert lan.pos.host == "192.168.10.5"


def test_voucher_printer_must_be_a_declared_printer() -> None:
    text = '[cloud]\nurl = "http://127.0.0.1:1"\n[coupons]\nvoucher_printer = "till"\n'
    with pytest.raises(ConfigError, match="no printer device with id 'till'"):
        parse_config(text)
    printer = '[[devices]]\nid = "till"\nkind = "printer"\ntransport = "tcp"\nhost = "10.0.0.9"\n'
    assert parse_config(text + printer).coupons.voucher_printer == "till"
