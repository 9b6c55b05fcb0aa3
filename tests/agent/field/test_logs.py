"""Structured logs: one JSON object per line, levels per component, secrets masked everywhere."""

import io
import json
import logging
from collections.abc import Iterator

import pytest

from agent.logs import redact, register_secret, setup_logging

TOKEN = "agent-token-" + "Q" * 32


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    yield out
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    for name in ("agent.sync", "agent.devices"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_per_component_levels(stream: io.StringIO) -> None:
    setup_logging("WARNING", {"agent.sync": "DEBUG"}, "json", stream)
    logging.getLogger("agent.sync.drain").debug("batch %d sent", 7, extra={"events": 500})
    logging.getLogger("agent.devices.scanner").info("quiet: below WARNING")
    logging.getLogger("agent.devices.scanner").warning("flood on %s", "scanner-1")
    first, second = _lines(stream)
    assert first["logger"] == "agent.sync.drain"
    assert first["level"] == "DEBUG"
    assert first["msg"] == "batch 7 sent"
    assert first["events"] == 500
    assert second["msg"] == "flood on scanner-1"
    assert str(second["ts"]).endswith("+00:00")


def test_secrets_are_masked_in_messages_arguments_and_tracebacks(stream: io.StringIO) -> None:
    setup_logging("DEBUG", {}, "json", stream)
    register_secret(TOKEN)
    log = logging.getLogger("agent.test")
    log.info("using token %s", TOKEN)
    log.info("header was Authorization: Bearer %s", "some-other-bearer-value")
    log.info("GET /?token=phone-link-secret&x=1")
    log.info('body {"token": "from-a-cloud-answer", "agent_id": "agt-1"}')
    try:
        raise RuntimeError(f"request failed with {TOKEN}")
    except RuntimeError:
        log.exception("boom")
    text = stream.getvalue()
    for secret in (TOKEN, "some-other-bearer-value", "phone-link-secret", "from-a-cloud-answer"):
        assert secret not in text
    lines = _lines(stream)
    assert lines[0]["msg"] == "using token ***"
    assert "agt-1" in str(lines[3]["msg"])  # only the secret goes, not the context
    assert "RuntimeError: request failed with ***" in str(lines[-1]["exc"])


def test_text_format_is_redacted_too(stream: io.StringIO) -> None:
    setup_logging("INFO", {}, "text", stream)
    register_secret(TOKEN)
    logging.getLogger("agent.test").info("token %s", TOKEN)
    assert TOKEN not in stream.getvalue()
    assert "token ***" in stream.getvalue()


def test_short_values_are_not_registered_as_secrets() -> None:
    register_secret("abc")
    assert redact("abc def") == "abc def"
