"""Every parser fed hostile bytes keeps its contract or raises the error its caller handles.

Targets (hardware/faults/hostile.py): scanner framer, scan decoding, AIM prefixes, HID key
events (raw and well-formed records), printer status replies and ASB blocks, the printer
emulator's ESC/POS parser, the mirror event stream, coupon tokens, agent.toml, and the
ingest body (gzip, batch, per-event checks). bench/chaos runs the same targets far longer.
"""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware.faults.hostile import TARGETS, fuzz, mutate, seeds

SEEDS = seeds()
_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(TARGETS))
@_SETTINGS
@given(data=st.binary(max_size=2048))
def test_random_bytes(name: str, data: bytes) -> None:
    TARGETS[name](data)


@pytest.mark.parametrize("name", sorted(TARGETS))
@_SETTINGS
@given(choice=st.integers(min_value=0), seed=st.integers(min_value=0, max_value=2**32))
def test_mutated_valid_input(name: str, choice: int, seed: int) -> None:
    corpus = SEEDS[name]
    TARGETS[name](mutate(corpus[choice % len(corpus)], random.Random(seed)))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_valid_seeds_pass_untouched(name: str) -> None:
    for data in SEEDS[name]:
        TARGETS[name](data)


def test_a_target_that_breaks_its_contract_is_reported() -> None:
    # The harness itself must be able to fail: a target that crashes on some inputs.
    def brittle(data: bytes) -> None:
        if b"\r" in data:
            raise KeyError("boom")

    TARGETS["brittle"] = brittle
    try:
        report = fuzz(200, seed=3)
    finally:
        del TARGETS["brittle"]
    assert report.tried["brittle"] == 200
    assert report.failures["brittle"], "the fuzzer missed a crashing target"
    assert set(report.failures) == {"brittle"}
