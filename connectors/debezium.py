"""Decode Debezium PostgreSQL change-event envelopes into :class:`ChangeEvent`.

Pure functions only: no I/O and no client library, so both inbound paths (Kafka topics
written by Debezium, and the embedded pgoutput reader that writes the same JSON) share one
decoder and its tests need nothing running.

Accepted input:

* schemas-enabled envelopes (``{"schema": ..., "payload": ...}``) and schemaless ones;
* every operation: ``c`` create, ``u`` update, ``d`` delete, ``r`` snapshot read and
  ``t`` truncate (no row images, empty key);
* ``source.snapshot`` as a string (``"true"``, ``"last"``, ``"incremental"``, ...) or a bool;
* Kafka tombstones (``value`` is ``None``), reported as ``None`` so callers count and skip
  them;
* records on a Debezium topic that are not row changes, which are skipped the same way and
  counted by kind in :data:`SKIPPED_RECORDS`: logical decoding messages (``op: "m"``, from
  ``pg_logical_emit_message``, e.g. the connector's heartbeat action query), heartbeats
  (``{"ts_ms": ...}`` on ``__debezium-heartbeat.<prefix>``) and transaction metadata
  (``BEGIN``/``END`` records). :func:`decode_record` returns them as
  :class:`SkippedRecord` for callers that count them themselves.

When a schema is present, column values are converted by the schema's semantic ``name``:
Debezium/Kafka Connect timestamps become aware UTC datetimes, dates become
:class:`datetime.date`, times become :class:`datetime.time`, ``Decimal`` and
``VariableScaleDecimal`` become :class:`decimal.Decimal`, ``io.debezium.data.Json`` is parsed
and plain ``bytes`` are base64-decoded. Without a schema the values are left as Debezium's
JSON converter wrote them (epoch numbers, ISO strings, JSON text); the entity parsers in
:mod:`models.helpdesk` accept both forms. Decimals delivered as strings
(``decimal.handling.mode=string``) stay strings in both cases.

TOAST: an unchanged TOASTed column that Debezium could not read arrives as
:data:`models.helpdesk.UNAVAILABLE` (``"__debezium_unavailable_value"``). The decoder keeps
that sentinel in ``after`` (also for bytes and array columns, which Debezium encodes as the
placeholder's bytes or a one-element list); consumers must merge such a column with the
previous image of the row they hold instead of storing the sentinel.

Kept as one module: the decoder's converters and the encoder are inverses of
each other over the same Debezium type names, and are tested as round trips.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from models.events import ChangeEvent, RawChange
from models.helpdesk import UNAVAILABLE

__all__ = [
    "SKIPPED_RECORDS",
    "DecodeError",
    "SkippedRecord",
    "decode_change_event",
    "decode_key",
    "decode_record",
    "encode_envelope",
    "encode_key",
]


class DecodeError(ValueError):
    """A record is not a valid Debezium change event; the message says why."""


SkipKind = Literal["tombstone", "message", "heartbeat", "transaction"]


@dataclass(frozen=True)
class SkippedRecord:
    """A valid Debezium record that carries no row change.

    Attributes:
        kind: ``tombstone`` (the null value after a delete), ``message`` (a logical
            decoding message), ``heartbeat`` or ``transaction`` (BEGIN/END metadata).
        detail: The message prefix or transaction status, when there is one.
    """

    kind: SkipKind
    detail: str | None = None


SKIPPED_RECORDS: Counter[str] = Counter()
"""Records :func:`decode_change_event` skipped in this process, by :attr:`SkippedRecord.kind`."""

_TOMBSTONE = SkippedRecord("tombstone")

_StrictInt = Annotated[int, Strict()]


class _Source(BaseModel):
    """The part of Debezium's ``source`` block the pipeline relies on."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # Debezium PostgreSQL always sets the LSN; it is the version sinks order changes by.
    lsn: _StrictInt
    table: str | None = None
    ts_ms: _StrictInt | None = None
    tx_id: _StrictInt | None = Field(default=None, alias="txId")
    snapshot: bool | str | None = None


class _Payload(BaseModel):
    """A Debezium change-event payload (the envelope without its schema)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    op: Literal["c", "u", "d", "r", "t"]
    source: _Source
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    ts_ms: _StrictInt | None = None


# Debezium marks every snapshot phase with one of these; "false" (or a missing value) means
# streaming. Unknown markers are rejected so that a new Debezium behaviour is noticed.
_SNAPSHOT_MARKERS = frozenset(
    {
        "true",
        "first",
        "last",
        "incremental",
        "first_in_data_collection",
        "last_in_data_collection",
    }
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)
_UNAVAILABLE_BYTES = UNAVAILABLE.encode()
_UNAVAILABLE_BASE64 = base64.b64encode(_UNAVAILABLE_BYTES).decode()

Converter = Callable[[Any], Any]
"""Turns one JSON-decoded column value into its Python value."""


# --------------------------------------------------------------------------- public API


def decode_change_event(raw: RawChange) -> ChangeEvent | None:
    """Decode one Debezium record into a :class:`ChangeEvent`.

    Args:
        raw: The record as a source delivered it.

    Returns:
        The decoded change, or ``None`` for a record without a row change (a tombstone, a
        logical decoding message, a heartbeat or transaction metadata), which is counted
        in :data:`SKIPPED_RECORDS` by kind; callers skip it.

    Raises:
        DecodeError: The record is malformed; the message is a human-readable reason.
    """
    decoded = decode_record(raw)
    if isinstance(decoded, SkippedRecord):
        SKIPPED_RECORDS[decoded.kind] += 1
        return None
    return decoded


def decode_record(raw: RawChange) -> ChangeEvent | SkippedRecord:
    """Decode one Debezium record, saying what it is when it is not a row change.

    Args:
        raw: The record as a source delivered it.

    Returns:
        The decoded change, or a :class:`SkippedRecord` naming the kind of record that
        carries no row change (tombstone, logical decoding message, heartbeat,
        transaction metadata).

    Raises:
        DecodeError: The record is malformed; the message is a human-readable reason.
    """
    if raw.value is None:
        return _TOMBSTONE
    document = _load_json(raw.value, "value")
    if document is None:
        return _TOMBSTONE
    if not isinstance(document, dict):
        raise DecodeError(f"value is a JSON {_json_kind(document)}, not an object")

    schema: Mapping[str, Any] | None = None
    if "payload" in document and "op" not in document:
        payload_doc = document["payload"]
        schema = _optional_mapping(document.get("schema"), "schema")
        if payload_doc is None:
            return _TOMBSTONE
        if not isinstance(payload_doc, dict):
            raise DecodeError(f"payload is a JSON {_json_kind(payload_doc)}, not an object")
    else:
        payload_doc = document

    skipped = _not_a_row_change(payload_doc, schema)
    if skipped is not None:
        return skipped

    payload = _validate_payload(payload_doc)
    source = payload.source
    op = payload.op

    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    if op != "t":
        if op in ("c", "r", "u") and payload.after is None:
            raise DecodeError(f"op {op!r} without an 'after' row image")
        try:
            row_converter = _row_converter(schema)
        except RecursionError:
            raise DecodeError("schema is nested too deeply") from None
        before = _convert_row(payload.before, row_converter, "before")
        after = _convert_row(payload.after, row_converter, "after")

    table = source.table or raw.topic.rsplit(".", 1)[-1]
    if not table:
        raise DecodeError("no table: source.table is missing and the topic name is empty")

    ts_ms = source.ts_ms if source.ts_ms is not None else payload.ts_ms
    if ts_ms is None:
        raise DecodeError("no commit time: neither source.ts_ms nor ts_ms is set")

    if op == "t":
        # A truncate concerns the whole table: there is no row and therefore no key.
        key: dict[str, Any] = {}
    else:
        decoded_key = decode_key(raw.key)
        if decoded_key is None:
            decoded_key = _key_from_row(after if after is not None else before)
        key = decoded_key
        if op == "d" and before is None and not key:
            raise DecodeError("op 'd' without a 'before' row image or a key")

    return ChangeEvent(
        table=table,
        op=op,
        key=key,
        before=before,
        after=after,
        committed_at=_from_epoch_ms(ts_ms, "source.ts_ms"),
        version=source.lsn,
        position=raw.position,
        txid=source.tx_id,
        snapshot=_is_snapshot(source.snapshot),
    )


def decode_key(raw_key: bytes | None) -> dict[str, Any] | None:
    """Decode a Debezium record key (schemas-enabled or not) into a column dict.

    Args:
        raw_key: The Kafka key bytes, or ``None``.

    Returns:
        The key columns, or ``None`` when the record has no key.

    Raises:
        DecodeError: The key is not JSON or not an object.
    """
    if raw_key is None:
        return None
    document = _load_json(raw_key, "key")
    if document is None:
        return None
    if not isinstance(document, dict):
        raise DecodeError(f"key is a JSON {_json_kind(document)}, not an object")
    schema: Mapping[str, Any] | None = None
    if set(document) == {"schema", "payload"}:
        schema = _optional_mapping(document["schema"], "key schema")
        document = document["payload"]
        if document is None:
            return None
        if not isinstance(document, dict):
            raise DecodeError(f"key payload is a JSON {_json_kind(document)}, not an object")
    try:
        converter = _converter(schema) if schema is not None else None
    except RecursionError:
        raise DecodeError("key schema is nested too deeply") from None
    return _convert_row(document, converter, "key")


DEBEZIUM_VERSION = "3.6.1.Final"
"""``source.version`` of the envelopes the project writes itself (the embedded reader and
:func:`encode_envelope`): the Debezium release the tests and the stack run
(``infra/jvm/pom.xml``), whose PostgreSQL connector format they follow."""


def source_block(
    *,
    topic_prefix: str,
    table: str,
    lsn: int,
    ts_ms: int,
    snapshot: bool | str = "false",
    tx_id: int | None = None,
    db: str | None = "helpdesk",
    schema: str = "public",
    sequence: str | None = None,
) -> dict[str, Any]:
    """The ``source`` block of a Debezium PostgreSQL change event.

    Example:
        >>> block = source_block(topic_prefix="triage", table="tickets", lsn=42, ts_ms=0)
        >>> block["connector"], block["version"] == DEBEZIUM_VERSION, block["sequence"]
        ('postgresql', True, '[null,"42"]')
    """
    return {
        "version": DEBEZIUM_VERSION,
        "connector": "postgresql",
        "name": topic_prefix,
        "ts_ms": ts_ms,
        "snapshot": snapshot,
        "db": db,
        "sequence": sequence if sequence is not None else f'[null,"{lsn}"]',
        "schema": schema,
        "table": table,
        "txId": tx_id,
        "lsn": lsn,
        "xmin": None,
    }


def encode_envelope(
    *,
    table: str,
    op: str,
    lsn: int,
    ts_ms: int,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    tx_id: int | None = None,
    snapshot: bool | str = "false",
    schemas: bool = False,
    topic_prefix: str = "triage",
) -> bytes:
    """Serialise a change as Debezium's JSON converter would (the inverse of decoding).

    Row values are encoded by their Python type: ``datetime`` as ``MicroTimestamp`` (epoch
    microseconds, UTC), ``date`` as ``Date``, ``Decimal`` as Kafka Connect ``Decimal``
    (base64 unscaled bytes), ``dict`` as ``io.debezium.data.Json`` text, ``list`` as an
    array (element type from its first element), ``bytes`` as base64. With
    ``schemas=True`` the schema describing those encodings is included, so
    :func:`decode_change_event` restores the original values; without it the encoded values
    are delivered as they are.

    Args:
        table: Table name (``source.table``).
        op: Operation code (``c``, ``u``, ``d``, ``r``, ``t``).
        lsn: The change's LSN (``source.lsn``).
        ts_ms: Commit time in epoch milliseconds (``source.ts_ms``).
        before: Row image before the change.
        after: Row image after the change.
        tx_id: Transaction id (``source.txId``).
        snapshot: Value of ``source.snapshot``.
        schemas: Whether to wrap the payload in a schemas-enabled envelope.
        topic_prefix: Debezium ``topic.prefix``, used in schema names.

    Returns:
        The UTF-8 JSON bytes of the record value.
    """
    payload = {
        "before": _encode_row(before),
        "after": _encode_row(after),
        "source": source_block(
            topic_prefix=topic_prefix,
            table=table,
            lsn=lsn,
            ts_ms=ts_ms,
            snapshot=snapshot,
            tx_id=tx_id,
        ),
        "op": op,
        "ts_ms": ts_ms,
        "transaction": None,
    }
    if not schemas:
        return json.dumps(payload).encode()
    sample = after if after is not None else before
    row_schema = _infer_struct_schema(sample or {}, f"{topic_prefix}.public.{table}.Value")
    envelope_schema = {
        "type": "struct",
        "name": f"{topic_prefix}.public.{table}.Envelope",
        "optional": False,
        "fields": [
            {**row_schema, "field": "before"},
            {**row_schema, "field": "after"},
            {
                "type": "struct",
                "name": "io.debezium.connector.postgresql.Source",
                "optional": False,
                "field": "source",
                "fields": [
                    {"type": "int64", "optional": False, "field": "ts_ms"},
                    {"type": "string", "optional": True, "field": "table"},
                    {"type": "int64", "optional": True, "field": "txId"},
                    {"type": "int64", "optional": True, "field": "lsn"},
                ],
            },
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
        ],
    }
    return json.dumps({"schema": envelope_schema, "payload": payload}).encode()


def encode_key(
    key: Mapping[str, Any], *, table: str, schemas: bool = False, topic_prefix: str = "triage"
) -> bytes:
    """Serialise a record key as Debezium's JSON converter would.

    Args:
        key: The primary-key columns.
        table: Table name, used in the schema name.
        schemas: Whether to wrap the key in a schemas-enabled envelope.
        topic_prefix: Debezium ``topic.prefix``, used in the schema name.

    Returns:
        The UTF-8 JSON bytes of the record key.
    """
    payload = _encode_row(key)
    if not schemas:
        return json.dumps(payload).encode()
    schema = _infer_struct_schema(key, f"{topic_prefix}.public.{table}.Key")
    schema["optional"] = False
    return json.dumps({"schema": schema, "payload": payload}).encode()


# ------------------------------------------------------------------------ envelope checks


_HEARTBEAT_SCHEMA = "io.debezium.connector.common.Heartbeat"
_TRANSACTION_STATUSES = frozenset({"BEGIN", "END"})


def _not_a_row_change(
    payload: Mapping[str, Any], schema: Mapping[str, Any] | None
) -> SkippedRecord | None:
    """Recognise the records Debezium writes besides row changes, or return ``None``.

    Raises:
        DecodeError: A logical decoding message without its ``message`` block.
    """
    if payload.get("op") == "m":
        message = payload.get("message")
        if not isinstance(message, Mapping) or not isinstance(message.get("prefix"), str):
            raise DecodeError("op 'm' without a 'message' block with a 'prefix'")
        return SkippedRecord("message", message["prefix"])
    if "op" in payload:
        return None
    schema_name = schema.get("name") if schema is not None else None
    if schema_name == _HEARTBEAT_SCHEMA or (
        set(payload) == {"ts_ms"}
        and isinstance(payload["ts_ms"], int)
        and not isinstance(payload["ts_ms"], bool)
    ):
        return SkippedRecord("heartbeat")
    status = payload.get("status")
    if status in _TRANSACTION_STATUSES and "id" in payload:
        return SkippedRecord("transaction", str(status))
    return None


def _load_json(data: bytes, what: str) -> Any:
    if not data:
        raise DecodeError(f"{what} is empty (a tombstone has no value at all)")
    try:
        return json.loads(data)
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise DecodeError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        raise DecodeError(f"{what} is not acceptable JSON: {exc}") from exc
    except RecursionError as exc:
        raise DecodeError(f"{what} is JSON nested too deeply") from exc


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _optional_mapping(value: Any, what: str) -> Mapping[str, Any] | None:
    if value is None or isinstance(value, Mapping):
        return value
    raise DecodeError(f"{what} is a JSON {_json_kind(value)}, not an object")


def _validate_payload(document: Mapping[str, Any]) -> _Payload:
    try:
        return _Payload.model_validate(document)
    except ValidationError as exc:
        raise DecodeError(_explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    """One line per problem, naming the envelope field, e.g. ``missing source.lsn``."""
    reasons = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "missing":
            hint = " (Debezium PostgreSQL always sets it)" if where == "source.lsn" else ""
            reasons.append(f"missing {where}{hint}")
        elif where == "op" and error["type"] == "literal_error":
            reasons.append(f"unknown op {error['input']!r} (expected one of c, u, d, r, t, m)")
        else:
            shown = repr(error["input"])
            if len(shown) > 60:
                shown = shown[:57] + "..."
            reasons.append(f"{where}: {error['msg'].lower()} (got {shown})")
    return "; ".join(reasons)


def _is_snapshot(value: bool | str | None) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    marker = value.lower()
    if marker == "false":
        return False
    if marker in _SNAPSHOT_MARKERS:
        return True
    raise DecodeError(f"source.snapshot: unknown value {value!r}")


def _key_from_row(row: Mapping[str, Any] | None) -> dict[str, Any]:
    # Every helpdesk table has an ``id`` primary key; records without a Kafka key (the
    # embedded path, or a connector without key serialisation) are keyed by it.
    if row is not None and "id" in row:
        return {"id": row["id"]}
    return {}


def _convert_row(
    row: dict[str, Any] | None, converter: Converter | None, where: str
) -> dict[str, Any] | None:
    if row is None:
        return None
    if converter is not None:
        try:
            row = converter(row)
        except _FieldError as exc:
            raise DecodeError(f"{where}.{exc.path}: {exc.reason}") from None
        except RecursionError:
            raise DecodeError(f"{where} is nested too deeply") from None
        if not isinstance(row, dict):
            raise DecodeError(f"{where} is not an object")
    return _normalise_unavailable(row)


def _normalise_unavailable(row: dict[str, Any]) -> dict[str, Any]:
    """Give every unavailable TOASTed column the same sentinel whatever its type.

    Debezium writes the placeholder as a one-element list for array columns and, without
    a schema to say so, as the placeholder's base64 text for binary columns.
    """
    replaced: dict[str, Any] | None = None
    for column, value in row.items():
        if (isinstance(value, list) and len(value) == 1 and value[0] == UNAVAILABLE) or (
            value == _UNAVAILABLE_BASE64
        ):
            if replaced is None:
                replaced = dict(row)
            replaced[column] = UNAVAILABLE
    return row if replaced is None else replaced


def _row_converter(envelope_schema: Mapping[str, Any] | None) -> Converter | None:
    """The converter for the ``after`` (or ``before``) struct of an envelope schema."""
    if envelope_schema is None:
        return None
    fields = envelope_schema.get("fields")
    if not isinstance(fields, list):
        raise DecodeError("schema has no 'fields' list")
    by_name = {
        f["field"]: f for f in fields if isinstance(f, Mapping) and isinstance(f.get("field"), str)
    }
    row_schema = by_name.get("after") or by_name.get("before")
    if row_schema is None:
        return None
    return _converter(row_schema)


# ------------------------------------------------------------------- schema conversions


class _FieldError(Exception):
    """A column value does not match its schema; ``path`` grows as it propagates up."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _from_epoch_ms(value: int, where: str) -> datetime:
    try:
        return _EPOCH + timedelta(milliseconds=value)
    except OverflowError as exc:
        raise DecodeError(f"{where}: {value} is out of range for a timestamp") from exc


def _timestamp(unit_per_second: int) -> Converter:
    def convert(value: Any) -> datetime:
        _require_int(value)
        # Integer arithmetic keeps microsecond precision; nanoseconds are truncated because
        # datetime cannot hold them.
        micros = value * 1_000_000 // unit_per_second
        return _EPOCH + timedelta(microseconds=micros)

    return convert


def _time_of_day(unit_per_second: int) -> Converter:
    def convert(value: Any) -> time:
        _require_int(value)
        micros = value * 1_000_000 // unit_per_second
        # PostgreSQL allows 24:00:00, which datetime.time cannot represent; wrap it to 0.
        micros %= 86_400_000_000
        return (datetime.min + timedelta(microseconds=micros)).time()

    return convert


def _zoned_timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO-8601 string, got {value!r}")
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _zoned_time(value: Any) -> time:
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO-8601 time string, got {value!r}")
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    return time.fromisoformat(text)


def _days(value: Any) -> date:
    _require_int(value)
    return _EPOCH_DATE + timedelta(days=value)


def _require_int(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"expected base64 text, got {value!r}")
    return base64.b64decode(value, validate=True)


def _unscaled_decimal(raw: bytes, scale: int) -> Decimal:
    unscaled = int.from_bytes(raw, "big", signed=True)
    sign, digits, _ = Decimal(unscaled).as_tuple()
    # Built from the digit tuple rather than with scaleb() so that no context precision
    # (28 digits by default) can round a wide NUMERIC.
    return Decimal((sign, digits, -scale))


def _connect_decimal(schema: Mapping[str, Any]) -> Converter:
    parameters = schema.get("parameters") or {}
    try:
        scale = int(parameters.get("scale", 0))
    except (AttributeError, TypeError, ValueError) as exc:
        raise DecodeError(f"Decimal schema has an invalid scale: {parameters!r}") from exc

    def convert(value: Any) -> Any:
        if isinstance(value, str):
            raw = _b64(value)
            if raw == _UNAVAILABLE_BYTES:
                return UNAVAILABLE
            return _unscaled_decimal(raw, scale)
        # JsonConverter's ``decimal.format=NUMERIC`` writes plain JSON numbers instead.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return Decimal(str(value))
        raise ValueError(f"expected base64 decimal bytes, got {value!r}")

    return convert


def _variable_scale_decimal(value: Any) -> Any:
    if not isinstance(value, Mapping) or "scale" not in value or "value" not in value:
        raise ValueError(f"expected a struct with 'scale' and 'value', got {value!r}")
    scale = value["scale"]
    _require_int(scale)
    raw = _b64(value["value"])
    if raw == _UNAVAILABLE_BYTES:
        return UNAVAILABLE
    return _unscaled_decimal(raw, scale)


def _json_text(value: Any) -> Any:
    if not isinstance(value, str):
        # Already structured (a JSON converter that embeds it), nothing to parse.
        return value
    return json.loads(value)


def _bytes(value: Any) -> Any:
    raw = _b64(value)
    return UNAVAILABLE if raw == _UNAVAILABLE_BYTES else raw


_NAMED: dict[str, Converter] = {
    "io.debezium.time.Timestamp": _timestamp(1_000),
    "io.debezium.time.MicroTimestamp": _timestamp(1_000_000),
    "io.debezium.time.NanoTimestamp": _timestamp(1_000_000_000),
    "org.apache.kafka.connect.data.Timestamp": _timestamp(1_000),
    "io.debezium.time.ZonedTimestamp": _zoned_timestamp,
    "io.debezium.time.Date": _days,
    "org.apache.kafka.connect.data.Date": _days,
    "io.debezium.time.Time": _time_of_day(1_000),
    "io.debezium.time.MicroTime": _time_of_day(1_000_000),
    "io.debezium.time.NanoTime": _time_of_day(1_000_000_000),
    "org.apache.kafka.connect.data.Time": _time_of_day(1_000),
    "io.debezium.time.ZonedTime": _zoned_time,
    "io.debezium.data.VariableScaleDecimal": _variable_scale_decimal,
    "io.debezium.data.Json": _json_text,
}


def _converter(schema: Mapping[str, Any]) -> Converter | None:
    """Build a converter for a Kafka Connect schema, or ``None`` when values need none."""
    if not isinstance(schema, Mapping):
        raise DecodeError(f"schema is a JSON {_json_kind(schema)}, not an object")
    name = schema.get("name")
    kind = schema.get("type")
    if not isinstance(name, str):
        name = None
    if name == "org.apache.kafka.connect.data.Decimal":
        return _guarded(_connect_decimal(schema))
    if name in _NAMED:
        return _guarded(_NAMED[name])
    if kind == "struct":
        return _struct_converter(schema)
    if kind == "array":
        # An unavailable TOASTed array ([placeholder]) passes through unchanged here and
        # is collapsed to the sentinel by _normalise_unavailable.
        items = schema.get("items")
        item_converter = _converter(items) if isinstance(items, Mapping) else None
        if item_converter is None:
            return None
        return _array_converter(item_converter)
    if kind == "map":
        values = schema.get("values")
        value_converter = _converter(values) if isinstance(values, Mapping) else None
        if value_converter is None:
            return None
        return _map_converter(value_converter)
    if kind == "bytes":
        return _guarded(_bytes)
    return None


def _guarded(convert: Converter) -> Converter:
    """Pass nulls and the TOAST placeholder through; report bad values as _FieldError."""

    def guarded(value: Any) -> Any:
        if value is None or value == UNAVAILABLE:
            return value
        try:
            return convert(value)
        except (
            ValueError,
            TypeError,
            OverflowError,
            RecursionError,
            binascii.Error,
            InvalidOperation,
        ) as exc:
            raise _FieldError("", str(exc) or type(exc).__name__) from None

    return guarded


def _struct_converter(schema: Mapping[str, Any]) -> Converter | None:
    fields = schema.get("fields")
    if not isinstance(fields, list):
        raise DecodeError(f"struct schema {schema.get('name')!r} has no 'fields' list")
    converters: dict[str, Converter] = {}
    for field in fields:
        if not isinstance(field, Mapping) or not isinstance(field.get("field"), str):
            raise DecodeError(f"struct schema {schema.get('name')!r} has an unnamed field")
        converter = _converter(field)
        if converter is not None:
            converters[field["field"]] = converter
    if not converters:
        return None

    def convert(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise _FieldError("", f"expected an object, got {_json_kind(value)}")
        result = dict(value)
        for column, column_converter in converters.items():
            if column in result:
                try:
                    result[column] = column_converter(result[column])
                except _FieldError as exc:
                    path = f"{column}.{exc.path}" if exc.path else column
                    raise _FieldError(path, exc.reason) from None
        return result

    return convert


def _array_converter(item_converter: Converter) -> Converter:
    def convert(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list):
            raise _FieldError("", f"expected an array, got {_json_kind(value)}")
        result = []
        for index, item in enumerate(value):
            try:
                result.append(item_converter(item))
            except _FieldError as exc:
                path = f"{index}.{exc.path}" if exc.path else str(index)
                raise _FieldError(path, exc.reason) from None
        return result

    return convert


def _map_converter(value_converter: Converter) -> Converter:
    def convert(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise _FieldError("", f"expected an object, got {_json_kind(value)}")
        result = {}
        for map_key, item in value.items():
            try:
                result[map_key] = value_converter(item)
            except _FieldError as exc:
                path = f"{map_key}.{exc.path}" if exc.path else str(map_key)
                raise _FieldError(path, exc.reason) from None
        return result

    return convert


# ------------------------------------------------------------------------------ encoding


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        delta = aware - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, date):
        return (value - _EPOCH_DATE).days
    if isinstance(value, Decimal):
        sign, digits, exponent = value.as_tuple()
        if not isinstance(exponent, int):
            raise ValueError(f"cannot encode {value!r} as a Connect Decimal")
        unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        length = max(1, (unscaled.bit_length() + 8) // 8)
        raw = unscaled.to_bytes(length, "big", signed=True)
        return base64.b64encode(raw).decode()
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, list):
        return [_encode_value(item) for item in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _encode_row(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {column: _encode_value(value) for column, value in row.items()}


def _infer_field_schema(column: str, value: Any) -> dict[str, Any]:
    field: dict[str, Any] = {"field": column, "optional": True}
    if isinstance(value, bool):
        field["type"] = "boolean"
    elif isinstance(value, int):
        field["type"] = "int64"
    elif isinstance(value, float):
        field["type"] = "double"
    elif isinstance(value, datetime):
        field.update(type="int64", name="io.debezium.time.MicroTimestamp", version=1)
    elif isinstance(value, date):
        field.update(type="int32", name="io.debezium.time.Date", version=1)
    elif isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        scale = -exponent if isinstance(exponent, int) else 0
        field.update(
            type="bytes",
            name="org.apache.kafka.connect.data.Decimal",
            version=1,
            parameters={"scale": str(scale)},
        )
    elif isinstance(value, dict):
        field.update(type="string", name="io.debezium.data.Json", version=1)
    elif isinstance(value, list):
        # PostgreSQL arrays; the element type is taken from the first element.
        items = _infer_field_schema("", value[0] if value else "")
        del items["field"]
        field.update(type="array", items=items)
    elif isinstance(value, bytes):
        field["type"] = "bytes"
    else:
        field["type"] = "string"
    return field


def _infer_struct_schema(row: Mapping[str, Any], name: str) -> dict[str, Any]:
    return {
        "type": "struct",
        "name": name,
        "optional": True,
        "fields": [_infer_field_schema(column, value) for column, value in row.items()],
    }
