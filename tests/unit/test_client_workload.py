"""Payloads: exact sizes, a header that round-trips, a pacing schedule. Pure, no sockets."""

from __future__ import annotations

import pytest
from echo_client.workload import (
    PayloadError,
    make_payload,
    min_size,
    parse_payload,
    send_offset,
)
from hypothesis import given
from hypothesis import strategies as st

client_ids = st.text(
    st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=20
)


@pytest.mark.parametrize("size", [13, 14, 64, 100, 1000, 70_000])
def test_payload_is_exactly_size_bytes_and_ends_with_one_newline(size: int) -> None:
    payload = make_payload("c1", 7, size)
    assert len(payload) == size
    assert payload.endswith(b"\n") and payload.count(b"\n") == 1
    assert payload.startswith(b"c1 00000007 ")


@given(client_ids, st.integers(0, 10**10), st.integers(0, 200))
def test_payload_round_trips(client_id: str, seq: int, extra: int) -> None:
    size = min_size(client_id, seq + 1) + extra
    payload = make_payload(client_id, seq, size)
    assert len(payload) == size
    assert parse_payload(payload) == (client_id, seq)


def test_min_size_is_the_smallest_that_works() -> None:
    need = min_size("c1", 100)
    assert need == len(b"c1 00000099 \n")
    make_payload("c1", 99, need)
    with pytest.raises(PayloadError, match="too small"):
        make_payload("c1", 99, need - 1)


def test_min_size_grows_with_seqs_beyond_eight_digits() -> None:
    assert min_size("c", 10**8 + 1) == min_size("c", 10**8) + 1


def test_payloads_differ_in_their_filler_not_only_their_header() -> None:
    payload = make_payload("c", 0, 200)
    assert len(set(payload[10:-1])) > 20  # a shifted echo cannot look right


@pytest.mark.parametrize("bad", [b"", b"\n", b"c1\n", b"c1 xx rest\n", b" 0001 x\n", b"\xff 1 x\n"])
def test_parse_payload_rejects_foreign_bytes(bad: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_payload(bad)


def test_send_offsets_follow_the_rate_from_the_start() -> None:
    assert send_offset(0, 100.0) == 0.0
    assert send_offset(50, 100.0) == pytest.approx(0.5)
    assert send_offset(1234, None) == 0.0
