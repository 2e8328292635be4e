"""The batch client's output as data: one JSON object per line, and its way back in.

The client's stdout is the interface to the harness, so the schema lives here once, with both
directions (to_json and from_json) next to each other where a change to one shows in the other.
Bytes become text with ``errors="backslashreplace"``: every byte the server sent stays visible
and comparable (a stray b"\\xff" reads as the four characters ``\\xff``), and JSON stays valid.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any, ClassVar, Self


def text(data: bytes) -> str:
    """Bytes as they are shown in records: exact for UTF-8, escaped otherwise."""
    return data.decode("utf-8", errors="backslashreplace")


class RecordError(ValueError):
    """A JSON line that is not one of our records."""


class _Record:
    TYPE: ClassVar[str]
    # Declared only: each subclass is a dataclass, so asdict(self) and fields(cls) hold.
    __dataclass_fields__: ClassVar[dict[str, Field[object]]]

    def to_json(self) -> str:
        # "type" first, so a line can be recognised at a glance.
        return json.dumps({"type": self.TYPE, **asdict(self)})

    @classmethod
    def from_json(cls, line: str) -> Self:
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise RecordError(f"not JSON: {error}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object) -> Self:
        if not isinstance(data, Mapping) or data.get("type") != cls.TYPE:
            raise RecordError(f"not a {cls.TYPE!r} record")
        names = [f.name for f in fields(cls)]
        lacking = [f.name for f in fields(cls) if f.name not in data and _required(f)]
        if lacking:
            raise RecordError(f"{cls.TYPE} record lacks {', '.join(lacking)}")
        try:
            return cls._build({name: data[name] for name in names if name in data})
        except (TypeError, ValueError) as error:
            raise RecordError(f"bad {cls.TYPE} record: {error}") from None

    @classmethod
    def _build(cls, values: dict[str, Any]) -> Self:
        # Any: the values are parsed JSON; each record's _build narrows its own fields.
        return cls(**values)


@dataclass(frozen=True)
class Exchange(_Record):
    """One request and the reply that answered it.

    ``sent``/``received`` are wall-clock (to line up with server logs and other clients),
    ``rtt_ms`` comes from perf_counter (monotonic, so a clock step cannot fake a latency).
    ``connection`` is which of the client's ``--connections`` it belongs to (0 with one): each
    has its own seqs from 0. ``conn`` is the TCP connection the reply came on within it: 0
    first, +1 per reconnect. Order holds per (client, connection, conn).
    """

    TYPE: ClassVar[str] = "exchange"
    client: str
    connection: int = field(default=0, kw_only=True)  # absent in records of older clients
    conn: int
    seq: int
    sent: float
    received: float
    rtt_ms: float
    request: str
    reply: str

    @classmethod
    def _build(cls, values: dict[str, Any]) -> Self:
        return cls(
            client=str(values["client"]), connection=_int(values.get("connection", 0)),
            conn=_int(values["conn"]), seq=_int(values["seq"]),
            sent=float(values["sent"]), received=float(values["received"]),
            rtt_ms=float(values["rtt_ms"]), request=_str(values["request"]),
            reply=_str(values["reply"]),
        )  # fmt: skip


@dataclass(frozen=True)
class Problem(_Record):
    """Something the client found wrong with a reply (or its absence), as it happened.

    ``kind`` is one of malformed, out_of_order, missing, duplicate; ``connection`` as in
    ``Exchange``.
    """

    TYPE: ClassVar[str] = "problem"
    KINDS: ClassVar[tuple[str, ...]] = ("malformed", "out_of_order", "missing", "duplicate")
    client: str
    connection: int = field(default=0, kw_only=True)
    seq: int | None
    kind: str
    expected: str
    got: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.kind}: expected {self.expected}, got {self.got}"

    @classmethod
    def _build(cls, values: dict[str, Any]) -> Self:
        seq = values["seq"]
        return cls(
            client=str(values["client"]), connection=_int(values.get("connection", 0)),
            seq=None if seq is None else _int(seq),
            kind=_str(values["kind"]), expected=_str(values["expected"]), got=_str(values["got"]),
        )  # fmt: skip


@dataclass(frozen=True)
class Summary(_Record):
    """The client's own verdict; ``ok`` is true only if every reply came, well-formed, in order.

    ``count`` and ``replied`` add up all ``connections`` (``count`` messages each).
    ``problems`` holds at most ``MAX_LISTED`` readable strings (the problem records carry all
    of them), so the summary stays one reasonable line however bad a run was.
    """

    TYPE: ClassVar[str] = "summary"
    MAX_LISTED: ClassVar[int] = 20
    client: str
    count: int
    replied: int
    ok: bool
    reconnects: int
    elapsed_s: float
    problems: tuple[str, ...] = field(default_factory=tuple)
    framing: str = "line"
    connections: int = 1

    def to_json(self) -> str:
        return _verdict_json(self)

    @classmethod
    def _build(cls, values: dict[str, Any]) -> Self:
        return cls(
            **_verdict(values), framing=_str(values.get("framing", "line")),
            connections=_int(values.get("connections", 1)),
        )  # fmt: skip


@dataclass(frozen=True)
class ConnectionSummary(_Record):
    """One connection's verdict, written as it ends, when the client has several (with one,
    the summary is its verdict): what ``Summary`` says, for ``connection`` alone."""

    TYPE: ClassVar[str] = "connection"
    client: str
    connection: int
    count: int
    replied: int
    ok: bool
    reconnects: int
    elapsed_s: float
    problems: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        return _verdict_json(self)

    @classmethod
    def _build(cls, values: dict[str, Any]) -> Self:
        return cls(**_verdict(values), connection=_int(values["connection"]))


def _verdict_json(record: Summary | ConnectionSummary) -> str:
    data = {"type": record.TYPE, **asdict(record)}
    data["problems"] = list(record.problems)
    return json.dumps(data)


def _verdict(values: dict[str, Any]) -> dict[str, Any]:
    """The fields both verdicts share, narrowed from parsed JSON."""
    problems = values["problems"]
    if not isinstance(problems, list):
        raise TypeError("problems must be a list")
    ok = values["ok"]
    if not isinstance(ok, bool):
        raise TypeError("ok must be true or false")
    return {
        "client": str(values["client"]), "count": _int(values["count"]),
        "replied": _int(values["replied"]), "ok": ok, "reconnects": _int(values["reconnects"]),
        "elapsed_s": float(values["elapsed_s"]), "problems": tuple(map(str, problems)),
    }  # fmt: skip


def listed(problems: Iterable[object], limit: int = Summary.MAX_LISTED) -> tuple[str, ...]:
    """At most ``limit`` problems as text, plus how many more there were."""
    items = [str(p) for p in problems]
    if len(items) <= limit:
        return tuple(items)
    return (*items[:limit], f"... and {len(items) - limit} more")


@dataclass
class ParsedRecords:
    """A client's stdout as data. ``unparsed`` keeps every line that was not a record, so a
    stray print or a traceback is reported instead of silently vanishing."""

    exchanges: list[Exchange] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    connections: list[ConnectionSummary] = field(default_factory=list)
    summary: Summary | None = None
    unparsed: list[str] = field(default_factory=list)


_TYPES: dict[str, type[Exchange] | type[Problem] | type[ConnectionSummary] | type[Summary]] = {
    cls.TYPE: cls for cls in (Exchange, Problem, ConnectionSummary, Summary)
}


def parse_records(lines: Iterable[str]) -> ParsedRecords:
    """Read JSON lines back; blank lines are skipped, anything else unknown goes to unparsed."""
    parsed = ParsedRecords()
    for line in lines:
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            cls = _TYPES[data["type"]]
            record = cls.from_dict(data)
        except (ValueError, KeyError, TypeError):
            parsed.unparsed.append(line)
            continue
        if isinstance(record, Exchange):
            parsed.exchanges.append(record)
        elif isinstance(record, Problem):
            parsed.problems.append(record)
        elif isinstance(record, ConnectionSummary):
            parsed.connections.append(record)
        else:
            if parsed.summary is not None:  # two summaries: keep the last, report the first
                parsed.unparsed.append(parsed.summary.to_json())
            parsed.summary = record
    return parsed


def _required(spec: Field[object]) -> bool:
    return spec.default is MISSING and spec.default_factory is MISSING


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value
