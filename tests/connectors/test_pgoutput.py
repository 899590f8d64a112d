"""The pgoutput parser and value converters, on hand-built messages (nothing running)."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.pgoutput import (
    PG_EPOCH_OFFSET_US,
    UNAVAILABLE,
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Origin,
    PgOutputError,
    Relation,
    Toast,
    Truncate,
    TypeInfo,
    Update,
    convert_tuple,
    convert_value,
    format_lsn,
    parse_array_literal,
    parse_lsn,
    parse_message,
    value_converter,
)


def cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


def tuple_data(*values: str | Toast | None) -> bytes:
    out = struct.pack("!h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is Toast.UNCHANGED:
            out += b"u"
        else:
            assert isinstance(value, str)
            raw = value.encode()
            out += b"t" + struct.pack("!i", len(raw)) + raw
    return out


def test_begin_and_commit() -> None:
    begin = parse_message(b"B" + struct.pack("!QqI", 0x1_0000_0010, 1_000_000, 742))
    assert begin == Begin(
        final_lsn=0x1_0000_0010, commit_time_us=PG_EPOCH_OFFSET_US + 1_000_000, xid=742
    )
    commit = parse_message(b"C" + struct.pack("!BQQq", 0, 100, 180, -5))
    assert commit == Commit(
        flags=0, commit_lsn=100, end_lsn=180, commit_time_us=PG_EPOCH_OFFSET_US - 5
    )


def test_relation_type_and_origin() -> None:
    body = (
        b"R"
        + struct.pack("!I", 16390)
        + cstr("public")
        + cstr("tickets")
        + b"f"
        + struct.pack("!h", 2)
        + b"\x01"
        + cstr("id")
        + struct.pack("!Ii", 20, -1)
        + b"\x00"
        + cstr("subject")
        + struct.pack("!Ii", 1043, 24)
    )
    assert parse_message(body) == Relation(
        relation_id=16390,
        namespace="public",
        name="tickets",
        replica_identity="f",
        columns=(Column("id", 20, -1, True), Column("subject", 1043, 24, False)),
    )
    assert parse_message(b"Y" + struct.pack("!I", 17000) + cstr("public") + cstr("mood")) == (
        TypeInfo(17000, "public", "mood")
    )
    assert parse_message(b"O" + struct.pack("!Q", 99) + cstr("upstream")) == Origin(99, "upstream")


def test_insert_with_null_unchanged_and_text() -> None:
    msg = parse_message(
        b"I" + struct.pack("!I", 7) + b"N" + tuple_data("1", None, Toast.UNCHANGED, "héllo")
    )
    assert msg == Insert(relation_id=7, new=("1", None, Toast.UNCHANGED, "héllo"))


def test_update_variants() -> None:
    plain = parse_message(b"U" + struct.pack("!I", 7) + b"N" + tuple_data("1", "b"))
    assert plain == Update(relation_id=7, old=None, old_kind=None, new=("1", "b"))
    full = parse_message(
        b"U" + struct.pack("!I", 7) + b"O" + tuple_data("1", "a") + b"N" + tuple_data("1", "b")
    )
    assert full == Update(relation_id=7, old=("1", "a"), old_kind="O", new=("1", "b"))
    key = parse_message(
        b"U" + struct.pack("!I", 7) + b"K" + tuple_data("1", None) + b"N" + tuple_data("2", "b")
    )
    assert key == Update(relation_id=7, old=("1", None), old_kind="K", new=("2", "b"))


def test_delete_truncate_and_message() -> None:
    assert parse_message(b"D" + struct.pack("!I", 7) + b"K" + tuple_data("1", None)) == Delete(
        relation_id=7, old=("1", None), old_kind="K"
    )
    truncate = parse_message(b"T" + struct.pack("!iB", 2, 3) + struct.pack("!II", 7, 8))
    assert truncate == Truncate(relation_ids=(7, 8), cascade=True, restart_identity=True)
    message = parse_message(
        b"M" + struct.pack("!BQ", 1, 55) + cstr("app") + struct.pack("!i", 3) + b"xyz"
    )
    assert message == LogicalMessage(transactional=True, lsn=55, prefix="app", content=b"xyz")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"Z123",
        b"B\x00\x01",
        b"I" + struct.pack("!I", 7) + b"X",
        b"I"
        + struct.pack("!I", 7)
        + b"N"
        + struct.pack("!h", 1)
        + b"t"
        + struct.pack("!i", 10)
        + b"ab",
        b"I" + struct.pack("!I", 7) + b"N" + struct.pack("!h", 1) + b"q",
        b"R" + struct.pack("!I", 1) + b"public",
    ],
)
def test_malformed_messages_raise(data: bytes) -> None:
    with pytest.raises(PgOutputError):
        parse_message(data)


def test_lsn_round_trip() -> None:
    assert format_lsn(0x16_B374D848) == "16/B374D848"
    assert parse_lsn("16/B374D848") == 0x16_B374D848
    assert parse_lsn(format_lsn(0)) == 0


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("{}", []),
        ("{en,de}", ["en", "de"]),
        ('{"pt BR","a,b","q\\"x",NULL,"NULL",""}', ["pt BR", "a,b", 'q"x', None, "NULL", ""]),
        ("{ a , b }", ["a", "b"]),
        ("{{1,2},{3,NULL}}", [["1", "2"], ["3", None]]),
        ("[0:1]={x,y}", ["x", "y"]),
        ("{back\\\\slash,\\{brace}", ["back\\slash", "{brace"]),
    ],
)
def test_array_literals(literal: str, expected: list[Any]) -> None:
    assert parse_array_literal(literal) == expected


@pytest.mark.parametrize("literal", ["", "{a", "a,b", "{a,}", "{a}x", '{"a}'])
def test_bad_array_literals(literal: str) -> None:
    with pytest.raises(ValueError):
        parse_array_literal(literal)


def _to_literal(items: list[Any]) -> str:
    """Render like PostgreSQL's array_out: quote what needs it, escape quotes/backslashes."""
    parts = []
    for item in items:
        if isinstance(item, list):
            parts.append(_to_literal(item))
        elif item is None:
            parts.append("NULL")
        elif item == "" or item.upper() == "NULL" or any(c in item for c in '{},"\\ \t\n\r\v\f'):
            parts.append('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            parts.append(item)
    return "{" + ",".join(parts) + "}"


@given(st.lists(st.one_of(st.none(), st.text(st.characters(exclude_categories=["Cs"])))))
def test_array_literal_round_trip(items: list[str | None]) -> None:
    assert parse_array_literal(_to_literal(items)) == items


@given(st.lists(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=2, max_size=2), min_size=1))
def test_nested_int_arrays(grid: list[list[int]]) -> None:
    literal = "{" + ",".join("{" + ",".join(map(str, row)) + "}" for row in grid) + "}"
    assert convert_value(1016, literal) == grid


@pytest.mark.parametrize(
    ("oid", "text", "expected"),
    [
        (20, "9007199254740993", 9007199254740993),
        (21, "-3", -3),
        (701, "1.25", 1.25),
        (701, "NaN", "NaN"),
        (700, "-Infinity", "-Infinity"),
        (1700, "12.500", "12.500"),
        (16, "t", True),
        (16, "f", False),
        (25, "text", "text"),
        (3802, '{"a": 1}', '{"a": 1}'),
        (2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        (1184, "2024-05-01 10:00:00.123456+00", "2024-05-01T10:00:00.123456Z"),
        (1184, "2024-05-01 10:00:00.5+00", "2024-05-01T10:00:00.500000Z"),
        (1184, "2024-05-01 10:00:00+00", "2024-05-01T10:00:00.000000Z"),
        (1184, "2024-05-01 12:00:00.25+02", "2024-05-01T10:00:00.250000Z"),
        (1114, "1970-01-01 00:00:01.000002", 1_000_002),
        (1114, "1969-12-31 23:59:59", -1_000_000),
        (1082, "1970-01-11", 10),
        (1083, "10:00:00.25", 36_000_250_000),
        (17, "\\x00ff", "AP8="),
        (1009, '{en,"pt BR"}', ["en", "pt BR"]),
        (1007, "{1,NULL,3}", [1, None, 3]),
        (1000, "{t,f}", [True, False]),
        (1185, '{"2024-05-01 10:00:00+00"}', ["2024-05-01T10:00:00.000000Z"]),
        (1186, "1 day", "1 day"),  # interval: unknown here, kept as text
        (99999, "anything", "anything"),
    ],
)
def test_value_conversion(oid: int, text: str, expected: Any) -> None:
    assert convert_value(oid, text) == expected


def test_special_values() -> None:
    assert convert_value(23, None) is None
    assert convert_value(25, Toast.UNCHANGED) == UNAVAILABLE
    assert convert_value(17, b"\x00\xff") == "AP8="
    assert value_converter(17000, {17000: 25})("{a,b}") == ["a", "b"]


def test_convert_tuple_keeps_raw_text_on_bad_value() -> None:
    columns = [
        Column("id", 20, -1, True),
        Column("at", 1184, -1, False),
        Column("t", 25, -1, False),
    ]
    row, problems = convert_tuple(columns, ["1", "infinity", Toast.UNCHANGED])
    assert row == {"id": 1, "at": "infinity", "t": UNAVAILABLE}
    assert len(problems) == 1 and "'at'" in problems[0]
    with pytest.raises(PgOutputError):
        convert_tuple(columns, ["1"])
