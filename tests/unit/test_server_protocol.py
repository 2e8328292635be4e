"""Pure tests of the server's protocol module: framing, replies, stamps. No sockets."""

from __future__ import annotations

import itertools
import time

import pytest
from echo_server.protocol import (
    RAW_CHUNK,
    REPLY_RE,
    STAMP_LEN,
    LineFramer,
    LineTooLong,
    RawFramer,
    ReplyError,
    StampCache,
    check_reply,
    ctime_stamp,
    error_line,
    format_replies,
    format_reply,
    line_too_long,
    make_framer,
    parse_reply,
)
from hypothesis import given
from hypothesis import strategies as st

STAMP = b"[Wed Nov 25 02:00:05 2026] "


def feed_all(framer: LineFramer | RawFramer, segments: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for segment in segments:
        out.extend(framer.feed(segment))
    return out


def expected_requests(stream: bytes) -> list[bytes]:
    """The reference: every newline-terminated piece, the unterminated tail dropped."""
    return [part + b"\n" for part in stream.split(b"\n")[:-1]]


def split_at(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(stream)) for c in cuts})
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


# Bytes biased toward the interesting ones: newline, CR, NUL, invalid UTF-8.
stream_bytes = st.lists(
    st.one_of(
        st.sampled_from([b"\n", b"\r", b"\x00", b"\xff", b"\xc3", b"a"]), st.binary(max_size=5)
    ),
    max_size=60,
).map(b"".join)


@given(stream=stream_bytes, cuts=st.lists(st.integers(0, 400), max_size=30))
def test_any_segmentation_gives_the_same_requests(stream: bytes, cuts: list[int]) -> None:
    framer = LineFramer(max_line=1000)
    assert feed_all(framer, split_at(stream, cuts)) == expected_requests(stream)
    assert framer.buffered == len(stream) - sum(map(len, expected_requests(stream)))


@given(stream=stream_bytes)
def test_one_byte_segments_property(stream: bytes) -> None:
    framer = LineFramer(max_line=1000)
    segments = [stream[i : i + 1] for i in range(len(stream))]
    assert feed_all(framer, segments) == expected_requests(stream)


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        ([b"h", b"e", b"l", b"l", b"o", b"\n"], [b"hello\n"]),
        ([b"a\nb\nc\n"], [b"a\n", b"b\n", b"c\n"]),
        ([b"a\r\n", b"\r\n"], [b"a\r\n", b"\r\n"]),
        ([b"\x00\x00\n"], [b"\x00\x00\n"]),
        ([b"\xff\xfe\xc3(\n"], [b"\xff\xfe\xc3(\n"]),
        ([b"\n\n", b"\n"], [b"\n", b"\n", b"\n"]),
        ([b"par", b"tial"], []),
        ([b"ab", b"c\nde", b"f\n"], [b"abc\n", b"def\n"]),
    ],
)
def test_line_framing_explicit_cases(segments: list[bytes], expected: list[bytes]) -> None:
    assert feed_all(LineFramer(64), segments) == expected


def test_many_lines_in_one_chunk_keep_order() -> None:
    lines = [f"line {i}\n".encode() for i in range(1000)]
    assert LineFramer(64).feed(b"".join(lines)) == lines


def test_line_at_the_limit_is_accepted() -> None:
    framer = LineFramer(max_line=4)
    assert framer.feed(b"abcd") == []
    assert framer.feed(b"\n") == [b"abcd\n"]


def test_partial_line_over_limit_raises_and_frees_the_buffer() -> None:
    framer = LineFramer(max_line=1024)
    with pytest.raises(LineTooLong) as info:
        for _ in range(10 * 1024):  # 10 MiB in 1 KiB reads, never a newline
            framer.feed(b"x" * 1024)
    assert info.value.limit == 1024
    assert info.value.requests == []
    assert framer.buffered == 0
    assert str(info.value) == "line too long (limit 1024 bytes)"


def test_complete_line_over_limit_keeps_the_requests_before_it() -> None:
    framer = LineFramer(max_line=4)
    with pytest.raises(LineTooLong) as info:
        framer.feed(b"ok\nfine\ntoolong\nlater\n")
    assert info.value.requests == [b"ok\n", b"fine\n"]
    assert framer.buffered == 0


def test_tail_over_limit_after_complete_lines() -> None:
    framer = LineFramer(max_line=4)
    with pytest.raises(LineTooLong) as info:
        framer.feed(b"ok\n" + b"y" * 5)
    assert info.value.requests == [b"ok\n"]
    assert framer.buffered == 0


def test_buffered_prefix_pushes_line_over_limit() -> None:
    framer = LineFramer(max_line=4)
    framer.feed(b"abc")
    with pytest.raises(LineTooLong):
        framer.feed(b"de\n")


def test_line_framer_rejects_nonpositive_limit() -> None:
    with pytest.raises(ValueError, match="max_line"):
        LineFramer(0)


def test_raw_framer_cuts_reads_into_1024_byte_chunks() -> None:
    framer = RawFramer()
    data = bytes(range(256)) * 10  # 2560 bytes
    chunks = framer.feed(data)
    assert [len(c) for c in chunks] == [RAW_CHUNK, RAW_CHUNK, 512]
    assert b"".join(chunks) == data
    assert framer.feed(b"no newline") == [b"no newline"]
    assert framer.feed(b"") == []
    assert framer.buffered == 0


@given(st.binary(max_size=5000))
def test_raw_framer_property(data: bytes) -> None:
    chunks = RawFramer().feed(data)
    assert b"".join(chunks) == data
    assert all(0 < len(c) <= RAW_CHUNK for c in chunks)


def replies_or_error(framer: LineFramer | RawFramer, data: bytes) -> tuple[bytes, int] | str:
    try:
        return framer.replies(data, STAMP)
    except LineTooLong as exc:
        return f"LineTooLong {exc.requests!r}"


def feed_or_error(framer: LineFramer | RawFramer, data: bytes) -> tuple[bytes, int] | str:
    try:
        requests = framer.feed(data)
    except LineTooLong as exc:
        return f"LineTooLong {exc.requests!r}"
    return format_replies(requests, STAMP), len(requests)


@given(
    stream=stream_bytes,
    cuts=st.lists(st.integers(0, 400), max_size=30),
    max_line=st.sampled_from([1, 4, 16, 65536]),
    raw=st.booleans(),
)
def test_replies_equal_feed_then_format(
    stream: bytes, cuts: list[int], max_line: int, raw: bool
) -> None:
    """replies() is feed() then format_replies(), read by read: same bytes, counts, errors
    (with the requests before an overlong line) and the same partial line kept."""
    fast, slow = (RawFramer(), RawFramer()) if raw else (LineFramer(max_line), LineFramer(max_line))
    for segment in split_at(stream, cuts):
        assert replies_or_error(fast, segment) == feed_or_error(slow, segment)
        assert fast.buffered == slow.buffered


def test_replies_of_whole_lines_in_one_read() -> None:
    framer = LineFramer(max_line=8)
    assert framer.replies(b"a\n\nbc\n", STAMP) == (
        STAMP + b"a\n" + STAMP + b"\n" + STAMP + b"bc\n",
        3,
    )
    assert framer.replies(b"12345678\n", STAMP) == (STAMP + b"12345678\n", 1)
    with pytest.raises(LineTooLong):
        framer.replies(b"123456789\n", STAMP)


def test_replies_complete_a_buffered_line() -> None:
    framer = LineFramer(max_line=8)
    assert framer.replies(b"ab", STAMP) == (b"", 0)
    assert framer.replies(b"c\nd\n", STAMP) == (STAMP + b"abc\n" + STAMP + b"d\n", 2)
    assert framer.buffered == 0


def test_make_framer() -> None:
    assert isinstance(make_framer("line", 10), LineFramer)
    assert isinstance(make_framer("raw", 10), RawFramer)
    with pytest.raises(ValueError, match="unknown framing"):
        make_framer("bogus", 10)


def test_reply_formatting_is_byte_exact() -> None:
    assert format_reply(b"hi\r\n", STAMP) == b"[Wed Nov 25 02:00:05 2026] hi\r\n"
    requests = [b"a\n", b"\xff\x00\n", b"\n"]
    assert format_replies(requests, STAMP) == b"".join(STAMP + r for r in requests)
    assert format_replies([], STAMP) == b""
    assert format_replies([b""], STAMP) == STAMP


def test_ctime_stamp_matches_time_ctime() -> None:
    now = 1_795_000_000.7
    assert ctime_stamp(now) == b"[" + time.ctime(now).encode() + b"] "
    assert len(ctime_stamp(now)) == STAMP_LEN


def test_stamp_cache_recomputes_only_when_the_second_changes() -> None:
    clock = [100.1]
    cache = StampCache(clock=lambda: clock[0])
    first = cache()
    clock[0] = 100.9
    assert cache() is first
    clock[0] = 101.0
    second = cache()
    assert second == ctime_stamp(101) and second != first


def test_error_lines() -> None:
    assert error_line("too many connections") == b"ERROR too many connections\n"
    assert line_too_long(65536) == b"ERROR line too long (limit 65536 bytes)\n"


def test_parse_and_check_reply() -> None:
    stamp, echoed = parse_reply(STAMP + b"x\xff\n")
    assert stamp == b"Wed Nov 25 02:00:05 2026"
    assert echoed == b"x\xff\n"
    assert parse_reply(b"[Thu Nov  5 02:00:05 2026] ")[1] == b""
    check_reply(ctime_stamp(time.time()) + b"healthcheck\n", b"healthcheck\n")
    assert REPLY_RE.match(STAMP + b"z") is not None


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"healthcheck\n", "prefix"),
        (b"[Wed Nov 25 02:00:05 2026]healthcheck\n", "prefix"),
        (b"[Xyz Nov 25 02:00:05 2026] x\n", "not a ctime"),
        (b"ERROR idle timeout\n", "ERROR idle timeout"),
        (STAMP + b"other\n", "mismatch"),
    ],
)
def test_check_reply_rejects(reply: bytes, reason: str) -> None:
    with pytest.raises(ReplyError, match=reason):
        check_reply(reply, b"healthcheck\n")


# Any split of any byte stream yields exactly the replies of the unsplit stream -------------


def run_until_error(framer: LineFramer, segments: list[bytes]) -> tuple[list[bytes], int | None]:
    """Requests answered, and the limit of the LineTooLong that ended the stream, if any."""
    out: list[bytes] = []
    for segment in segments:
        try:
            out.extend(framer.feed(segment))
        except LineTooLong as exc:
            return [*out, *exc.requests], exc.limit
    return out, None


@given(
    stream=stream_bytes,
    cuts=st.lists(st.integers(0, 400), max_size=30),
    max_line=st.integers(1, 12),
)
def test_any_segmentation_gives_the_same_replies_and_the_same_error(
    stream: bytes, cuts: list[int], max_line: int
) -> None:
    # A small limit, so overlong lines (complete, or a tail still open) are frequent.
    whole = run_until_error(LineFramer(max_line), [stream])
    split = run_until_error(LineFramer(max_line), split_at(stream, cuts))
    assert split == whole
    requests, error = whole
    assert format_replies(split[0], STAMP) == format_replies(requests, STAMP)
    if error is None:
        assert requests == expected_requests(stream)
    else:  # the error comes right after the last line within the limit
        assert requests == expected_requests(stream)[: len(requests)]
        assert all(len(r) <= max_line + 1 for r in requests)


@given(stream=st.binary(max_size=5000), cuts=st.lists(st.integers(0, 5000), max_size=20))
def test_raw_framing_any_segmentation_echoes_the_stream(stream: bytes, cuts: list[int]) -> None:
    # Raw framing answers each read, so the reply boundaries follow the reads by design; what
    # holds for any split is that the echoed bytes are the stream, in order, none lost.
    framer = RawFramer()
    chunks = [c for s in split_at(stream, cuts) for c in framer.feed(s)]
    assert b"".join(chunks) == stream
    assert all(0 < len(c) <= RAW_CHUNK for c in chunks)
    replies = b"".join(format_replies([c], STAMP) for c in chunks)
    assert replies == b"".join(STAMP + c for c in chunks)
    assert len(replies) == len(stream) + STAMP_LEN * len(chunks)
