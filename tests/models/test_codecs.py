"""Record codecs: what a store writes reads back as the same record, for any record."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from models.codecs import (
    DECISION_FIELDS,
    PRIORITIES,
    ROUTING_COLUMNS,
    priority_from_score,
    queue_score,
    queued_at_from_score,
    routing_from_hash,
    routing_from_row,
    routing_hash,
    routing_row,
)
from models.helpdesk import RoutingDecision

_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_text = st.text(min_size=1, max_size=30)
_finite = st.floats(allow_nan=False, allow_infinity=False)

decisions = st.builds(
    RoutingDecision,
    ticket_id=st.integers(1, 2**63 - 1),
    version=st.integers(0, 2**63 - 1),
    queue=_text,
    status=st.sampled_from(["assigned", "queued", "released"]),
    agent_id=st.none() | st.integers(1, 2**63 - 1),
    score=_finite,
    confidence=_finite,
    reasons=st.lists(_text, max_size=5).map(tuple),
    priority=st.sampled_from([*PRIORITIES, "custom"]),
    sla_deadline=st.none() | _times,
    model_version=_text,
    decided_at=_times,
    source_committed_at=_times,
    candidates=st.integers(0, 10_000),
    extra=st.dictionaries(_text, st.integers() | _text, max_size=4),
)


@given(decisions)
def test_live_hash_round_trip(decision: RoutingDecision) -> None:
    fields = routing_hash(decision)
    assert set(fields) == set(DECISION_FIELDS)
    assert all(isinstance(value, str) for value in fields.values())
    # The live hash keeps every field but the analytics-only diagnostics.
    assert routing_from_hash(fields) == replace(decision, extra={})


@given(decisions)
def test_analytics_row_round_trip(decision: RoutingDecision) -> None:
    row = routing_row(decision)
    assert len(row) == len(ROUTING_COLUMNS)
    assert routing_from_row(dict(zip(ROUTING_COLUMNS, row, strict=True))) == decision


@given(st.sampled_from(PRIORITIES), _times)
def test_queue_score_orders_by_priority_then_time_and_inverts(priority: str, at: datetime) -> None:
    score = queue_score(priority, at)
    assert priority_from_score(score) == priority
    assert abs(queued_at_from_score(score) - at) < timedelta(milliseconds=1)
    assert queue_score(priority, at + timedelta(seconds=1)) > score
    for later in PRIORITIES[PRIORITIES.index(priority) + 1 :]:
        assert queue_score(later, at - timedelta(days=3650)) > score


def test_every_store_takes_its_ticket_columns_from_the_one_flattening() -> None:
    import dataclasses

    from models.codecs import TICKET_FACT_COLUMNS, ticket_fields
    from sinks.search import TicketDocument, ticket_document
    from sinks.warehouse import TABLES, TICKET_FACTS, ticket_fact_record
    from tests.sinks.test_sinks_pure import make_enriched

    item = make_enriched(ticket_id=5, version=300)
    fields = ticket_fields(item)
    warehouse = set(TABLES[TICKET_FACTS].schema) - {"written_at"}
    search = {f.name for f in dataclasses.fields(TicketDocument)}
    assert set(TICKET_FACT_COLUMNS) <= set(fields)
    assert warehouse <= set(fields) and search <= set(fields)
    assert ticket_fact_record(item) == {name: fields[name] for name in warehouse}
    assert dataclasses.asdict(ticket_document(item)) == {name: fields[name] for name in search}
    # A delete keeps no text in the search index.
    deleted = ticket_document(dataclasses.replace(item, op="d"))
    assert deleted.deleted and deleted.subject == deleted.description == ""


def test_search_document_rebuilt_from_stored_facts_is_the_live_one() -> None:
    import dataclasses

    from models.codecs import SEARCH_FACT_COLUMNS, ticket_fields, ticket_from_facts
    from sinks.search import ticket_document
    from tests.sinks.test_sinks_pure import make_enriched

    for op in ("u", "d"):
        item = make_enriched(ticket_id=9, version=400, op=op)
        stored = ticket_fields(item, allow_pii=True)
        assert set(SEARCH_FACT_COLUMNS) <= set(stored)
        row = {name: stored[name] for name in SEARCH_FACT_COLUMNS}
        rebuilt = ticket_from_facts(row, item.ticket.description)
        assert ticket_document(rebuilt) == ticket_document(item)
        assert dataclasses.asdict(ticket_document(rebuilt, allow_pii=True)) == dataclasses.asdict(
            ticket_document(item, allow_pii=True)
        )


def test_flattened_ticket_is_kept_per_object_read_only_and_masked_from_the_plain_one() -> None:
    import dataclasses

    import pytest

    from models import codecs
    from models.codecs import ticket_fields
    from tests.sinks.test_sinks_pure import make_enriched

    item = make_enriched(ticket_id=11, version=500)
    item = dataclasses.replace(
        item, ticket=dataclasses.replace(item.ticket, description="write to ann@example.com")
    )
    plain, masked = ticket_fields(item, allow_pii=True), ticket_fields(item)
    assert ticket_fields(item, allow_pii=True) is plain and ticket_fields(item) is masked
    assert plain["description"] == "write to ann@example.com"
    assert "ann@example.com" not in masked["description"]
    assert {k: v for k, v in masked.items() if k not in ("subject", "description")} == {
        k: v for k, v in plain.items() if k not in ("subject", "description")
    }
    with pytest.raises(TypeError):
        plain["priority"] = "low"  # type: ignore[index]
    # An equal ticket that is another object is flattened on its own, to the same fields.
    twin = dataclasses.replace(item)
    assert ticket_fields(twin, allow_pii=True) is not plain
    assert dict(ticket_fields(twin, allow_pii=True)) == dict(plain)
    # The memo is bounded.
    for n in range(codecs._FIELDS_KEPT + 10):
        ticket_fields(make_enriched(ticket_id=1000 + n, version=1))
    assert len(codecs._fields_memo) <= codecs._FIELDS_KEPT
