"""The units each toxic declares for its attributes (``toxics.UNITS``), which the harness reads
to turn "20ms" or "1mbit" into the numbers the proxy takes."""

from __future__ import annotations

import importlib
import random
from typing import get_args

import pytest
from echolab_proxy.toxics import KINDS, UNITS, ToxicSpec
from echolab_proxy.toxics.base import Unit
from hypothesis import given
from hypothesis import strategies as st

# Toxiproxy's units, written out once more on purpose: a change to a module must be deliberate.
TOXIPROXY = {
    "latency": {"latency": "ms", "jitter": "ms"},
    "bandwidth": {"rate": "KB/s"},
    "slicer": {"average_size": "bytes", "size_variation": "bytes", "delay": "us"},
    "reset_peer": {"timeout": "ms"},
    "timeout": {"timeout": "ms"},
    "slow_close": {"delay": "ms"},
    "limit_data": {"bytes": "bytes"},
}


def test_units_are_toxiproxys():
    assert UNITS == TOXIPROXY


def test_every_kind_declares_its_units_in_its_own_module():
    assert set(UNITS) == set(KINDS)
    for kind, units in UNITS.items():
        module = importlib.import_module(f"echolab_proxy.toxics.{kind}")
        assert module.ATTRIBUTES is units
        assert set(units.values()) <= set(get_args(Unit))


@pytest.mark.parametrize("kind", sorted(UNITS))
def test_declared_attributes_are_accepted_and_others_refused(kind):
    for name in UNITS[kind]:
        value = 2 if UNITS[kind][name] == "bytes" and name != "size_variation" else 1
        attributes = {name: value}
        if kind == "slicer" and name == "size_variation":
            attributes["average_size"] = 2
        ToxicSpec(kind, attributes=attributes).build(random.Random(0))
    with pytest.raises(ValueError, match="unknown attribute"):
        ToxicSpec(kind, attributes={"not_an_attribute": 1})


@pytest.mark.parametrize("kind", sorted(UNITS))
def test_the_proxy_takes_numbers_not_spellings(kind):
    name = next(iter(UNITS[kind]))
    with pytest.raises(ValueError, match="must be a number"):
        ToxicSpec(kind, attributes={name: f"1{UNITS[kind][name]}"})


@given(
    latency=st.floats(min_value=0, max_value=1e5, allow_nan=False),
    jitter=st.floats(min_value=0, max_value=1e5, allow_nan=False),
)
def test_latency_in_ms_becomes_seconds_on_the_link(latency, jitter):
    toxic = ToxicSpec("latency", attributes={"latency": latency}).build(random.Random(0))
    assert toxic.on_chunk(b"x", 0.0)[0].at == pytest.approx(latency / 1000)
    spread = ToxicSpec("latency", attributes={"latency": latency, "jitter": jitter})
    at = spread.build(random.Random(1)).on_chunk(b"x", 0.0)[0].at
    assert max(0.0, latency - jitter) / 1000 - 1e-9 <= at <= (latency + jitter) / 1000 + 1e-9


@given(rate=st.integers(min_value=1, max_value=10_000), size=st.integers(1, 50_000))
def test_bandwidth_in_kb_per_s_of_1000_bytes(rate, size):
    toxic = ToxicSpec("bandwidth", attributes={"rate": rate}).build(random.Random(0))
    assert toxic.on_chunk(b"x" * size, 0.0)[-1].at == pytest.approx(size / (rate * 1000))


def test_slicer_delay_is_in_microseconds():
    toxic = ToxicSpec("slicer", attributes={"average_size": 1, "delay": 250}).build(
        random.Random(0)
    )
    first, second = toxic.on_chunk(b"ab", 0.0)
    assert second.at - first.at == pytest.approx(250e-6)
