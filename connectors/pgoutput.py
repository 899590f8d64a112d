"""Pure parser for PostgreSQL's ``pgoutput`` logical decoding protocol (version 1).

Two halves, neither doing any I/O:

- :func:`parse_message` turns one binary message (a row of
  ``pg_logical_slot_peek_binary_changes``) into a frozen dataclass.
- :func:`convert_value` / :func:`convert_tuple` turn the text form of a column, as
  ``pgoutput`` sends it, into the value Debezium's PostgreSQL connector would put in its
  JSON envelope (schemas disabled, ``decimal.handling.mode=string``), so that the embedded
  reader and the Kafka path deliver identical rows.

The text forms assume the decoding session runs with ``TimeZone=UTC`` and
``DateStyle=ISO``; the reader sets both on its connections.

Kept as one module: it is one protocol: every pgoutput message type and the
value converters of the PostgreSQL types it carries.
"""

from __future__ import annotations

import base64
import enum
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

UNAVAILABLE = "__debezium_unavailable_value"
"""Debezium's placeholder for an unchanged TOASTed column that was not logged."""

# pgoutput timestamps count microseconds from the PostgreSQL epoch (2000-01-01 UTC).
PG_EPOCH_OFFSET_US = 946_684_800 * 1_000_000

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_BEGIN = struct.Struct("!QqI")
_COMMIT = struct.Struct("!BQQq")
_RELATION_HEAD = struct.Struct("!I")
_COLUMN_TAIL = struct.Struct("!Ii")
_TRUNCATE_HEAD = struct.Struct("!iB")
_ORIGIN = struct.Struct("!Q")
_MESSAGE_HEAD = struct.Struct("!BQ")

_EPOCH = datetime(1970, 1, 1)
_EPOCH_DATE_ORDINAL = date(1970, 1, 1).toordinal()


class PgOutputError(ValueError):
    """A pgoutput message is truncated, malformed or of an unknown kind."""


class Toast(enum.Enum):
    """Marker for a column whose value was not logged (unchanged TOAST, tuple kind ``u``)."""

    UNCHANGED = "u"


TupleValue = str | bytes | Toast | None
"""One column of a tuple: text, binary (only with the ``binary`` option), unchanged, null."""


@dataclass(frozen=True, slots=True)
class Begin:
    """Start of a transaction; every change until the next :class:`Commit` belongs to it."""

    final_lsn: int
    commit_time_us: int
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    """End of a transaction. ``end_lsn`` is where a slot may be advanced to past it."""

    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time_us: int


@dataclass(frozen=True, slots=True)
class Origin:
    """Replication origin of the transaction (set when it was itself replicated)."""

    lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a :class:`Relation`; ``is_key`` marks replica identity columns."""

    name: str
    type_oid: int
    type_modifier: int
    is_key: bool


@dataclass(frozen=True, slots=True)
class Relation:
    """Schema of a table, sent before the first change of that table in a decoding session."""

    relation_id: int
    namespace: str
    name: str
    replica_identity: str
    columns: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """Name of a non built-in type used by a following relation."""

    type_oid: int
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    relation_id: int
    new: tuple[TupleValue, ...]


@dataclass(frozen=True, slots=True)
class Update:
    """An update. ``old`` is set for REPLICA IDENTITY FULL (kind ``O``) or a key change (``K``)."""

    relation_id: int
    old: tuple[TupleValue, ...] | None
    old_kind: str | None
    new: tuple[TupleValue, ...]


@dataclass(frozen=True, slots=True)
class Delete:
    """A delete; ``old`` holds the full row (kind ``O``) or only the key columns (``K``)."""

    relation_id: int
    old: tuple[TupleValue, ...]
    old_kind: str


@dataclass(frozen=True, slots=True)
class Truncate:
    relation_ids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    """A ``pg_logical_emit_message`` payload (only sent with the ``messages`` option)."""

    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message = (
    Begin
    | Commit
    | Origin
    | Relation
    | TypeInfo
    | Insert
    | Update
    | Delete
    | Truncate
    | LogicalMessage
)


def _cstring(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.find(b"\x00", pos)
    if end < 0:
        raise PgOutputError("unterminated string")
    return buf[pos:end].decode("utf-8", "replace"), end + 1


def _tuple(buf: bytes, pos: int) -> tuple[tuple[TupleValue, ...], int]:
    (count,) = _I16.unpack_from(buf, pos)
    pos += 2
    values: list[TupleValue] = []
    append = values.append
    for _ in range(count):
        kind = buf[pos]
        pos += 1
        if kind == 0x74:  # 't': text
            (length,) = _I32.unpack_from(buf, pos)
            pos += 4
            end = pos + length
            if end > len(buf):
                raise PgOutputError("tuple value runs past the end of the message")
            append(buf[pos:end].decode("utf-8", "replace"))
            pos = end
        elif kind == 0x6E:  # 'n': null
            append(None)
        elif kind == 0x75:  # 'u': unchanged TOAST
            append(Toast.UNCHANGED)
        elif kind == 0x62:  # 'b': binary, only when the subscriber asked for it
            (length,) = _I32.unpack_from(buf, pos)
            pos += 4
            append(bytes(buf[pos : pos + length]))
            pos += length
        else:
            raise PgOutputError(f"unknown tuple value kind {chr(kind)!r}")
    return tuple(values), pos


def parse_message(data: bytes | bytearray | memoryview) -> Message:
    """Parse one pgoutput (protocol version 1) message.

    Args:
        data: The message bytes, starting with the one-letter message type.

    Returns:
        The message as a frozen dataclass.

    Raises:
        PgOutputError: The message is empty, truncated or of an unknown type.
    """
    buf = bytes(data)
    if not buf:
        raise PgOutputError("empty message")
    tag = buf[0]
    try:
        return _PARSERS[tag](buf)
    except KeyError:
        raise PgOutputError(f"unknown message type {chr(tag)!r}") from None
    except (struct.error, IndexError) as exc:
        raise PgOutputError(f"truncated {chr(tag)!r} message: {exc}") from exc


def _parse_begin(buf: bytes) -> Begin:
    final_lsn, ts, xid = _BEGIN.unpack_from(buf, 1)
    return Begin(final_lsn=final_lsn, commit_time_us=ts + PG_EPOCH_OFFSET_US, xid=xid)


def _parse_commit(buf: bytes) -> Commit:
    flags, commit_lsn, end_lsn, ts = _COMMIT.unpack_from(buf, 1)
    return Commit(
        flags=flags,
        commit_lsn=commit_lsn,
        end_lsn=end_lsn,
        commit_time_us=ts + PG_EPOCH_OFFSET_US,
    )


def _parse_origin(buf: bytes) -> Origin:
    (lsn,) = _ORIGIN.unpack_from(buf, 1)
    name, _ = _cstring(buf, 9)
    return Origin(lsn=lsn, name=name)


def _parse_relation(buf: bytes) -> Relation:
    (relid,) = _RELATION_HEAD.unpack_from(buf, 1)
    namespace, pos = _cstring(buf, 5)
    name, pos = _cstring(buf, pos)
    identity = chr(buf[pos])
    (ncols,) = _I16.unpack_from(buf, pos + 1)
    pos += 3
    columns = []
    for _ in range(ncols):
        flags = buf[pos]
        col_name, pos = _cstring(buf, pos + 1)
        type_oid, typmod = _COLUMN_TAIL.unpack_from(buf, pos)
        pos += 8
        columns.append(Column(col_name, type_oid, typmod, bool(flags & 1)))
    # pgoutput sends "" for the pg_catalog namespace; user tables always have one.
    return Relation(relid, namespace or "pg_catalog", name, identity, tuple(columns))


def _parse_type(buf: bytes) -> TypeInfo:
    (oid,) = _RELATION_HEAD.unpack_from(buf, 1)
    namespace, pos = _cstring(buf, 5)
    name, _ = _cstring(buf, pos)
    return TypeInfo(type_oid=oid, namespace=namespace, name=name)


def _expect(buf: bytes, pos: int, allowed: bytes) -> int:
    kind = buf[pos]
    if kind not in allowed:
        raise PgOutputError(f"expected one of {allowed!r} at byte {pos}, got {chr(kind)!r}")
    return kind


def _parse_insert(buf: bytes) -> Insert:
    (relid,) = _RELATION_HEAD.unpack_from(buf, 1)
    _expect(buf, 5, b"N")
    new, _ = _tuple(buf, 6)
    return Insert(relation_id=relid, new=new)


def _parse_update(buf: bytes) -> Update:
    (relid,) = _RELATION_HEAD.unpack_from(buf, 1)
    kind = _expect(buf, 5, b"KON")
    old: tuple[TupleValue, ...] | None = None
    old_kind: str | None = None
    pos = 6
    if kind != ord("N"):
        old_kind = chr(kind)
        old, pos = _tuple(buf, 6)
        _expect(buf, pos, b"N")
        pos += 1
    new, _ = _tuple(buf, pos)
    return Update(relation_id=relid, old=old, old_kind=old_kind, new=new)


def _parse_delete(buf: bytes) -> Delete:
    (relid,) = _RELATION_HEAD.unpack_from(buf, 1)
    kind = _expect(buf, 5, b"KO")
    old, _ = _tuple(buf, 6)
    return Delete(relation_id=relid, old=old, old_kind=chr(kind))


def _parse_truncate(buf: bytes) -> Truncate:
    count, options = _TRUNCATE_HEAD.unpack_from(buf, 1)
    relids = struct.unpack_from(f"!{count}I", buf, 6)
    return Truncate(
        relation_ids=tuple(relids), cascade=bool(options & 1), restart_identity=bool(options & 2)
    )


def _parse_logical_message(buf: bytes) -> LogicalMessage:
    flags, lsn = _MESSAGE_HEAD.unpack_from(buf, 1)
    prefix, pos = _cstring(buf, 10)
    (length,) = _I32.unpack_from(buf, pos)
    content = buf[pos + 4 : pos + 4 + length]
    if len(content) != length:
        raise PgOutputError("message content runs past the end of the message")
    return LogicalMessage(transactional=bool(flags & 1), lsn=lsn, prefix=prefix, content=content)


_PARSERS: dict[int, Callable[[bytes], Message]] = {
    ord("B"): _parse_begin,
    ord("C"): _parse_commit,
    ord("O"): _parse_origin,
    ord("R"): _parse_relation,
    ord("Y"): _parse_type,
    ord("I"): _parse_insert,
    ord("U"): _parse_update,
    ord("D"): _parse_delete,
    ord("T"): _parse_truncate,
    ord("M"): _parse_logical_message,
}


# --- LSNs -----------------------------------------------------------------------------


def format_lsn(lsn: int) -> str:
    """Format an LSN as PostgreSQL writes it (``16/B374D848``)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """Parse PostgreSQL's ``hi/lo`` hexadecimal LSN notation."""
    high, _, low = text.partition("/")
    if not low:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)


# --- Array literals ---------------------------------------------------------------------


def parse_array_literal(text: str, delimiter: str = ",") -> list[Any]:
    """Parse a PostgreSQL array literal into nested lists of strings and ``None``.

    Handles quoting (``"a,b"``), backslash escapes, ``NULL`` elements, nested dimensions and
    the explicit-bounds prefix (``[0:1]={a,b}``). Elements stay text; callers convert them.

    Args:
        text: The literal, e.g. ``{en,"pt BR",NULL}``.
        delimiter: Element separator; ``,`` for every built-in type except ``box``.

    Returns:
        The elements, one list level per array dimension.

    Raises:
        ValueError: The literal is malformed.
    """
    pos = 0
    if text.startswith("["):
        # Explicit lower bounds ("[0:2]={...}") do not change the element order.
        pos = text.index("=") + 1
    result, pos = _parse_array(text, pos, delimiter)
    if text[pos:].strip():
        raise ValueError(f"trailing characters after array literal: {text!r}")
    return result


# array_in only treats these ASCII characters as whitespace around elements.
_PG_SPACE = " \t\n\r\v\f"


def _parse_array(text: str, pos: int, delimiter: str) -> tuple[list[Any], int]:
    length = len(text)
    while pos < length and text[pos] in _PG_SPACE:
        pos += 1
    if pos >= length or text[pos] != "{":
        raise ValueError(f"array literal must start with '{{': {text!r}")
    pos += 1
    items: list[Any] = []
    while True:
        while pos < length and text[pos] in _PG_SPACE:
            pos += 1
        if pos >= length:
            raise ValueError(f"unterminated array literal: {text!r}")
        char = text[pos]
        if char == "}" and not items:
            return items, pos + 1
        if char == "{":
            sub, pos = _parse_array(text, pos, delimiter)
            items.append(sub)
        elif char == '"':
            pos += 1
            chunk: list[str] = []
            while True:
                if pos >= length:
                    raise ValueError(f"unterminated quoted element: {text!r}")
                char = text[pos]
                if char == "\\":
                    chunk.append(text[pos + 1 : pos + 2])
                    pos += 2
                elif char == '"':
                    pos += 1
                    break
                else:
                    chunk.append(char)
                    pos += 1
            items.append("".join(chunk))
        else:
            chunk = []
            escaped = False
            while pos < length and text[pos] not in (delimiter, "}"):
                if text[pos] == "\\":
                    chunk.append(text[pos + 1 : pos + 2])
                    escaped = True
                    pos += 2
                else:
                    chunk.append(text[pos])
                    pos += 1
            # Unquoted elements lose surrounding whitespace, as in PostgreSQL's array_in.
            raw = "".join(chunk).strip(_PG_SPACE)
            if not raw and not escaped:
                raise ValueError(f"empty unquoted array element: {text!r}")
            items.append(None if not escaped and raw.upper() == "NULL" else raw)
        while pos < length and text[pos] in _PG_SPACE:
            pos += 1
        if pos >= length:
            raise ValueError(f"unterminated array literal: {text!r}")
        if text[pos] == delimiter:
            pos += 1
        elif text[pos] == "}":
            return items, pos + 1
        else:
            raise ValueError(f"unexpected {text[pos]!r} in array literal: {text!r}")


# --- Value conversion --------------------------------------------------------------------


def _float(text: str) -> float | str:
    # Jackson (Debezium's JSON converter) writes non-finite doubles as quoted strings.
    if text in ("NaN", "Infinity", "-Infinity"):
        return text
    return float(text)


def _bool(text: str) -> bool:
    if text == "t":
        return True
    if text == "f":
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _zoned_timestamp(text: str) -> str:
    """timestamptz → io.debezium.time.ZonedTimestamp (ISO-8601 in UTC, microseconds)."""
    if text.endswith("+00") and len(text) >= 19 and text[10] == " ":
        # Fast path for the UTC session the reader runs in: "2024-05-01 10:00:00.12+00".
        body = text[:-3]
        main, _, fraction = body.partition(".")
        if len(main) == 19:
            return f"{main[:10]}T{main[11:]}.{fraction.ljust(6, '0')}Z"
    parsed = datetime.fromisoformat(text).astimezone(UTC)
    return f"{parsed:%Y-%m-%dT%H:%M:%S}.{parsed.microsecond:06d}Z"


def _micro_timestamp(text: str) -> int:
    """timestamp → io.debezium.time.MicroTimestamp (µs since the epoch, no zone)."""
    delta = datetime.fromisoformat(text) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _date(text: str) -> int:
    """date → io.debezium.time.Date (days since the epoch)."""
    return date.fromisoformat(text).toordinal() - _EPOCH_DATE_ORDINAL


def _micro_time(text: str) -> int:
    """time → io.debezium.time.MicroTime (µs since midnight)."""
    if text.startswith("24:00:00"):
        return 86_400_000_000
    parsed = time.fromisoformat(text)
    seconds = parsed.hour * 3600 + parsed.minute * 60 + parsed.second
    return seconds * 1_000_000 + parsed.microsecond


def _bytea(text: str) -> str:
    """bytea (hex output) → base64, Debezium's default ``binary.handling.mode=bytes``."""
    if not text.startswith("\\x"):
        raise ValueError("bytea is not in hex output format")
    return base64.b64encode(bytes.fromhex(text[2:])).decode("ascii")


def _text(text: str) -> str:
    return text


# Built-in type OIDs from pg_type.dat; they are fixed across PostgreSQL versions.
SCALAR_CONVERTERS: dict[int, Callable[[str], Any]] = {
    16: _bool,  # bool
    17: _bytea,  # bytea
    20: int,  # int8
    21: int,  # int2
    23: int,  # int4
    26: int,  # oid
    700: _float,  # float4
    701: _float,  # float8
    1700: _text,  # numeric: decimal.handling.mode=string
    25: _text,  # text
    1043: _text,  # varchar
    1042: _text,  # bpchar
    19: _text,  # name
    18: _text,  # char
    2950: _text,  # uuid
    114: _text,  # json: io.debezium.data.Json is a string
    3802: _text,  # jsonb
    1184: _zoned_timestamp,  # timestamptz
    1114: _micro_timestamp,  # timestamp
    1082: _date,  # date
    1083: _micro_time,  # time
}

ARRAY_ELEMENT_OIDS: dict[int, int] = {
    1000: 16,
    1001: 17,
    1005: 21,
    1007: 23,
    1016: 20,
    1028: 26,
    1021: 700,
    1022: 701,
    1231: 1700,
    1009: 25,
    1015: 1043,
    1014: 1042,
    1003: 19,
    1002: 18,
    2951: 2950,
    199: 114,
    3807: 3802,
    1185: 1184,
    1115: 1114,
    1182: 1082,
    1183: 1083,
}
"""Array type OID → element type OID for the built-in arrays."""


def _convert_elements(items: list[Any], convert: Callable[[str], Any]) -> list[Any]:
    return [
        _convert_elements(item, convert)
        if isinstance(item, list)
        else (None if item is None else convert(item))
        for item in items
    ]


def value_converter(
    type_oid: int, array_elements: Mapping[int, int] = ARRAY_ELEMENT_OIDS
) -> Callable[[str], Any]:
    """The function that turns a column's text into its Debezium JSON value.

    Args:
        type_oid: The column's type OID from the :class:`Relation` message.
        array_elements: Array type OID → element type OID; extend it with user array types.

    Returns:
        A converter; unknown types stay text.
    """
    convert = SCALAR_CONVERTERS.get(type_oid)
    if convert is not None:
        return convert
    element = array_elements.get(type_oid)
    if element is not None:
        convert_element = SCALAR_CONVERTERS.get(element, _text)

        def convert_array(text: str) -> list[Any]:
            return _convert_elements(parse_array_literal(text), convert_element)

        return convert_array
    return _text


def convert_value(
    type_oid: int,
    value: TupleValue,
    array_elements: Mapping[int, int] = ARRAY_ELEMENT_OIDS,
) -> Any:
    """Convert one pgoutput column value to its Debezium JSON representation.

    Args:
        type_oid: The column's type OID from the :class:`Relation` message.
        value: The column as sent: text, ``None``, :attr:`Toast.UNCHANGED` or bytes.
        array_elements: Array type OID → element type OID; extend it with user array types.

    Returns:
        The JSON-ready value. Unknown types stay text.

    Raises:
        ValueError: The text does not parse as the declared type.
    """
    if isinstance(value, str):
        return value_converter(type_oid, array_elements)(value)
    if value is None:
        return None
    if value is Toast.UNCHANGED:
        return UNAVAILABLE
    assert isinstance(value, bytes)
    return base64.b64encode(value).decode("ascii")


def convert_tuple(
    columns: Sequence[Column],
    values: Sequence[TupleValue],
    converters: Sequence[Callable[[str], Any]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Convert a whole tuple into a row dict, never failing on one bad column.

    A column that does not convert keeps its raw text, so one odd value cannot stop the
    stream; the returned problems let the caller log it.

    Args:
        columns: The relation's columns, in order.
        values: The tuple's values, in the same order.
        converters: One :func:`value_converter` per column; computed when omitted (callers
            converting many rows of a table should compute them once).

    Returns:
        The row and a list of human-readable conversion problems (usually empty).
    """
    if len(columns) != len(values):
        raise PgOutputError(f"tuple has {len(values)} values for {len(columns)} columns")
    if converters is None:
        converters = [value_converter(c.type_oid) for c in columns]
    row: dict[str, Any] = {}
    problems: list[str] = []
    for column, convert, value in zip(columns, converters, values, strict=True):
        if value.__class__ is str:
            try:
                row[column.name] = convert(value)
            except (ValueError, TypeError, OverflowError) as exc:
                problems.append(f"column {column.name!r} (type {column.type_oid}): {exc}")
                row[column.name] = value
        elif value is None:
            row[column.name] = None
        elif value is Toast.UNCHANGED:
            row[column.name] = UNAVAILABLE
        else:
            row[column.name] = base64.b64encode(value).decode("ascii")  # type: ignore[arg-type]
    return row, problems
