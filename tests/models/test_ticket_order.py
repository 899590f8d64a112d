"""A ticket's comments and changes leave its text state in commit order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from models.enrichment import CustomerContext, TicketEnricher
from models.events import ChangeEvent, SourcePosition
from models.helpdesk import Customer
from models.intelligence import TextModels, TicketText, classify_ticket, hold_comment
from models.routing import RoutingPolicy
from models.sla import TicketComment

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOLD = timedelta(seconds=1)
POLICY = RoutingPolicy()
MODELS = TextModels(n_features=2**12)
ENRICHER = TicketEnricher(POLICY)
CUSTOMER = Customer(1, "Ann", "Acme", "standard", "en", "us")


def change(version: int, op: str = "u", status: str = "open") -> Any:
    row = {
        "id": 7,
        "customer_id": 1,
        "subject": "refund",
        "description": "charged twice",
        "channel": "email",
        "status": status,
        "created_at": "2026-03-02T09:00:00Z",
    }
    event = ChangeEvent(
        table="tickets",
        op=op,
        key={"id": 7},
        before=None,
        after=row,  # type: ignore[arg-type]
        committed_at=T0,
        version=version,
        position=SourcePosition(lsn=version),
    )
    return ENRICHER.enrich(CustomerContext(customer=CUSTOMER), event), event


def test_a_comment_that_overtook_an_earlier_change_is_released_before_it() -> None:
    et, created = change(10, op="c", status="new")
    state, first = classify_ticket(None, MODELS, POLICY, et, created)
    reply = TicketComment(7, T0 + timedelta(minutes=1), "agent")
    # The reply (version 30) arrives before the change committed before it (version 20).
    state, out = hold_comment(state, reply, "hi", version=30, now=T0, hold=HOLD)
    assert out == [] and state.held
    et, pending = change(20, status="pending")
    state, done = classify_ticket(state, MODELS, POLICY, et, pending)
    assert done.earlier == ()  # the reply is newer than this change: still waiting
    et, solved = change(40, status="open")
    state, done = classify_ticket(state, MODELS, POLICY, et, solved)
    assert done.earlier == ((first.ticket.queue, reply),)  # before version 40, after 20
    assert state.held == []


def test_a_held_comment_goes_out_when_its_wait_ends_or_the_input_ends() -> None:
    et, created = change(10, op="c", status="new")
    state, first = classify_ticket(None, MODELS, POLICY, et, created)
    reply = TicketComment(7, T0, "customer")
    state, _ = hold_comment(state, reply, "any news?", version=50, now=T0, hold=HOLD)
    assert state.next_wakeup() == T0 + HOLD
    assert state.tick(T0 + HOLD / 2) == []
    assert state.tick(T0 + HOLD) == [(first.ticket.queue, reply)]
    state, _ = hold_comment(state, reply, "again", version=60, now=T0, hold=HOLD)
    assert state.finish() == [(first.ticket.queue, reply)]


def test_a_comment_older_than_the_changes_seen_goes_at_once() -> None:
    et, created = change(10, op="c", status="new")
    state, first = classify_ticket(None, MODELS, POLICY, et, created)
    reply = TicketComment(7, T0, "agent")
    state, out = hold_comment(state, reply, "hi", version=5, now=T0, hold=HOLD)
    assert out == [(first.ticket.queue, reply)]
    # Without a hold, comments are never held.
    state, out = hold_comment(
        TicketText(queue="billing"), reply, "hi", version=99, now=T0, hold=timedelta(0)
    )
    assert out == [("billing", reply)]
