"""The embedded CDC reader against a real PostgreSQL with ``wal_level=logical``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from connectors.pg_cdc import (
    CdcState,
    PgCdcSettings,
    PgCdcSource,
    advance_slot,
    drop_slot,
    slot_position,
)
from connectors.pgoutput import UNAVAILABLE
from models.events import DeadLetter, RawChange

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

SCHEMA = Path(__file__).resolve().parents[2] / "sql" / "source" / "001_helpdesk.sql"


@pytest.fixture
def source_dsn(pg_dsn: str) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA.read_text())
    return pg_dsn


@pytest.fixture
def settings(source_dsn: str, unique: str) -> Iterator[PgCdcSettings]:
    cfg = PgCdcSettings(
        dsn=source_dsn,
        slot_name=f"test_{unique}",
        stop_at_idle=True,
        poll_interval=timedelta(milliseconds=5),
        snapshot_batch_size=3,
    )
    yield cfg
    drop_slot(source_dsn, cfg.slot_name)


def execute(dsn: str, *statements: str, params: tuple[Any, ...] = ()) -> None:
    """Run each statement in its own transaction."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement, params or None)


def drain(part: Any, *, max_batches: int = 100_000) -> list[RawChange]:
    """Call next_batch until the partition reports EOF (stop_at_idle)."""
    out: list[RawChange] = []
    for _ in range(max_batches):
        awake = part.next_awake()
        if awake is not None:
            delay = (awake - datetime.now(UTC)).total_seconds()
            if delay > 0:
                time.sleep(delay)
        try:
            out.extend(part.next_batch())
        except StopIteration:
            return out
    raise AssertionError("partition never became idle")


def envelope(change: RawChange) -> dict[str, Any]:
    assert change.value is not None
    return json.loads(change.value)


def build(settings: PgCdcSettings, state: CdcState | None = None, **kwargs: Any) -> Any:
    source = PgCdcSource(settings, **kwargs)
    (part,) = source.list_parts()
    return source.build_part("cdc", part, state)


SEED = (
    "INSERT INTO customers (name, email, tier) VALUES ('Ada', 'ada@example.com', 'premium')",
    "INSERT INTO customers (name, email) VALUES ('Bob', 'bob@example.com')",
    "INSERT INTO agents (name, email, team, skills, languages) VALUES "
    """('Cy', 'cy@example.com', 'billing', '{"billing": 0.9}', ARRAY['en', 'pt BR', 'a,"b'])""",
    "INSERT INTO kb_articles (title, body) VALUES ('Reset', 'How to reset')",
    "INSERT INTO tickets (customer_id, subject, created_at) VALUES "
    "(1, 'Refund', '2024-05-01 12:00:00.123456+02')",
    "INSERT INTO ticket_events (ticket_id, kind, author_type) VALUES (1, 'comment', 'customer')",
)


def test_snapshot_emits_read_events_reference_tables_first(settings: PgCdcSettings) -> None:
    execute(settings.dsn, *reversed(SEED[:4]))
    execute(settings.dsn, *SEED[4:])
    part = build(settings)
    changes = drain(part)
    topics = [c.topic for c in changes]
    assert topics == [
        "triage.public.customers",
        "triage.public.customers",
        "triage.public.agents",
        "triage.public.kb_articles",
        "triage.public.tickets",
        "triage.public.ticket_events",
    ]
    envelopes = [envelope(c) for c in changes]
    assert {e["op"] for e in envelopes} == {"r"}
    assert [e["source"]["snapshot"] for e in envelopes] == ["true"] * 5 + ["last"]
    consistent = slot_position(settings.dsn, settings.slot_name)
    assert consistent is not None
    assert {c.position.lsn for c in changes} == {consistent}
    assert {e["source"]["lsn"] for e in envelopes} == {consistent}
    assert part.snapshot() == CdcState(snapshot_done=True, lsn=consistent)

    agent = envelopes[2]
    assert json.loads(changes[2].key or b"") == {"id": 1}
    assert agent["before"] is None
    assert agent["after"]["skills"] == '{"billing": 0.9}'
    assert agent["after"]["languages"] == ["en", "pt BR", 'a,"b']
    assert agent["after"]["capacity"] == 5
    assert agent["source"]["connector"] == "postgresql"
    assert agent["source"]["name"] == "triage"
    assert agent["source"]["table"] == "agents"
    assert agent["source"]["schema"] == "public"
    assert agent["transaction"] is None
    ticket = envelopes[4]["after"]
    assert ticket["created_at"] == "2024-05-01T10:00:00.123456Z"
    assert ticket["priority"] is None
    part.close()


def test_stream_insert_update_delete_truncate(settings: PgCdcSettings) -> None:
    part = build(settings)
    assert drain(part) == []
    execute(settings.dsn, *SEED)
    execute(
        settings.dsn,
        "UPDATE tickets SET status = 'open', priority = 'high' WHERE id = 1",
        "UPDATE customers SET tier = 'enterprise' WHERE id = 2",
        "DELETE FROM ticket_events WHERE id = 1",
        "DELETE FROM tickets WHERE id = 1",
        "INSERT INTO ticket_events (ticket_id, kind, author_type) "
        "SELECT 1, 'comment', 'system' WHERE false",
        "TRUNCATE ticket_events, kb_articles",
    )
    changes = drain(part)
    summary = [(c.topic.rsplit(".", 1)[1], envelope(c)["op"]) for c in changes]
    assert summary == [
        ("customers", "c"),
        ("customers", "c"),
        ("agents", "c"),
        ("kb_articles", "c"),
        ("tickets", "c"),
        ("ticket_events", "c"),
        ("tickets", "u"),
        ("customers", "u"),
        ("ticket_events", "d"),
        ("tickets", "d"),
        ("ticket_events", "t"),
        ("kb_articles", "t"),
    ]
    lsns = [c.position.lsn or 0 for c in changes]
    assert lsns == sorted(lsns)
    envs = [envelope(c) for c in changes]
    for env, change in zip(envs, changes, strict=True):
        assert env["source"]["lsn"] == change.position.lsn
        assert env["source"]["snapshot"] == "false"
        assert isinstance(env["source"]["txId"], int)
        assert env["source"]["ts_ms"] > 1_600_000_000_000
    inserted = envs[4]["after"]
    assert inserted["created_at"] == "2024-05-01T10:00:00.123456Z"
    assert inserted["subject"] == "Refund"
    assert envs[2]["after"]["languages"] == ["en", "pt BR", 'a,"b']

    # tickets has REPLICA IDENTITY FULL: the update carries the complete old row.
    ticket_update = envs[6]
    assert ticket_update["before"]["status"] == "new"
    assert ticket_update["before"]["subject"] == "Refund"
    assert ticket_update["after"]["status"] == "open"
    assert ticket_update["after"]["priority"] == "high"
    # customers keeps DEFAULT identity: no old row for a non-key update.
    assert envs[7]["before"] is None
    assert envs[7]["after"]["tier"] == "enterprise"
    # DEFAULT identity delete: key columns only, the rest null.
    event_delete = envs[8]
    assert event_delete["after"] is None
    assert event_delete["before"]["id"] == 1
    assert event_delete["before"]["kind"] is None
    assert json.loads(changes[8].key or b"") == {"id": 1}
    # FULL identity delete: the whole row.
    ticket_delete = envs[9]
    assert ticket_delete["before"]["subject"] == "Refund"
    assert ticket_delete["before"]["status"] == "open"
    assert json.loads(changes[9].key or b"") == {"id": 1}
    for truncate in envs[10:]:
        assert truncate["before"] is None
        assert truncate["after"] is None
    assert changes[10].key is None
    part.close()


TYPES_DDL = (
    """CREATE TABLE typed (
        id integer PRIMARY KEY,
        small smallint, big bigint, real4 real, dbl double precision, amount numeric(12, 3),
        flag boolean, note varchar(20), code char(3), uid uuid, doc jsonb, raw json,
        at_tz timestamptz, at_local timestamp, day date, clock time, blob bytea,
        tags text[], nums int[], grid int[][], mood mood, moods mood[], span interval,
        big_text text
    )""",
    "ALTER TABLE typed ALTER COLUMN big_text SET STORAGE EXTERNAL",
    "CREATE PUBLICATION typed_pub FOR TABLE typed",
)
TYPED_ROW = (
    "INSERT INTO typed VALUES ({id}, -2, 9007199254740993, 1.5, 'NaN', 12345.670, true, "
    "'note', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"k\": [1, 2]}}', '[1,2]', "
    "'2024-05-01 10:00:00+00', '2024-05-01 10:00:00.5', '2024-05-01', '10:00:00.25', "
    "'\\x00ff', ARRAY['plain', 'with space', 'comma,here', 'quote\"d', NULL, 'NULL', ''], "
    "'{{1,NULL,3}}', '{{{{1,2}},{{3,4}}}}', 'happy', '{{sad,happy}}', '1 day', repeat('x', 5000))"
)
EXPECTED_TYPED = {
    "small": -2,
    "big": 9007199254740993,
    "real4": 1.5,
    "dbl": "NaN",
    "amount": "12345.670",
    "flag": True,
    "note": "note",
    "code": "ab ",
    "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "doc": '{"k": [1, 2]}',
    "raw": "[1,2]",
    "at_tz": "2024-05-01T10:00:00.000000Z",
    "at_local": 1714557600500000,
    "day": 19844,
    "clock": 36000250000,
    "blob": "AP8=",
    "tags": ["plain", "with space", "comma,here", 'quote"d', None, "NULL", ""],
    "nums": [1, None, 3],
    "grid": [[1, 2], [3, 4]],
    "mood": "happy",
    "moods": ["sad", "happy"],
    "span": "1 day",
    "big_text": "x" * 5000,
}


def test_value_encodings_match_between_snapshot_and_stream(source_dsn: str, unique: str) -> None:
    execute(source_dsn, "CREATE TYPE mood AS ENUM ('sad', 'happy')", *TYPES_DDL)
    execute(source_dsn, TYPED_ROW.format(id=1))
    cfg = PgCdcSettings(
        dsn=source_dsn, slot_name=f"typed_{unique}", publication="typed_pub", stop_at_idle=True
    )
    try:
        part = build(cfg)
        (snap,) = drain(part)
        execute(
            source_dsn,
            TYPED_ROW.format(id=2),
            "UPDATE typed SET note = 'changed' WHERE id = 2",
            "UPDATE typed SET id = 3 WHERE id = 2",
        )
        stream = drain(part)
        part.close()
    finally:
        drop_slot(source_dsn, cfg.slot_name)
    snap_row = envelope(snap)["after"]
    assert snap_row == {"id": 1, **EXPECTED_TYPED}
    inserted, updated, key_delete, key_insert = (envelope(c) for c in stream)
    assert inserted["op"] == "c"
    assert inserted["after"] == {"id": 2, **EXPECTED_TYPED}
    # The untouched TOASTed column is not in the WAL record, as with Debezium.
    assert updated["op"] == "u"
    assert updated["after"]["big_text"] == UNAVAILABLE
    assert updated["after"]["note"] == "changed"
    # A primary key change becomes a delete of the old key and a create of the new one.
    assert key_delete["op"] == "d"
    assert json.loads(stream[2].key or b"") == {"id": 2}
    assert key_insert["op"] == "c"
    assert json.loads(stream[3].key or b"") == {"id": 3}


def test_restart_resumes_after_state_and_advances_slot(settings: PgCdcSettings) -> None:
    part = build(settings)
    drain(part)
    for i in range(5):
        execute(
            settings.dsn,
            "INSERT INTO customers (name, email) VALUES (%s, %s)",
            params=(f"c{i}", f"e{i}"),
        )
    # A small poll limit so one batch holds only the first transactions.
    small = settings.model_copy(update={"max_changes_per_poll": 4})
    part.close()
    part = build(small, part.snapshot())
    first = part.next_batch()
    assert 1 <= len(first) < 5
    state = part.snapshot()
    assert state.lsn > 0
    part.close()
    execute(settings.dsn, "INSERT INTO customers (name, email) VALUES ('late', 'late')")

    resumed = build(settings, state)
    rest = drain(resumed)
    names = [envelope(c)["after"]["name"] for c in first + rest]
    assert names == ["c0", "c1", "c2", "c3", "c4", "late"]
    assert min(c.position.lsn or 0 for c in rest) > max(c.position.lsn or 0 for c in first)
    # Restoring the state proves the earlier events durable, so the slot moved there.
    assert slot_position(settings.dsn, settings.slot_name) == state.lsn
    resumed.close()


def test_restart_from_older_state_redelivers(settings: PgCdcSettings) -> None:
    part = build(settings)
    drain(part)
    old_state = part.snapshot()
    execute(settings.dsn, *SEED[:2])
    first = drain(part)
    assert len(first) == 2
    part.close()
    # Bytewax restored an older state: everything after it comes again (at-least-once).
    again = drain(build(settings, old_state))
    assert [c.value and envelope(c)["after"] for c in again] == [
        envelope(c)["after"] for c in first
    ]
    assert [c.position for c in again] == [c.position for c in first]


def test_durable_lsn_advances_slot_but_never_past_emitted(settings: PgCdcSettings) -> None:
    durable: list[int | None] = [None]
    part = build(settings, durable_lsn=lambda: durable[0])
    drain(part)
    start = slot_position(settings.dsn, settings.slot_name)
    execute(settings.dsn, *SEED[:2])
    changes = drain(part)
    assert slot_position(settings.dsn, settings.slot_name) == start
    durable[0] = 2**62
    execute(settings.dsn, SEED[3])
    changes += drain(part)
    assert len(changes) == 3
    position = slot_position(settings.dsn, settings.slot_name)
    assert position is not None
    # Advanced before the last peek: up to the state as it was, never beyond it.
    assert start is not None and start < position <= part.snapshot().lsn
    part.close()


def test_reading_pauses_while_too_many_changes_are_not_durable(settings: PgCdcSettings) -> None:
    """Back-pressure: past ``max_in_flight`` undurable changes the reader waits, and
    reads again as soon as the durable position covers enough of them."""
    durable: list[int | None] = [None]
    part = build(settings, durable_lsn=lambda: durable[0])
    drain(part)
    part.close()
    cfg = settings.model_copy(
        update={"max_in_flight": 3, "max_changes_per_poll": 1, "stop_at_idle": False}
    )
    part = build(cfg, part.snapshot(), durable_lsn=lambda: durable[0])
    durable[0] = part.snapshot().lsn  # everything before these inserts is durable
    for i in range(6):
        execute(
            settings.dsn,
            "INSERT INTO customers (name, email) VALUES (%s, %s)",
            params=(f"bp{i}", f"bp{i}"),
        )
    after: dict[str, int] = {}  # name -> the reader's position once it was emitted

    def read(polls: int) -> list[str]:
        names = []
        for _ in range(polls):
            for change in part.next_batch():
                names.append(envelope(change)["after"]["name"])
                after[names[-1]] = part.snapshot().lsn
        return names

    # One transaction per poll; reading stops once three are emitted and not durable.
    assert read(10) == ["bp0", "bp1", "bp2"]
    assert part.next_awake() is not None
    # An epoch covering the first two completes: two more may be read, no more.
    durable[0] = after["bp1"]
    assert read(10) == ["bp3", "bp4"]
    durable[0] = after["bp4"]
    assert read(10) == ["bp5"]
    part.close()
    # Without a known durable position the reader cannot tell, so it never pauses.
    durable[0] = None
    for i in range(5):
        execute(
            settings.dsn,
            "INSERT INTO customers (name, email) VALUES (%s, 'u')",
            params=(f"u{i}",),
        )
    part = build(cfg, part.snapshot(), durable_lsn=lambda: durable[0])
    got = []
    for _ in range(10):
        got += part.next_batch()
    assert len(got) == 5
    part.close()


def test_a_large_transaction_is_emitted_in_parts_and_resumes_after_its_last_part(
    settings: PgCdcSettings,
) -> None:
    """Back-pressure inside one transaction: a bulk insert is emitted ``max_in_flight`` at
    a time, the state says how much of it went out, and a resume skips exactly that."""
    durable: list[tuple[int, int] | None] = [None]
    part = build(settings)
    drain(part)
    part.close()
    cfg = settings.model_copy(update={"max_in_flight": 3, "stop_at_idle": False})
    part = build(cfg, part.snapshot(), durable_lsn=lambda: durable[0])
    durable[0] = part.snapshot().position
    execute(
        settings.dsn,
        "INSERT INTO customers (name, email) SELECT 'bulk' || i, 'b' FROM generate_series(1, 7) i",
    )

    def names(changes: list[RawChange]) -> list[str]:
        return [envelope(c)["after"]["name"] for c in changes]

    first = names(part.next_batch())
    assert first == ["bulk1", "bulk2", "bulk3"]
    after_first = part.snapshot()
    assert after_first.partial == 3 and part.next_batch() == []  # paused: none durable
    durable[0] = after_first.position  # the epoch holding the first part completes
    assert names(part.next_batch()) == ["bulk4", "bulk5", "bulk6"]
    assert part.snapshot().partial == 6
    part.close()
    # A crash: Bytewax resumes from the state after the first part.
    resumed = build(cfg.model_copy(update={"stop_at_idle": True}), after_first)
    assert names(drain(resumed)) == ["bulk4", "bulk5", "bulk6", "bulk7"]
    state = resumed.snapshot()
    assert state.partial == 0 and state.lsn > after_first.lsn
    resumed.close()


def test_cli_helpers_only_move_forward(settings: PgCdcSettings) -> None:
    part = build(settings)
    drain(part)
    execute(settings.dsn, SEED[0])
    drain(part)
    lsn = part.snapshot().lsn
    part.close()
    assert advance_slot(settings.dsn, settings.slot_name, lsn) == lsn
    assert advance_slot(settings.dsn, settings.slot_name, lsn - 1) is None
    assert slot_position(settings.dsn, settings.slot_name) == lsn
    assert drop_slot(settings.dsn, settings.slot_name)
    assert not drop_slot(settings.dsn, settings.slot_name)


def test_interrupted_snapshot_is_redone(settings: PgCdcSettings) -> None:
    execute(settings.dsn, *SEED)
    part = build(settings)
    first = part.next_batch()
    state = part.snapshot()
    assert not state.snapshot_done
    assert 0 < len(first) < 6
    part.close()
    redone = drain(build(settings, state))
    assert len(redone) == 6
    assert {envelope(c)["op"] for c in redone} == {"r"}


def test_connection_loss_reconnects(settings: PgCdcSettings) -> None:
    part = build(settings)
    drain(part)
    execute(settings.dsn, SEED[0])
    with psycopg.connect(settings.dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    assert part.next_batch() == []
    assert part.next_awake() is not None
    changes = drain(part)
    assert [envelope(c)["op"] for c in changes] == ["c"]
    part.close()


def test_bytewax_dataflow_run(settings: PgCdcSettings) -> None:
    execute(settings.dsn, *SEED[:2])
    out: list[RawChange] = []
    flow = Dataflow("cdc_test")
    stream = op.input("read_cdc", flow, PgCdcSource(settings))
    op.output("collect", stream, TestingSink(out))
    run_main(flow)
    assert [envelope(c)["op"] for c in out] == ["r", "r"]
    execute(settings.dsn, SEED[2])
    out.clear()
    run_main(flow)
    # Without recovery the source starts over: the slot still exists, the snapshot is
    # redone and the stream delivers the agent insert once more.
    assert [(c.topic.rsplit(".", 1)[1], envelope(c)["op"]) for c in out] == [
        ("customers", "r"),
        ("customers", "r"),
        ("agents", "r"),
        ("agents", "c"),
    ]


def test_throughput(settings: PgCdcSettings) -> None:
    rows = 50_000
    insert = (
        "INSERT INTO customers (name, email, organization) "
        "SELECT 'name ' || g, 'user' || g || '@example.com', 'org ' || (g %% 100) "
        "FROM generate_series(1, %s) g"
    )
    execute(settings.dsn, insert, params=(rows,))
    cfg = settings.model_copy(update={"snapshot_batch_size": 5000})
    part = build(cfg)
    started = time.perf_counter()
    snap = drain(part)
    snap_rate = len(snap) / (time.perf_counter() - started)
    assert len(snap) == rows

    execute(settings.dsn, insert, params=(rows,))
    # Many small transactions as well as one big one.
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        for i in range(2000):
            conn.execute("UPDATE customers SET tier = 'free' WHERE id = %s", (i + 1,))
    part.close()
    emitted: list[int] = []
    part = build(cfg, part.snapshot(), durable_lsn=lambda: part.snapshot().position)
    started = time.perf_counter()
    for change in drain(part):
        emitted.append(change.position.lsn or 0)
    stream_rate = len(emitted) / (time.perf_counter() - started)
    part.close()
    log.warning(
        "embedded CDC throughput: snapshot %.0f rows/s, stream %.0f events/s",
        snap_rate,
        stream_rate,
    )
    assert len(emitted) == rows + 2000
    assert snap_rate > 5000
    assert stream_rate > 5000


def test_agent_roster_column_reaches_the_agent(settings: PgCdcSettings) -> None:
    roster = {"tz": "America/Sao_Paulo", "weekly": {"mon": [["09:00", "18:00"]]}}
    execute(settings.dsn, (SCHEMA.parent / "002_agent_roster.sql").read_text())
    execute(
        settings.dsn,
        "INSERT INTO agents (name, email, team, roster) VALUES "
        "('Di', 'di@example.com', 'billing', %s)",
        params=(json.dumps(roster),),
    )
    from models.helpdesk import Agent
    from pipelines.flow import decode

    (change,) = drain(build(settings))
    event = decode(change)
    assert event is not None and not isinstance(event, DeadLetter)
    agent = Agent.from_row(event.after or {})
    assert agent.roster is not None and agent.roster.tz == "America/Sao_Paulo"
    # Monday 2 March 2026, 12:00 UTC is 09:00 in São Paulo (UTC-3): the shift has begun.
    assert agent.on_shift(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    assert not agent.on_shift(datetime(2026, 3, 2, 11, 59, tzinfo=UTC))
