"""The proxy's toxics and chains, pure: chunks and times in, actions out (no sockets, no clock).

One loopback test at the end runs the real link (asyncio, 127.0.0.1) with a fake upstream.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random

import pytest
from echolab_proxy.chain import Chain, affected
from echolab_proxy.link import Relay
from echolab_proxy.toxics import Close, Emit, Eof, ToxicSpec
from echolab_proxy.toxics.base import Toxic


def build(kind: str, **attributes: object) -> Toxic:
    return ToxicSpec(kind, attributes=attributes).build(random.Random(1))


def joined(actions: list) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Emit))


def chain(*specs: ToxicSpec, stream: str = "downstream", conn: int = 0, now: float = 0.0):
    made = Chain(stream, conn, seed=7)  # type: ignore[arg-type]
    for spec in specs:
        made.add(spec, now)
    return made


# -- specs ------------------------------------------------------------------------------------


def test_spec_defaults_and_round_trip():
    spec = ToxicSpec("latency", attributes={"latency": 50})
    assert spec.name == "latency_downstream" and spec.toxicity == 1.0
    assert ToxicSpec.from_dict(json.loads(json.dumps(spec.as_dict()))) == spec


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "lag"}, "toxic type must be one of"),
        ({"type": "latency", "stream": "up"}, "stream must be one of"),
        ({"type": "latency", "toxicity": 1.5}, "toxicity must be within"),
        ({"type": "latency", "attributes": {"latency": -1}}, "latency must be >= 0"),
        ({"type": "latency", "attributes": {"latency": "50ms"}}, "latency must be a number"),
        ({"type": "latency", "attributes": {"delay": 5}}, "unknown attribute"),
        ({"type": "bandwidth", "attributes": {"rate": 0}}, "rate must be > 0"),
        ({"type": "slicer", "attributes": {"average_size": 2, "size_variation": 2}}, "must be <"),
        ({"type": "limit_data", "attributes": {"bytes": 0}}, "bytes must be >= 1"),
        ({"type": "latency", "name": "has space"}, "toxic name must match"),
    ],
)
def test_bad_specs_fail_on_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ToxicSpec(**kwargs)


def test_from_dict_refuses_unknown_fields():
    with pytest.raises(ValueError, match="unknown toxic field"):
        ToxicSpec.from_dict({"type": "latency", "direction": "upstream"})


# -- one toxic at a time -----------------------------------------------------------------------


def test_passthrough_is_the_default():
    toxic = Toxic()
    assert toxic.on_chunk(b"ab", 1.0) == [Emit(b"ab", 1.0)]
    assert toxic.on_eof(2.0) == [Eof(2.0)]


def test_latency_delays_each_chunk_and_the_end():
    toxic = build("latency", latency=50)
    assert toxic.on_chunk(b"a", 1.0) == [Emit(b"a", 1.05)]
    assert toxic.on_chunk(b"b", 2.0) == [Emit(b"b", 2.05)]
    assert toxic.on_eof(3.0) == [Eof(3.05)]
    assert toxic.on_close(Close(3.0, reset=True)) == [Close(3.0, reset=True)]


def test_latency_jitter_stays_in_range_and_never_reorders():
    toxic = build("latency", latency=20, jitter=10)
    times = [toxic.on_chunk(b"x", i * 0.001)[0].at for i in range(500)]
    assert times == sorted(times)
    delays = [t - i * 0.001 for i, t in enumerate(times)]
    assert min(delays) >= 0.010 - 1e-9 and max(delays) <= 0.030 + 1e-9


def test_bandwidth_paces_bytes_at_the_rate():
    toxic = build("bandwidth", rate=10)  # 10 KB/s = 10,000 bytes/s, pieces of 1,000 bytes
    actions = toxic.on_chunk(b"x" * 5000, 0.0)
    assert [len(a.data) for a in actions] == [1000] * 5
    assert actions[-1].at == pytest.approx(0.5)
    assert toxic.on_chunk(b"y" * 1000, 0.1)[0].at == pytest.approx(0.6)  # queued behind
    assert toxic.on_eof(0.2) == [Eof(pytest.approx(0.6))]


def test_slicer_one_byte_segments_spaced_by_delay():
    toxic = build("slicer", average_size=1, size_variation=0, delay=100)
    actions = toxic.on_chunk(b"hello\n", 1.0)
    assert [a.data for a in actions] == [b"h", b"e", b"l", b"l", b"o", b"\n"]
    gaps = [b.at - a.at for a, b in itertools.pairwise(actions)]
    assert gaps == pytest.approx([100e-6] * 5)
    assert toxic.on_chunk(b"z", 1.0)[0].at == pytest.approx(1.0 + 6 * 100e-6)


def test_slicer_sizes_vary_within_bounds_and_keep_every_byte():
    toxic = build("slicer", average_size=10, size_variation=4)
    data = bytes(range(256)) * 4
    actions = toxic.on_chunk(data, 0.0)
    assert joined(actions) == data
    assert all(len(a.data) <= 14 for a in actions)
    assert all(len(a.data) >= 6 for a in actions[:-1])


def test_reset_peer_fires_an_rst_after_its_timeout():
    toxic = build("reset_peer", timeout=200)
    toxic.start(10.0)
    assert toxic.on_chunk(b"a", 10.1) == [Emit(b"a", 10.1)]  # data flows until then
    assert toxic.deadline() == pytest.approx(10.2)
    assert toxic.on_timer(10.2) == [Close(10.2, reset=True)]
    assert toxic.deadline() is None


def test_timeout_holds_then_closes():
    toxic = build("timeout", timeout=500)
    toxic.start(0.0)
    assert toxic.on_chunk(b"held", 0.1) == []
    assert toxic.deadline() == pytest.approx(0.5)
    assert toxic.on_timer(0.5) == [Close(0.5)]


def test_timeout_zero_holds_until_removed_then_releases_in_order():
    toxic = build("timeout", timeout=0)
    toxic.start(0.0)
    assert toxic.deadline() is None
    assert toxic.on_chunk(b"a", 1.0) == [] and toxic.on_chunk(b"b", 2.0) == []
    assert toxic.on_eof(3.0) == []
    assert toxic.on_remove(9.0) == [Emit(b"ab", 9.0), Eof(9.0)]


def test_slow_close_delays_the_end_only():
    toxic = build("slow_close", delay=300)
    assert toxic.on_chunk(b"a", 1.0) == [Emit(b"a", 1.0)]
    assert toxic.on_eof(1.0) == [Eof(pytest.approx(1.3))]
    assert toxic.on_close(Close(2.0)) == [Close(pytest.approx(2.3))]
    assert toxic.on_close(Close(2.0, reset=True)) == [Close(2.0, reset=True)]


def test_limit_data_cuts_at_the_limit_and_closes():
    toxic = build("limit_data", bytes=5)
    assert toxic.on_chunk(b"abc", 1.0) == [Emit(b"abc", 1.0)]
    assert toxic.on_chunk(b"defg", 2.0) == [Emit(b"de", 2.0), Close(2.0)]
    assert toxic.on_chunk(b"h", 3.0) == []


# -- chains --------------------------------------------------------------------------------


def test_chain_only_takes_toxics_of_its_stream():
    made = chain(ToxicSpec("latency", "upstream", {"latency": 10}), stream="downstream")
    assert made.toxics == {}
    assert made.chunk(b"a", 1.0) == [Emit(b"a", 1.0)]


def test_chain_composes_in_order_latency_then_slicer():
    made = chain(
        ToxicSpec("latency", attributes={"latency": 50}),
        ToxicSpec("slicer", attributes={"average_size": 1, "delay": 1000}),
    )
    actions = made.chunk(b"ab", 0.0)
    assert actions == [Emit(b"a", pytest.approx(0.05)), Emit(b"b", pytest.approx(0.051))]


def test_chain_keeps_data_in_order_after_a_toxic_is_removed():
    made = chain(ToxicSpec("latency", attributes={"latency": 100}))
    first = made.chunk(b"a", 0.0)
    made.remove("latency_downstream", 0.01)
    second = made.chunk(b"b", 0.02)  # no latency any more, but it must not overtake "a"
    assert first[0].at == pytest.approx(0.1) and second[0].at == pytest.approx(0.1)


def test_chain_timer_runs_through_the_later_toxics():
    made = chain(
        ToxicSpec("timeout", attributes={"timeout": 100}),
        ToxicSpec("slow_close", attributes={"delay": 50}),
    )
    assert made.deadline() == pytest.approx(0.1)
    assert made.tick(0.05) == []
    assert made.tick(0.1) == [Close(pytest.approx(0.15))]


def test_chain_releases_held_bytes_on_removal():
    made = chain(ToxicSpec("timeout", attributes={"timeout": 0}))
    assert made.chunk(b"held", 1.0) == []
    assert made.remove("timeout_downstream", 2.0) == [Emit(b"held", 2.0)]
    assert made.remove("timeout_downstream", 2.0) == []  # idempotent


def test_a_reset_is_not_held_behind_queued_data():
    made = chain(
        ToxicSpec("latency", attributes={"latency": 1000}),
        ToxicSpec("reset_peer", attributes={"timeout": 10}),
    )
    made.chunk(b"a", 0.0)
    assert made.tick(0.01) == [Close(pytest.approx(0.01), reset=True)]


def test_toxicity_is_seeded_per_connection():
    hits = [affected(3, "reset_peer_downstream", conn, 0.5) for conn in range(200)]
    assert hits == [affected(3, "reset_peer_downstream", c, 0.5) for c in range(200)]
    assert 70 < sum(hits) < 130
    assert all(affected(3, "x", c, 1.0) for c in range(10))
    assert not any(affected(3, "x", c, 0.0) for c in range(10))
    spec = ToxicSpec("latency", attributes={"latency": 10}, toxicity=0.5)
    added = [Chain("downstream", conn, seed=3).add(spec, 0.0) for conn in range(50)]
    assert added == [affected(3, spec.name, conn, 0.5) for conn in range(50)]


# -- the real link on loopback ------------------------------------------------------------------


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _through_proxy(toxics: list[ToxicSpec], payload: bytes) -> tuple[bytes, float, Relay]:
    upstream = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    proxy = Relay(upstream=("127.0.0.1", port), seed=1)
    for spec in toxics:
        proxy.add(spec)
    listener = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*listener.sockets[0].getsockname()[:2])
    loop = asyncio.get_running_loop()
    began = loop.time()
    writer.write(payload)
    await writer.drain()
    got = await asyncio.wait_for(reader.readexactly(len(payload)), timeout=5)
    elapsed = loop.time() - began
    writer.close()
    listener.close()
    upstream.close()
    return got, elapsed, proxy


def test_link_latency_and_slicing_on_loopback():
    toxics = [
        ToxicSpec("latency", "downstream", {"latency": 50}),
        ToxicSpec("slicer", "upstream", {"average_size": 1, "delay": 0}),
    ]
    got, elapsed, proxy = asyncio.run(_through_proxy(toxics, b"hello\n"))
    assert got == b"hello\n"
    assert 0.050 <= elapsed < 0.5
    stats = proxy.stats()
    assert stats["upstream"]["writes"] == 6 and stats["upstream"]["bytes"] == 6


def test_link_reset_peer_resets_the_client():
    async def run() -> BaseException | bytes:
        upstream = await asyncio.start_server(_echo, "127.0.0.1", 0)
        proxy = Relay(upstream=("127.0.0.1", upstream.sockets[0].getsockname()[1]))
        proxy.add(ToxicSpec("reset_peer", attributes={"timeout": 100}))
        listener = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*listener.sockets[0].getsockname()[:2])
        try:
            return await asyncio.wait_for(reader.read(100), timeout=5)
        except ConnectionResetError as error:
            return error
        finally:
            writer.close()
            listener.close()
            upstream.close()

    assert isinstance(asyncio.run(run()), ConnectionResetError)
