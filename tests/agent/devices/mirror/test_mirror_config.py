"""`[[devices]]` entries for mirrors: both transports parse, mistakes name their line."""

import pytest

from agent.config import MirrorConfig, parse_config
from agent.devices.mirror.driver import MirrorDriver
from agent.devices.registry import build_driver
from agent.errors import ConfigError

HEAD = '[cloud]\nurl = "https://ingest.example.com"\n'
MDNS = """
[[devices]]
id = "mirror-fitting-1"
kind = "mirror"
transport = "mdns"
mirror_id = "MM-0042"
mdns_interfaces = ["192.168.10.2"]
"""
HTTP = """
[[devices]]
id = "mirror-window"
kind = "mirror"
transport = "http"
host = "192.168.10.61"
port = 8080
"""


class NullSink:
    async def capture(
        self, device_id: str, payload: object, occurred_at: object = None, **_: object
    ) -> None:
        pass

    async def count_loss(self, reason: str, count: int = 1) -> None:
        pass


def test_both_transports_parse_and_build_a_mirror_driver() -> None:
    config = parse_config(HEAD + MDNS + HTTP)
    mdns, http = config.devices
    assert isinstance(mdns, MirrorConfig)
    assert isinstance(http, MirrorConfig)
    assert (mdns.mirror_id, mdns.mdns_interfaces) == ("MM-0042", ["192.168.10.2"])
    assert (http.host, http.port, http.mirror_id) == ("192.168.10.61", 8080, None)
    drivers = [build_driver(device, NullSink()) for device in config.devices]
    assert all(isinstance(driver, MirrorDriver) for driver in drivers)
    assert [d.mirror_id for d in drivers if isinstance(d, MirrorDriver)] == [
        "MM-0042",
        "mirror-window",  # mirror_id defaults to the device id
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (HTTP.replace('host = "192.168.10.61"\n', ""), "needs host and port"),
        (MDNS + "port = 80\n", "remove them"),
        (MDNS.replace('"mdns"', '"bluetooth"'), "unknown device kind/transport"),
        (MDNS.replace('"192.168.10.2"', '"eth0"'), "mdns_interfaces"),
    ],
)
def test_mistakes_are_reported_with_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_config(HEAD + text)
    assert "agent.toml:" in str(caught.value)
