"""``evolve``: the hot path's copy-with-changes of plain records."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from models.helpdesk import EnrichedTicket, Ticket, TimestampRange, evolve
from models.routing import RoutingRequest

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


def _enriched() -> EnrichedTicket:
    ticket = Ticket(
        1, 2, "Refund", "Please refund order 7", "email", "new", None, None, None, None, T0,
        None, None, None, None,
    )  # fmt: skip
    return EnrichedTicket(
        ticket, "c", T0, "gold", "en", "en", 1.0, "high", ("keyword refund",), "billing",
        "billing", T0, kb_suggestions=((3, "Refunds", 0.9),),
    )  # fmt: skip


def test_evolve_equals_replace_and_leaves_the_original_alone() -> None:
    et = _enriched()
    changes = {"priority": "low", "duplicates": ((9, 0.8),), "queue": "tech"}
    got = evolve(et, **changes)
    assert got == replace(et, **changes)
    assert type(got) is EnrichedTicket and got is not et
    assert (et.priority, et.duplicates, et.queue) == ("high", (), "billing")
    request = RoutingRequest.from_enriched(et)
    assert evolve(request, sla_deadline=T0) == replace(request, sla_deadline=T0)
    assert hash(evolve(et)) == hash(et)


def test_evolve_refuses_unknown_fields_and_records_with_post_init() -> None:
    with pytest.raises(TypeError, match="no field colour"):
        evolve(_enriched(), colour="red")
    with pytest.raises(TypeError, match="__post_init__"):
        evolve(TimestampRange(), earliest=T0)
