"""Poison rows are refused at the edge with a reason, and text work per row is bounded.

Each shape below once stopped or stalled the dataflow: a far-future timestamp overflowed
the SLA calendar, an unknown status left a ticket unrouted without a trace, and a
megabyte-long subject made the text models crawl.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.debezium import encode_envelope, encode_key
from models.calendar import (
    ALWAYS_OPEN,
    MAX_SCAN_DAYS,
    CalendarRangeError,
    calendar_for_region,
)
from models.enrichment import CustomerContext, TicketEnricher
from models.events import ChangeEvent, DeadLetter, RawChange, SourcePosition
from models.helpdesk import (
    MAX_DESCRIPTION_CHARS,
    MAX_SUBJECT_CHARS,
    TRUNCATION_MARKER,
    Agent,
    Customer,
    EnrichedTicket,
    RowError,
    Ticket,
    TimestampRange,
    parse_timestamp,
)
from models.kb import MAX_KB_BODY_CHARS, KbArticle
from models.routing import RoutingPolicy
from models.sentiment import MAX_SCORED_CHARS, SentimentAnalyzer
from pipelines.flow import FLOW_COUNTERS
from tests.pipelines.test_flow import TS, Feed, agent_row, run_flow, ticket_row

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": 5, "customer_id": 7, "subject": "Refund for invoice 991",
        "description": "I was charged twice, please refund", "channel": "email",
        "status": "new", "priority": None, "created_at": "2026-03-02T09:30:00Z",
    }  # fmt: skip
    row.update(changes)
    return row


def _event(row: dict[str, Any], *, table: str = "tickets", version: int = 10) -> ChangeEvent:
    return ChangeEvent(
        table=table,
        op="c",
        key={"id": row["id"]},
        before=None,
        after=row,
        committed_at=T0,
        version=version,
        position=SourcePosition(lsn=version),
    )


# ------------------------------------------------------------------------------ timestamps

BAD_TIMESTAMPS = [
    ("9999-12-31", "outside the accepted range"),
    ("9999-12-31T23:59:59-05:00", "outside the accepted range"),
    ("1970-01-01T00:00:00Z", "outside the accepted range"),
    ("0001-01-01 00:00:00+00", "outside the accepted range"),
    ("infinity", "'infinity', not an instant"),
    ("-infinity", "'-infinity', not an instant"),
    (0, "outside the accepted range"),  # epoch zero from a zeroed column
    (9_223_372_036_854_775_807, "outside the accepted range"),  # Long.MAX as "never"
    (1e300, "not a representable timestamp"),
    (float("nan"), "not a representable timestamp"),
    ("next tuesday", "not a timestamp"),
]


@pytest.mark.parametrize(("value", "reason"), BAD_TIMESTAMPS)
def test_created_at_outside_the_sane_range_is_a_row_error(value: object, reason: str) -> None:
    with pytest.raises(RowError, match="created_at") as raised:
        Ticket.from_row(_row(created_at=value))
    assert reason in str(raised.value)


@pytest.mark.parametrize("column", ["updated_at", "first_reply_at", "solved_at"])
def test_optional_timestamps_are_checked_too(column: str) -> None:
    with pytest.raises(RowError, match=f"{column} 9999-12-31"):
        Ticket.from_row(_row(**{column: "9999-12-31T00:00:00Z"}))
    assert getattr(Ticket.from_row(_row(**{column: None})), column) is None


def test_timestamps_at_the_edges_of_the_range() -> None:
    valid = TimestampRange()
    assert parse_timestamp("2000-01-01T00:00:00Z", valid=valid) == valid.earliest
    with pytest.raises(RowError):
        parse_timestamp("2100-01-01T00:00:00Z", valid=valid)  # the end is exclusive
    with pytest.raises(RowError):
        parse_timestamp("1999-12-31T23:59:59Z", valid=valid)


def test_the_range_is_configurable() -> None:
    narrow = TimestampRange(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    with pytest.raises(RowError, match=r"\[2026-01-01, 2027-01-01\)"):
        Ticket.from_row(_row(created_at="2025-12-31T23:00:00Z"), valid=narrow)
    wide = TimestampRange(datetime(1960, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
    old = Ticket.from_row(_row(created_at="1970-01-01T00:00:00Z"), valid=wide)
    assert old.created_at == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_timestamp("0001-01-01T00:00:00Z", valid=None) == datetime.min.replace(tzinfo=UTC)
    with pytest.raises(ValueError, match="latest must be after"):
        TimestampRange(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def test_enricher_applies_its_timestamp_range() -> None:
    narrow = TimestampRange(datetime(2027, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC))
    enricher = TicketEnricher(RoutingPolicy(), timestamps=narrow)
    with pytest.raises(RowError, match="created_at 2026-03-02"):
        enricher.enrich(CustomerContext(), _event(_row()))


def test_kb_article_with_infinite_update_time_is_a_row_error() -> None:
    row = {"id": 3, "title": "Refunds", "body": "How refunds work", "updated_at": "infinity"}
    with pytest.raises(RowError, match="updated_at"):
        KbArticle.from_change(_event(row, table="kb_articles"))


# ------------------------------------------------------------------------------- enums


@pytest.mark.parametrize(
    ("column", "value", "allowed"),
    [
        ("status", "escalated", "new, open, pending, on_hold, solved, closed"),
        ("status", "Open", "new, open"),
        ("priority", "critical", "urgent, high, normal, low"),
        ("channel", "fax", "email, web, chat, phone, api"),
        ("status", 3, "new, open"),
    ],
)
def test_unknown_ticket_enum_values_name_the_column_and_the_allowed_values(
    column: str, value: object, allowed: str
) -> None:
    with pytest.raises(RowError, match=f"column '{column}' has unknown value") as raised:
        Ticket.from_row(_row(**{column: value}))
    assert allowed in str(raised.value)


def test_missing_enum_values_take_the_schema_defaults() -> None:
    ticket = Ticket.from_row(_row(status=None, channel="", priority=None))
    assert (ticket.status, ticket.channel, ticket.priority) == ("new", "email", None)


def test_unknown_customer_tier_and_agent_status_are_row_errors() -> None:
    with pytest.raises(RowError, match=r"'tier' has unknown value 'platinum'.*enterprise"):
        Customer.from_row({"id": 1, "tier": "platinum"})
    assert Customer.from_row({"id": 1}).tier == "standard"
    with pytest.raises(RowError, match=r"'status' has unknown value 'busy'.*offline"):
        Agent.from_row({"id": 2, "team": "billing", "status": "busy"})


# ------------------------------------------------------------------------------ oversize text


def test_oversize_subject_and_description_are_cut_with_a_marker() -> None:
    ticket = Ticket.from_row(_row(subject="s" * 1_000_000, description="d" * 1_000_000))
    assert ticket.subject == "s" * MAX_SUBJECT_CHARS + TRUNCATION_MARKER
    assert ticket.description == "d" * MAX_DESCRIPTION_CHARS + TRUNCATION_MARKER
    exact = Ticket.from_row(_row(subject="s" * MAX_SUBJECT_CHARS))
    assert exact.subject == "s" * MAX_SUBJECT_CHARS  # at the limit: kept as it is


def test_oversize_kb_article_body_is_cut_with_a_marker() -> None:
    row = {"id": 3, "title": "t" * 5_000, "body": "b" * (MAX_KB_BODY_CHARS + 1)}
    article = KbArticle.from_change(_event(row, table="kb_articles"))
    assert article.title.endswith(TRUNCATION_MARKER)
    assert len(article.title) == MAX_SUBJECT_CHARS + len(TRUNCATION_MARKER)
    assert article.body == "b" * MAX_KB_BODY_CHARS + TRUNCATION_MARKER


def test_a_megabyte_ticket_is_enriched_from_its_bounded_text() -> None:
    word = "This is terrible, I am very angry. " * 30_000  # ~1 MB of sentiment-bearing words
    et = TicketEnricher(RoutingPolicy()).enrich(
        CustomerContext(), _event(_row(subject="Broken", description=word))
    )
    assert len(et.ticket.description) == MAX_DESCRIPTION_CHARS + len(TRUNCATION_MARKER)
    assert et.sentiment_label == "negative"


def test_sentiment_scores_only_the_head_of_long_texts() -> None:
    analyzer = SentimentAnalyzer()
    head = "I love this product, thank you so much. " * 10
    tail = " This is awful and terrible, I hate it." * 2_000
    padded = head + " " * (MAX_SCORED_CHARS - len(head)) + tail
    # Scored whole, the tail would dominate; only the head counts.
    assert analyzer.score(tail, "en").label == "negative"
    assert analyzer.score(padded, "en").label == "positive"
    assert analyzer.score(padded, "en") == analyzer.score(head, "en")


@pytest.mark.parametrize(
    "row",
    [
        _row(created_at="9999-12-31T00:00:00Z"),
        _row(created_at="infinity"),
        _row(created_at="1970-01-01T00:00:00Z"),
        _row(status="escalated"),
        _row(priority="p0"),
        _row(channel="carrier pigeon"),
    ],
    ids=["far future", "infinity", "epoch", "status", "priority", "channel"],
)
def test_enricher_raises_row_errors_that_the_flow_dead_letters(row: dict[str, Any]) -> None:
    enricher = TicketEnricher(RoutingPolicy())
    ctx = CustomerContext()
    with pytest.raises(RowError):
        enricher.enrich(ctx, _event(row))
    # The customer's context is untouched, and their next, healthy ticket goes through.
    assert ctx.is_empty()
    assert enricher.enrich(ctx, _event(_row(id=6), version=11)).ticket_id == 6


# ---------------------------------------------------------------- calendar arithmetic is total

_CALENDARS = [ALWAYS_OPEN, calendar_for_region("us", range(2024, 2026))]
_EXTREMES = [
    datetime.max.replace(tzinfo=UTC),
    datetime(9999, 12, 31, tzinfo=UTC),
    datetime.min.replace(tzinfo=UTC),
]


@pytest.mark.parametrize("calendar", _CALENDARS, ids=lambda c: c.name)
@pytest.mark.parametrize("start", _EXTREMES, ids=["max", "9999-12-31", "min"])
def test_business_time_near_the_ends_of_the_calendar_raises_a_value_error(
    calendar: Any, start: datetime
) -> None:
    try:
        result = calendar.add_business_time(start, timedelta(days=3))
    except CalendarRangeError as exc:
        assert "year 9999" in str(exc) or "start of the calendar" in str(exc)
    else:  # only where the answer exists: three days after the very first instant
        assert start.year == 1 and result > start
    try:
        calendar.is_open(start)
    except CalendarRangeError as exc:
        assert any(f in str(exc) for f in ("year 9999", "end of the", "start of the"))


def test_calendar_range_error_is_a_value_error() -> None:
    assert issubclass(CalendarRangeError, ValueError)


def test_an_endless_business_duration_is_refused_not_walked() -> None:
    calendar = _CALENDARS[1]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(CalendarRangeError, match=f"more than {MAX_SCAN_DAYS} days"):
        calendar.add_business_time(start, timedelta.max)
    with pytest.raises(CalendarRangeError, match="past the year 9999"):
        ALWAYS_OPEN.add_business_time(start, timedelta.max)
    with pytest.raises(CalendarRangeError):
        calendar.business_time_between(datetime.min.replace(tzinfo=UTC), start)
    # Ordinary spans are unaffected.
    assert calendar.business_time_between(start, start + timedelta(days=7)) > timedelta(0)


# ---------------------------------------------------------------------------- ids and numbers


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"id": 0}, "'id' is 0, outside 1..9223372036854775807"),
        ({"id": -5}, "'id' is -5, outside 1"),
        ({"id": 2**63}, "outside 1..9223372036854775807"),
        ({"id": "12abc"}, "'id' is not an integer"),
        ({"id": 1.5}, "'id' is not an integer"),
        ({"id": float("inf")}, "'id' is not an integer"),
        ({"customer_id": 0}, "'customer_id' is 0"),
        ({"assigned_agent_id": -1}, "'assigned_agent_id' is -1"),
        ({"csat": 9}, "'csat' is 9, outside 1..5"),
    ],
)
def test_ids_and_bounded_numbers_are_checked(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(RowError) as raised:
        Ticket.from_row(_row(**changes))
    assert reason in str(raised.value)


def test_agent_shift_and_capacity_follow_the_schema() -> None:
    base = {"id": 2, "team": "billing"}
    assert Agent.from_row({**base, "id": 2.0}).id == 2  # an integral float is an integer
    for changes, reason in [
        ({"shift_start": 24}, "'shift_start' is 24, outside 0..23"),
        ({"shift_end": 0}, "'shift_end' is 0, outside 1..24"),
        ({"capacity": -1}, "'capacity' is -1"),
    ]:
        with pytest.raises(RowError, match=reason):
            Agent.from_row({**base, **changes})


# ------------------------------------------------------------------- through the whole dataflow

_POISON = {
    101: {"created_at": "9999-12-31T00:00:00Z"},
    102: {"created_at": "1970-01-01T00:00:00Z"},
    103: {"created_at": "infinity"},
    104: {"status": "escalated"},
    105: {"priority": "p0"},
    106: {"channel": "fax"},
    107: {"first_reply_at": "-infinity"},
}


def test_poison_tickets_become_dead_letters_and_the_next_ticket_is_routed() -> None:
    feed = Feed()
    feed.add("agents", "r", agent_row(1, capacity=50))
    feed.add(
        "customers",
        "r",
        {
            "id": 1,
            "name": "Acme",
            "email": "c@x",
            "tier": "premium",
            "language": "en",
            "region": "us",
        },
    )
    for tid, changes in _POISON.items():
        feed.add("tickets", "c", ticket_row(tid, **changes))
    huge = "refund " * 150_000  # ~1 MB
    feed.add("tickets", "c", ticket_row(200, subject=huge, description=huge))
    feed.add("tickets", "c", ticket_row(201))
    analytics, decisions = run_flow(feed.records, workers=1)

    dead = [x for x in analytics if isinstance(x, DeadLetter)]
    by_ticket = {json.loads(d.key or "{}").get("id"): d for d in dead}
    assert set(by_ticket) == set(_POISON)
    for tid, changes in _POISON.items():
        (column,) = changes
        assert by_ticket[tid].stage == "enrich_ticket"
        assert column in by_ticket[tid].reason, by_ticket[tid].reason
    assert "allowed: new, open" in by_ticket[104].reason
    # The oversize ticket is routed from its bounded text; so is the healthy one after it.
    routed = {d.ticket_id for d in decisions}
    assert {200, 201} <= routed and not routed & set(_POISON)
    enriched = {e.ticket_id: e for e in analytics if isinstance(e, EnrichedTicket)}
    assert enriched[200].ticket.subject.endswith(TRUNCATION_MARKER)


# ----------------------------------------------------------------------- property: total parsers

_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.datetimes(timezones=st.none() | st.just(UTC)),
    st.sampled_from(["infinity", "-infinity", "9999-12-31T23:59:59-23:59", "0001-01-01", ""]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@given(_ANY_VALUE)
@settings(max_examples=500, deadline=None)
def test_parse_timestamp_returns_an_instant_in_range_or_a_row_error(value: object) -> None:
    try:
        parsed = parse_timestamp(value, name="created_at")
    except RowError as exc:
        assert "created_at" in str(exc)
    else:
        valid = TimestampRange()
        assert parsed is None or valid.earliest <= parsed < valid.latest


_TICKET_COLUMNS = ("id", "customer_id", "subject", "description", "channel", "status",
                   "priority", "assigned_agent_id", "created_at", "solved_at", "csat")  # fmt: skip


@given(st.dictionaries(st.sampled_from(_TICKET_COLUMNS), _ANY_VALUE, max_size=6))
@settings(max_examples=500, deadline=None)
def test_any_ticket_row_parses_or_is_a_row_error(changes: dict[str, Any]) -> None:
    try:
        ticket = Ticket.from_row(_row(**changes))
    except RowError:
        return
    assert ticket.status in ("new", "open", "pending", "on_hold", "solved", "closed")
    assert ticket.id >= 1 and len(ticket.subject) <= MAX_SUBJECT_CHARS + len(TRUNCATION_MARKER)


# ------------------------------------------------------------- table-level and schema events


def _table_record(feed: Feed, table: str, value: dict[str, Any] | None) -> None:
    """A record without a row (truncate, logical decoding message) after the feed's last."""
    feed.lsn += 10
    feed.records.append(
        RawChange(
            topic=f"triage.public.{table}" if table else "triage.message",
            key=encode_key({}, table=table or "message"),
            value=None if value is None else json.dumps(value).encode(),
            position=SourcePosition(lsn=feed.lsn),
        )
    )


def test_truncates_messages_nulls_new_columns_and_deleted_customers_keep_routing() -> None:
    """Rows that are not tickets the flow can route, and events that are not rows at all:
    none stops routing; errors are dead letters with a reason, the rest is counted."""
    FLOW_COUNTERS.clear()
    feed = Feed()
    feed.add("agents", "r", agent_row(1, capacity=50))
    for cid in (1, 2):
        customer = {"id": cid, "name": f"C{cid}", "email": "c@x", "tier": "premium"}
        feed.add("customers", "r", customer | {"language": "en", "region": "us"})
    feed.add("tickets", "c", ticket_row(10))
    # TRUNCATE of a captured table: no row, no key.
    for table in ("ticket_events", "tickets", "customers"):
        envelope = json.loads(encode_envelope(table=table, op="t", lsn=feed.lsn + 1, ts_ms=TS))
        _table_record(feed, table, envelope)
    # pg_logical_emit_message (e.g. the connector's heartbeat action query).
    message = {"prefix": "heartbeat", "content": "AA=="}
    _table_record(
        feed, "", {"op": "m", "ts_ms": TS, "source": envelope["source"], "message": message}
    )
    # NULL where the schema says NOT NULL, and a column added by ALTER TABLE.
    feed.add("tickets", "c", ticket_row(11, customer_id=None))
    feed.add("tickets", "c", ticket_row(12, subject=None, description=None))
    feed.add("tickets", "c", ticket_row(13, sentiment_override="x"))
    # A customer deleted while one of their tickets is open, then a change of that ticket.
    feed.add("tickets", "c", ticket_row(14, customer_id=2))
    feed.add("customers", "d", None, before={"id": 2, "name": "C2", "email": "c@x"})
    feed.add("tickets", "u", ticket_row(14, customer_id=2, status="open"))
    feed.add("tickets", "c", ticket_row(15))
    analytics, decisions = run_flow(feed.records, workers=1)

    dead = {json.loads(d.key or "{}").get("id"): d for d in analytics if isinstance(d, DeadLetter)}
    assert set(dead) == {11}, {k: d.reason for k, d in dead.items()}
    assert "customer_id" in dead[11].reason
    assert FLOW_COUNTERS["truncate:tickets"] == 1
    assert FLOW_COUNTERS["truncate:customers"] == 1
    assert FLOW_COUNTERS["truncate:ticket_events"] == 1
    assert FLOW_COUNTERS["skipped:message"] == 1
    routed = {d.ticket_id for d in decisions if d.status == "assigned"}
    assert {10, 13, 14, 15} <= routed
    # No text to classify: the default queue, which has no agents here; held, not lost.
    (empty,) = [d for d in decisions if d.ticket_id == 12]
    assert (empty.status, empty.queue) == ("queued", "general")
