"""Tests for the Debezium envelope decoder: examples per case plus property tests."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Context, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.debezium import (
    SKIPPED_RECORDS,
    DecodeError,
    SkippedRecord,
    decode_change_event,
    decode_key,
    decode_record,
    encode_envelope,
    encode_key,
)
from models.events import RawChange, SourcePosition
from models.helpdesk import UNAVAILABLE

TOPIC = "triage.public.tickets"
TS_MS = 1_714_564_800_123  # 2024-05-01T12:00:00.123Z
COMMITTED = datetime(2024, 5, 1, 12, 0, 0, 123_000, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _unscaled_b64(unscaled: int) -> str:
    length = max(1, (unscaled.bit_length() + 8) // 8)
    return base64.b64encode(unscaled.to_bytes(length, "big", signed=True)).decode()


def _source(**overrides: Any) -> dict[str, Any]:
    source: dict[str, Any] = {
        "version": "2.7.3.Final",
        "connector": "postgresql",
        "name": "triage",
        "ts_ms": TS_MS,
        "snapshot": "false",
        "db": "helpdesk",
        "sequence": '["24023128","24023128"]',
        "schema": "public",
        "table": "tickets",
        "txId": 771,
        "lsn": 24023128,
        "xmin": None,
    }
    source.update(overrides)
    return source


def _payload(op: str = "c", **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "before": None,
        "after": {"id": 1, "subject": "VPN down", "status": "new"},
        "source": _source(),
        "op": op,
        "ts_ms": TS_MS + 50,
        "transaction": None,
    }
    payload.update(overrides)
    return payload


def _raw(
    value: Any,
    key: Any = None,
    *,
    topic: str = TOPIC,
    position: SourcePosition | None = None,
) -> RawChange:
    def to_bytes(doc: Any) -> bytes | None:
        if doc is None or isinstance(doc, bytes):
            return doc
        return json.dumps(doc).encode()

    return RawChange(
        topic=topic,
        key=to_bytes(key),
        value=to_bytes(value),
        position=position or SourcePosition(topic=topic, partition=0, offset=3),
    )


def _decode(value: Any, key: Any = None, **kwargs: Any) -> Any:
    event = decode_change_event(_raw(value, key, **kwargs))
    assert event is not None
    return event


# A schemas-enabled value as Debezium's JsonConverter writes it for a table that uses
# every semantic type the decoder converts.
ROW_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "optional": True,
    "name": "triage.public.tickets.Value",
    "fields": [
        {"type": "int64", "optional": False, "field": "id"},
        {"type": "string", "optional": True, "field": "subject"},
        {
            "type": "string",
            "optional": False,
            "name": "io.debezium.time.ZonedTimestamp",
            "version": 1,
            "field": "created_at",
        },
        {
            "type": "int64",
            "optional": True,
            "name": "io.debezium.time.MicroTimestamp",
            "version": 1,
            "field": "local_at",
        },
        {
            "type": "int64",
            "optional": True,
            "name": "io.debezium.time.Timestamp",
            "version": 1,
            "field": "milli_at",
        },
        {
            "type": "int64",
            "optional": True,
            "name": "io.debezium.time.NanoTimestamp",
            "version": 1,
            "field": "nano_at",
        },
        {
            "type": "int64",
            "optional": True,
            "name": "org.apache.kafka.connect.data.Timestamp",
            "version": 1,
            "field": "connect_at",
        },
        {
            "type": "int32",
            "optional": True,
            "name": "io.debezium.time.Date",
            "version": 1,
            "field": "due_on",
        },
        {
            "type": "int64",
            "optional": True,
            "name": "io.debezium.time.MicroTime",
            "version": 1,
            "field": "shift_start",
        },
        {
            "type": "bytes",
            "optional": True,
            "name": "org.apache.kafka.connect.data.Decimal",
            "version": 1,
            "parameters": {"scale": "2", "connect.decimal.precision": "10"},
            "field": "price",
        },
        {
            "type": "struct",
            "optional": True,
            "name": "io.debezium.data.VariableScaleDecimal",
            "version": 1,
            "fields": [
                {"type": "int32", "optional": False, "field": "scale"},
                {"type": "bytes", "optional": False, "field": "value"},
            ],
            "field": "score",
        },
        {"type": "string", "optional": True, "field": "ratio"},
        {
            "type": "string",
            "optional": True,
            "name": "io.debezium.data.Json",
            "version": 1,
            "field": "meta",
        },
        {
            "type": "array",
            "optional": True,
            "items": {"type": "string", "optional": True},
            "field": "tags",
        },
        {"type": "bytes", "optional": True, "field": "blob"},
    ],
}


def _envelope_schema(row_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "struct",
        "optional": False,
        "name": "triage.public.tickets.Envelope",
        "version": 1,
        "fields": [
            {**row_schema, "field": "before"},
            {**row_schema, "field": "after"},
            {
                "type": "struct",
                "optional": False,
                "name": "io.debezium.connector.postgresql.Source",
                "field": "source",
                "fields": [
                    {"type": "string", "optional": False, "field": "version"},
                    {"type": "int64", "optional": False, "field": "ts_ms"},
                    {
                        "type": "string",
                        "optional": True,
                        "name": "io.debezium.data.Enum",
                        "version": 1,
                        "parameters": {"allowed": "true,last,false,incremental"},
                        "default": "false",
                        "field": "snapshot",
                    },
                    {"type": "string", "optional": False, "field": "table"},
                    {"type": "int64", "optional": True, "field": "txId"},
                    {"type": "int64", "optional": True, "field": "lsn"},
                ],
            },
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
        ],
    }


FULL_ROW = {
    "id": 9,
    "subject": "Invoice wrong",
    "created_at": "2024-05-01T14:00:00.5+02:00",
    "local_at": 1_714_564_800_000_001,
    "milli_at": 1_714_564_800_123,
    "nano_at": 1_714_564_800_000_001_999,
    "connect_at": 1_714_564_800_123,
    "due_on": 19_844,
    "shift_start": 8 * 3600 * 1_000_000 + 30 * 60 * 1_000_000,
    "price": _unscaled_b64(-12345),
    "score": {"scale": 3, "value": _unscaled_b64(98765)},
    "ratio": "0.3333333333",
    "meta": '{"channel": "email", "vip": true}',
    "tags": ["billing", "urgent"],
    "blob": base64.b64encode(b"\x00\xff").decode(),
}


# ------------------------------------------------------------------------ schemas enabled


def test_schemas_enabled_envelope_converts_every_semantic_type() -> None:
    value = {"schema": _envelope_schema(ROW_SCHEMA), "payload": _payload("c", after=FULL_ROW)}
    key = {
        "schema": {
            "type": "struct",
            "name": "triage.public.tickets.Key",
            "optional": False,
            "fields": [{"type": "int64", "optional": False, "field": "id"}],
        },
        "payload": {"id": 9},
    }
    event = _decode(value, key)
    after = event.after
    assert event.key == {"id": 9}
    assert after["id"] == 9
    assert after["created_at"] == datetime(2024, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC)
    assert after["created_at"].utcoffset() == timedelta(0)
    assert after["local_at"] == datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC)
    assert after["milli_at"] == COMMITTED
    assert after["nano_at"] == datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC)
    assert after["connect_at"] == COMMITTED
    assert after["due_on"] == date(2024, 5, 1)
    assert after["shift_start"] == time(8, 30)
    assert after["price"] == Decimal("-123.45")
    assert after["price"].as_tuple().exponent == -2
    assert after["score"] == Decimal("98.765")
    assert after["ratio"] == "0.3333333333"  # decimal.handling.mode=string stays a string
    assert after["meta"] == {"channel": "email", "vip": True}
    assert after["tags"] == ["billing", "urgent"]
    assert after["blob"] == b"\x00\xff"


def test_schemas_enabled_update_converts_before_too() -> None:
    before = {**FULL_ROW, "price": _unscaled_b64(100)}
    value = {
        "schema": _envelope_schema(ROW_SCHEMA),
        "payload": _payload("u", before=before, after=FULL_ROW),
    }
    event = _decode(value)
    assert event.before["price"] == Decimal("1.00")
    assert event.after["price"] == Decimal("-123.45")


def test_schemas_enabled_null_payload_is_a_tombstone() -> None:
    assert decode_change_event(_raw({"schema": None, "payload": None})) is None


def test_wide_decimal_keeps_every_digit() -> None:
    unscaled = -(10**39) + 7
    schema = {
        "type": "struct",
        "name": "v",
        "fields": [
            {
                "type": "bytes",
                "name": "org.apache.kafka.connect.data.Decimal",
                "parameters": {"scale": "12"},
                "field": "amount",
            }
        ],
    }
    value = {
        "schema": _envelope_schema(schema),
        "payload": _payload(after={"amount": _unscaled_b64(unscaled)}),
    }
    assert _decode(value).after["amount"] == Decimal("-999999999999999999999999999.999999999993")


def test_numeric_decimal_format_is_accepted() -> None:
    schema = {
        "type": "struct",
        "name": "v",
        "fields": [
            {
                "type": "bytes",
                "name": "org.apache.kafka.connect.data.Decimal",
                "parameters": {"scale": "2"},
                "field": "amount",
            }
        ],
    }
    value = {"schema": _envelope_schema(schema), "payload": _payload(after={"amount": 12.5})}
    assert _decode(value).after["amount"] == Decimal("12.5")


def test_time_of_day_variants() -> None:
    fields = [
        {"type": "int32", "name": "io.debezium.time.Time", "field": "t_ms"},
        {"type": "int64", "name": "io.debezium.time.NanoTime", "field": "t_ns"},
        {"type": "int32", "name": "org.apache.kafka.connect.data.Time", "field": "t_connect"},
        {"type": "string", "name": "io.debezium.time.ZonedTime", "field": "t_zoned"},
        {"type": "int32", "name": "org.apache.kafka.connect.data.Date", "field": "d_connect"},
    ]
    row = {
        "t_ms": 3_600_000 + 1,
        "t_ns": 86_400_000_000_000,  # PostgreSQL's 24:00:00
        "t_connect": 60_000,
        "t_zoned": "10:15:30.25Z",
        "d_connect": -1,
    }
    schema = {"type": "struct", "name": "v", "fields": fields}
    after = _decode({"schema": _envelope_schema(schema), "payload": _payload(after=row)}).after
    assert after["t_ms"] == time(1, 0, 0, 1000)
    assert after["t_ns"] == time(0, 0)
    assert after["t_connect"] == time(0, 1)
    assert after["t_zoned"] == time(10, 15, 30, 250_000, tzinfo=UTC)
    assert after["d_connect"] == date(1969, 12, 31)


def test_json_column_is_left_as_text_without_a_schema() -> None:
    after = {"id": 1, "meta": '{"a": 1}', "created_at": "2024-05-01T12:00:00Z"}
    event = _decode(_payload(after=after))
    assert event.after == after


def test_unknown_semantic_names_are_left_alone() -> None:
    schema = {
        "type": "struct",
        "name": "v",
        "fields": [
            {"type": "string", "name": "io.debezium.data.Uuid", "field": "ref"},
            {"type": "int64", "name": "io.debezium.time.MicroDuration", "field": "wait"},
        ],
    }
    row = {"ref": "0b0e2f4c-7f5e-4a6b-9a3e-1c2d3e4f5a6b", "wait": 90_000_000}
    event = _decode({"schema": _envelope_schema(schema), "payload": _payload(after=row)})
    assert event.after == row


# ------------------------------------------------------------------------------ schemaless


def test_schemaless_insert() -> None:
    position = SourcePosition(topic=TOPIC, partition=2, offset=17)
    event = _decode(_payload("c"), {"id": 1}, position=position)
    assert event.table == "tickets"
    assert event.op == "c"
    assert event.key == {"id": 1}
    assert event.before is None
    assert event.after == {"id": 1, "subject": "VPN down", "status": "new"}
    assert event.committed_at == COMMITTED
    assert event.version == 24023128
    assert event.txid == 771
    assert event.snapshot is False
    assert event.position == position
    assert event.row == event.after


def test_tombstone_is_none() -> None:
    assert decode_change_event(RawChange(topic=TOPIC, key=b'{"id": 1}', value=None)) is None
    assert decode_change_event(_raw(b"null")) is None


@pytest.mark.parametrize("op", ["c", "r", "u"])
def test_ops_with_an_after_image(op: str) -> None:
    before = {"id": 1, "status": "new"} if op == "u" else None
    event = _decode(_payload(op, before=before))
    assert event.op == op
    assert event.before == before
    assert event.after is not None


def test_delete_keeps_before_and_derives_key() -> None:
    event = _decode(_payload("d", before={"id": 5, "status": "open"}, after=None))
    assert event.op == "d"
    assert event.after is None
    assert event.key == {"id": 5}
    assert event.row == {"id": 5, "status": "open"}


def test_delete_with_only_a_key() -> None:
    event = _decode(_payload("d", before=None, after=None), {"id": 5})
    assert event.key == {"id": 5}
    assert event.row is None


def test_truncate_has_no_images_and_an_empty_key() -> None:
    payload = {"source": _source(), "op": "t", "ts_ms": TS_MS}
    event = _decode(payload)
    assert event.op == "t"
    assert event.key == {}
    assert event.before is None
    assert event.after is None


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("true", True),
        ("first", True),
        ("last", True),
        ("incremental", True),
        ("first_in_data_collection", True),
        ("last_in_data_collection", True),
        ("false", False),
        (True, True),
        (False, False),
        (None, False),
    ],
)
def test_snapshot_marker(marker: Any, expected: bool) -> None:
    event = _decode(_payload("r", source=_source(snapshot=marker)))
    assert event.snapshot is expected


def test_commit_time_falls_back_to_payload_ts_ms() -> None:
    source = _source()
    del source["ts_ms"]
    event = _decode(_payload(source=source))
    assert event.committed_at == COMMITTED + timedelta(milliseconds=50)


def test_table_falls_back_to_topic() -> None:
    source = _source()
    del source["table"]
    event = _decode(_payload(source=source), topic="triage.public.agents")
    assert event.table == "agents"


def test_missing_key_without_id_column_is_empty() -> None:
    assert _decode(_payload(after={"code": "x"})).key == {}


def test_missing_txid_is_none() -> None:
    assert _decode(_payload(source=_source(txId=None))).txid is None


# ----------------------------------------------------------------------------------- keys


def test_decode_key_forms() -> None:
    assert decode_key(None) is None
    assert decode_key(b'{"id": 3}') == {"id": 3}
    assert decode_key(b'{"schema": {"type": "struct", "fields": []}, "payload": {"id": 3}}') == {
        "id": 3
    }
    assert decode_key(b'{"schema": null, "payload": null}') is None
    with pytest.raises(DecodeError, match="key is a JSON number"):
        decode_key(b"3")


# ------------------------------------------------------------------------------ TOAST


def test_unavailable_values_keep_the_sentinel() -> None:
    after = {
        "id": 1,
        "meta": UNAVAILABLE,
        "price": base64.b64encode(UNAVAILABLE.encode()).decode(),
        "score": {"scale": 0, "value": base64.b64encode(UNAVAILABLE.encode()).decode()},
        "tags": [UNAVAILABLE],
        "blob": base64.b64encode(UNAVAILABLE.encode()).decode(),
        "created_at": "2024-05-01T12:00:00Z",
    }
    value = {"schema": _envelope_schema(ROW_SCHEMA), "payload": _payload("u", after=after)}
    converted = _decode(value).after
    for column in ("meta", "price", "score", "tags", "blob"):
        assert converted[column] == UNAVAILABLE, column


def test_unavailable_values_without_schema() -> None:
    after = {
        "id": 1,
        "body": UNAVAILABLE,
        "tags": [UNAVAILABLE],
        "blob": base64.b64encode(UNAVAILABLE.encode()).decode(),
    }
    converted = _decode(_payload("u", after=after)).after
    assert converted == {"id": 1, "body": UNAVAILABLE, "tags": UNAVAILABLE, "blob": UNAVAILABLE}


# --------------------------------------------------------------------------------- errors


def _without(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != key}


def _schema_value(field: dict[str, Any], value: Any) -> dict[str, Any]:
    schema = {"type": "struct", "name": "v", "fields": [field]}
    return {"schema": _envelope_schema(schema), "payload": _payload(after={field["field"]: value})}


DECIMAL_FIELD = {
    "type": "bytes",
    "name": "org.apache.kafka.connect.data.Decimal",
    "parameters": {"scale": "2"},
    "field": "price",
}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "value is not valid JSON"),
        (b"\xff\xfe\x00", "value is not"),
        (b"", "value is empty"),
        (b"[1, 2]", "value is a JSON array"),
        (_without(_payload(), "op"), "missing op"),
        (_payload("x"), "unknown op 'x'"),
        (_payload("m"), "op 'm' without a 'message' block"),
        (_payload("m", message={"content": "eA=="}), "op 'm' without a 'message' block"),
        (_without(_payload(), "source"), "missing source"),
        (_payload(source=_without(_source(), "lsn")), "missing source.lsn"),
        (_payload(source=_source(lsn="abc")), "source.lsn"),
        (_payload(source=_source(lsn=True)), "source.lsn"),
        (_payload("c", after=None), "op 'c' without an 'after' row image"),
        (_payload("r", after=None), "op 'r' without an 'after' row image"),
        (_payload("u", after=None), "op 'u' without an 'after' row image"),
        (_payload("d", before=None, after=None), "op 'd' without a 'before' row image or a key"),
        (_payload(after=[1, 2]), "after: input should be a valid dictionary"),
        (_payload(source=_source(snapshot="maybe")), "source.snapshot: unknown value 'maybe'"),
        (
            _payload(source=_without(_without(_source(), "ts_ms"), "ts_ms"), ts_ms=None),
            "no commit time",
        ),
        ({"schema": None, "payload": [1]}, "payload is a JSON array"),
        ({"schema": 5, "payload": _payload()}, "schema is a JSON number"),
        (_schema_value(DECIMAL_FIELD, "***"), "after.price: "),
        (_schema_value(DECIMAL_FIELD, True), "after.price: expected base64"),
        (
            _schema_value({"type": "string", "name": "io.debezium.data.Json", "field": "m"}, "{"),
            "after.m: ",
        ),
        (
            _schema_value(
                {"type": "string", "name": "io.debezium.time.ZonedTimestamp", "field": "at"},
                "yesterday",
            ),
            "after.at: ",
        ),
        (
            _schema_value(
                {"type": "int64", "name": "io.debezium.time.MicroTimestamp", "field": "at"},
                "12",
            ),
            "after.at: expected an integer",
        ),
        (
            _schema_value(
                {"type": "int64", "name": "io.debezium.time.Timestamp", "field": "at"},
                10**30,
            ),
            "after.at: ",
        ),
        (
            _schema_value(
                {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal", "field": "s"},
                {"scale": 1},
            ),
            "after.s: expected a struct",
        ),
    ],
)
def test_malformed_records_raise_decode_error_with_a_reason(value: Any, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_change_event(_raw(value, {"id": 1} if "'d'" not in reason else None))
    assert reason in str(info.value)


# A logical decoding message as Debezium's PostgreSQL connector documents it: no row images,
# the prefix and base64 content in a ``message`` block, on the ``<prefix>.message`` topic.
MESSAGE_PAYLOAD: dict[str, Any] = {
    "op": "m",
    "ts_ms": TS_MS,
    "source": _source(table="", schema="", txId=None, snapshot="false"),
    "message": {"prefix": "triage-heartbeat", "content": "MjAyNi0xMi0wNg=="},
}


@pytest.mark.parametrize(
    ("value", "topic", "expected"),
    [
        (None, TOPIC, SkippedRecord("tombstone")),
        ({"schema": {"type": "struct"}, "payload": None}, TOPIC, SkippedRecord("tombstone")),
        (MESSAGE_PAYLOAD, "triage.message", SkippedRecord("message", "triage-heartbeat")),
        (
            {
                "schema": {
                    "type": "struct",
                    "name": "io.debezium.connector.postgresql.MessageValue",
                },
                "payload": MESSAGE_PAYLOAD,
            },
            "triage.message",
            SkippedRecord("message", "triage-heartbeat"),
        ),
        ({"ts_ms": TS_MS}, "__debezium-heartbeat.triage", SkippedRecord("heartbeat")),
        (
            {
                "schema": {"type": "struct", "name": "io.debezium.connector.common.Heartbeat"},
                "payload": {"ts_ms": TS_MS},
            },
            "__debezium-heartbeat.triage",
            SkippedRecord("heartbeat"),
        ),
        (
            {"status": "BEGIN", "id": "571:53195829", "ts_ms": TS_MS, "event_count": None},
            "triage.transaction",
            SkippedRecord("transaction", "BEGIN"),
        ),
    ],
)
def test_records_without_a_row_change_are_skipped_and_counted(
    value: Any, topic: str, expected: SkippedRecord
) -> None:
    raw = _raw(value, {"serverName": "triage"}, topic=topic)
    assert decode_record(raw) == expected
    before = SKIPPED_RECORDS[expected.kind]
    assert decode_change_event(raw) is None
    assert SKIPPED_RECORDS[expected.kind] == before + 1


def test_heartbeat_lookalikes_are_still_rejected() -> None:
    with pytest.raises(DecodeError):
        decode_change_event(_raw({"ts_ms": True}))
    with pytest.raises(DecodeError, match="missing op"):
        decode_change_event(_raw({"status": "COMMITTED", "id": "1"}))


def test_malformed_key_is_reported() -> None:
    with pytest.raises(DecodeError, match="key is not valid JSON"):
        decode_change_event(_raw(_payload(), b"{oops"))


def test_nested_field_path_is_named() -> None:
    field = {
        "type": "array",
        "items": {"type": "string", "name": "io.debezium.data.Json"},
        "field": "docs",
    }
    with pytest.raises(DecodeError, match=r"after\.docs\.1: "):
        decode_change_event(_raw(_schema_value(field, ["{}", "{"])))


# ----------------------------------------------------------------------- library encoder


def test_encode_envelope_round_trips_through_the_decoder() -> None:
    row = {
        "id": 4,
        "subject": "Ünïcode ✓",
        "created_at": datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "due_on": date(2024, 2, 29),
        "price": Decimal("-0.05"),
        "meta": {"nested": [1, 2]},
        "tags": ["a", "b"],
        "blob": b"\x01",
        "vip": True,
        "score": 0.25,
        "closed_at": None,
    }
    value = encode_envelope(
        table="tickets", op="u", lsn=99, ts_ms=TS_MS, before=row, after=row, schemas=True
    )
    key = encode_key({"id": 4}, table="tickets", schemas=True)
    event = decode_change_event(RawChange(topic=TOPIC, key=key, value=value))
    assert event is not None
    assert event.after == row
    assert event.before == row
    assert event.key == {"id": 4}
    assert event.version == 99


# ---------------------------------------------------------------------- property tests

_TIMESTAMPS = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@st.composite
def _timestamp_column(draw: st.DrawFn) -> tuple[dict[str, Any], Any, Any]:
    """A (field schema, encoded value, expected value) triple for a timestamp column."""
    moment = draw(_TIMESTAMPS)
    delta = moment - EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    encoding = draw(
        st.sampled_from(
            [
                "io.debezium.time.Timestamp",
                "io.debezium.time.MicroTimestamp",
                "io.debezium.time.NanoTimestamp",
                "io.debezium.time.ZonedTimestamp",
                "org.apache.kafka.connect.data.Timestamp",
            ]
        )
    )
    if encoding in ("io.debezium.time.Timestamp", "org.apache.kafka.connect.data.Timestamp"):
        millis = micros // 1000
        return (
            {"type": "int64", "name": encoding},
            millis,
            EPOCH + timedelta(milliseconds=millis),
        )
    if encoding == "io.debezium.time.MicroTimestamp":
        return {"type": "int64", "name": encoding}, micros, moment
    if encoding == "io.debezium.time.NanoTimestamp":
        extra_nanos = draw(st.integers(0, 999))
        return {"type": "int64", "name": encoding}, micros * 1000 + extra_nanos, moment
    offset = timedelta(minutes=draw(st.integers(-14 * 60, 14 * 60)))
    text = moment.astimezone(timezone(offset)).isoformat()
    if offset == timedelta(0) and draw(st.booleans()):
        text = text.replace("+00:00", "Z")
    return {"type": "string", "name": encoding}, text, moment


@st.composite
def _decimal_column(draw: st.DrawFn) -> tuple[dict[str, Any], Any, Any]:
    unscaled = draw(st.integers(-(10**40), 10**40))
    scale = draw(st.integers(0, 12))
    expected = Decimal(unscaled).scaleb(-scale, context=Context(prec=80))
    encoding = draw(st.sampled_from(["connect", "variable", "string"]))
    if encoding == "connect":
        schema = {
            "type": "bytes",
            "name": "org.apache.kafka.connect.data.Decimal",
            "parameters": {"scale": str(scale)},
        }
        return schema, _unscaled_b64(unscaled), expected
    if encoding == "variable":
        schema = {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"}
        return schema, {"scale": scale, "value": _unscaled_b64(unscaled)}, expected
    return {"type": "string"}, str(expected), str(expected)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@st.composite
def _json_column(draw: st.DrawFn) -> tuple[dict[str, Any], Any, Any]:
    document = draw(st.dictionaries(st.text(max_size=5), _JSON, max_size=4))
    schema = {"type": "string", "name": "io.debezium.data.Json"}
    return schema, json.dumps(document), document


_PLAIN = st.one_of(
    st.tuples(st.just({"type": "int64"}), st.integers(-(2**63), 2**63 - 1)).map(
        lambda pair: (pair[0], pair[1], pair[1])
    ),
    st.text(max_size=20)
    .filter(lambda text: text != UNAVAILABLE)
    .map(lambda text: ({"type": "string"}, text, text)),
    st.booleans().map(lambda flag: ({"type": "boolean"}, flag, flag)),
    st.floats(allow_nan=False, allow_infinity=False).map(
        lambda number: ({"type": "double"}, number, number)
    ),
    st.lists(st.text(max_size=5).filter(lambda text: text != UNAVAILABLE), max_size=3).map(
        lambda items: ({"type": "array", "items": {"type": "string"}}, items, items)
    ),
)

_COLUMN = st.one_of(_PLAIN, _timestamp_column(), _decimal_column(), _json_column())
_COLUMN_OR_NULL = st.one_of(
    _COLUMN,
    _COLUMN.map(lambda triple: (triple[0], None, None)),
    _COLUMN.map(lambda triple: (triple[0], UNAVAILABLE, UNAVAILABLE)),
)
_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)


@st.composite
def _table(draw: st.DrawFn) -> dict[str, tuple[dict[str, Any], Any, Any]]:
    columns = draw(st.dictionaries(_NAMES, _COLUMN_OR_NULL, min_size=0, max_size=8))
    row_id = draw(st.integers(1, 10**9))
    columns["id"] = ({"type": "int64"}, row_id, row_id)
    return columns


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    columns=_table(),
    op=st.sampled_from(["c", "u", "d", "r"]),
    schemas=st.booleans(),
    lsn=st.integers(0, 2**63 - 1),
    ts_ms=st.integers(0, 7_000_000_000_000),
    tx_id=st.none() | st.integers(0, 2**32),
    snapshot=st.sampled_from(["true", "false", "last", "first", "incremental", True, False]),
    table=_NAMES,
    with_key=st.booleans(),
)
def test_round_trip_random_envelopes(
    columns: dict[str, tuple[dict[str, Any], Any, Any]],
    op: str,
    schemas: bool,
    lsn: int,
    ts_ms: int,
    tx_id: int | None,
    snapshot: bool | str,
    table: str,
    with_key: bool,
) -> None:
    encoded = {name: encoded for name, (_, encoded, _) in columns.items()}
    expected = {name: value for name, (_, _, value) in columns.items()}
    row_schema = {
        "type": "struct",
        "optional": True,
        "name": f"triage.public.{table}.Value",
        "fields": [{**schema, "field": name} for name, (schema, _, _) in columns.items()],
    }
    before = encoded if op in ("u", "d") else None
    after = None if op == "d" else encoded
    payload = {
        "before": before,
        "after": after,
        "source": _source(table=table, lsn=lsn, ts_ms=ts_ms, txId=tx_id, snapshot=snapshot),
        "op": op,
        "ts_ms": ts_ms,
    }
    value = {"schema": _envelope_schema(row_schema), "payload": payload} if schemas else payload
    key = {"id": encoded["id"]} if with_key else None

    event = _decode(value, key, topic=f"triage.public.{table}")

    want = expected if schemas else encoded
    assert event.table == table
    assert event.op == op
    assert event.key == {"id": encoded["id"]}
    assert event.before == (want if before is not None else None)
    assert event.after == (want if after is not None else None)
    assert event.version == lsn
    assert event.txid == tx_id
    assert event.committed_at == EPOCH + timedelta(milliseconds=ts_ms)
    assert event.snapshot is (snapshot not in ("false", False))


@settings(max_examples=200, deadline=None)
@given(
    row=st.dictionaries(
        _NAMES,
        st.one_of(
            st.none(),
            st.integers(-(2**63), 2**63 - 1),
            st.text(max_size=10).filter(lambda text: text != UNAVAILABLE),
            _TIMESTAMPS,
            st.dates(min_value=date(1900, 1, 1)),
            st.decimals(allow_nan=False, allow_infinity=False, places=4),
            st.dictionaries(st.text(max_size=4), _JSON, max_size=3),
            st.binary(max_size=8),
        ),
        max_size=6,
    ),
    op=st.sampled_from(["c", "u", "r"]),
)
def test_library_encoder_round_trip(row: dict[str, Any], op: str) -> None:
    value = encode_envelope(table="tickets", op=op, lsn=1, ts_ms=TS_MS, after=row, schemas=True)
    event = decode_change_event(RawChange(topic=TOPIC, key=None, value=value))
    assert event is not None
    assert event.after == row


@settings(max_examples=500, deadline=None)
@given(value=st.binary(max_size=200), key=st.none() | st.binary(max_size=40))
def test_random_bytes_decode_or_raise_decode_error(value: bytes, key: bytes | None) -> None:
    with contextlib.suppress(DecodeError):
        decode_change_event(RawChange(topic=TOPIC, key=key, value=value))


_ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(
        ["c", "u", "d", "r", "t", "true", "false", UNAVAILABLE, "io.debezium.data.Json"]
    ),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "schema",
                    "payload",
                    "before",
                    "after",
                    "source",
                    "op",
                    "lsn",
                    "ts_ms",
                    "table",
                    "snapshot",
                    "txId",
                    "fields",
                    "field",
                    "name",
                    "type",
                    "items",
                    "values",
                    "parameters",
                    "scale",
                    "value",
                    "id",
                ]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(document=_ANY_JSON, key=_ANY_JSON)
def test_random_json_documents_decode_or_raise_decode_error(document: Any, key: Any) -> None:
    raw = RawChange(topic=TOPIC, key=json.dumps(key).encode(), value=json.dumps(document).encode())
    with contextlib.suppress(DecodeError):
        decode_change_event(raw)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_real_envelopes_decode_or_raise_decode_error(data: st.DataObject) -> None:
    document = {"schema": _envelope_schema(ROW_SCHEMA), "payload": _payload(after=FULL_ROW)}
    paths = [("payload", "after", column) for column in FULL_ROW] + [
        ("payload", "source", "lsn"),
        ("payload", "source", "snapshot"),
        ("payload", "op"),
        ("payload", "before"),
        ("schema", "fields"),
    ]
    for path in data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4)):
        target: Any = document
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = data.draw(_ANY_JSON)
    with contextlib.suppress(DecodeError):
        decode_change_event(_raw(document))
