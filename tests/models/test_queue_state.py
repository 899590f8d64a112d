"""A queue's state: SLA clocks drive deadlines, routing, breach events and risk scores."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from models.affinity import ExpectedTimeRanker, HandlingTimeModel
from models.helpdesk import Agent, EnrichedTicket, RoutingDecision, Ticket, WorkOutcome
from models.queue_state import QueueState
from models.signals import BreachRiskScore
from models.sla import SlaEvent, TicketComment

T0 = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)  # a Tuesday afternoon (US business hours)


def agent(aid: int) -> Agent:
    return Agent(
        id=aid,
        name="a",
        team="billing",
        skills={"billing": 0.9},
        languages=("en",),
        capacity=3,
        status="online",
    )


def ticket(
    tid: int,
    *,
    status: str = "new",
    version: int = 1,
    priority: str = "urgent",
    at: datetime = T0,
    op: str = "c",
) -> EnrichedTicket:
    t = Ticket(
        id=tid,
        customer_id=1,
        subject="s",
        description="d",
        channel="email",
        status=status,
        priority=None,
        category=None,
        intent=None,
        assigned_agent_id=None,
        created_at=T0,
        updated_at=at,
        first_reply_at=None,
        solved_at=None,
        csat=None,
        version=version,
    )
    return EnrichedTicket(
        ticket=t,
        op=op,
        committed_at=at,
        customer_tier="standard",
        customer_language="en",
        language="en",
        language_confidence=1.0,
        priority=priority,
        priority_reasons=(),
        category="billing",
        queue="billing",
        enriched_at=at,
    )


def of(kind: type, items: list) -> list:  # type: ignore[type-arg]
    return [x for x in items if isinstance(x, kind)]


def test_new_ticket_starts_clocks_and_decision_carries_the_sla_deadline() -> None:
    q = QueueState(queue="billing")
    q.on_agent(agent(1), version=1, at=T0)
    out = q.on_ticket(ticket(10), now=T0)
    applied = [e for e in of(SlaEvent, out) if e.kind == "apply"]
    assert {e.metric for e in applied} >= {"first_reply", "resolution"}
    decision = of(RoutingDecision, out)[0]
    first_reply = next(e for e in applied if e.metric == "first_reply")
    assert decision.sla_deadline == first_reply.deadline == T0 + timedelta(hours=1)  # urgent 24x7
    assert of(BreachRiskScore, out)[0].risk < 0.5


def test_deadline_passes_without_events_and_tick_breaches_and_raises_risk() -> None:
    q = QueueState(queue="billing")
    q.on_agent(agent(1), version=1, at=T0)
    q.on_ticket(ticket(10), now=T0)
    wake = q.next_wakeup()
    assert wake is not None and wake <= T0 + timedelta(hours=1)
    later = T0 + timedelta(hours=1, minutes=5)
    out = q.tick(later)
    breaches = [e for e in of(SlaEvent, out) if e.kind == "breach"]
    assert [e.metric for e in breaches] == ["first_reply"]
    assert of(BreachRiskScore, out)[0].risk == 1.0
    # The breach is the outcome: the opening snapshot is learned now, not at closing.
    assert q.risk.n_seen == 1 and [label for _, label in q.risk.recent] == [True]
    q.on_ticket(ticket(10, status="solved", version=2, op="u", at=later), now=later)
    assert q.risk.n_seen == 1  # learned once


def test_agent_reply_fulfils_first_reply_and_solve_teaches_the_risk_model() -> None:
    q = QueueState(queue="billing")
    q.on_agent(agent(1), version=1, at=T0)
    q.on_ticket(ticket(10), now=T0)
    out = q.on_comment(TicketComment(10, T0 + timedelta(minutes=20), "agent"))
    assert any(
        e.metric == "first_reply" and e.kind == "fulfill" and not e.breached
        for e in of(SlaEvent, out)
    )
    q.on_ticket(
        ticket(10, status="solved", version=2, op="u", at=T0 + timedelta(hours=2)),
        now=T0 + timedelta(hours=2),
    )
    # The snapshot scored at opening is learned, with its outcome, when the ticket solves.
    assert q.risk.n_seen == 1 and 10 not in q.risk_context
    assert [label for _, label in q.risk.recent] == [False]


def test_state_pickles_and_pending_pauses_clock_and_load() -> None:
    q = QueueState(queue="billing")
    q.on_agent(agent(1), version=1, at=T0)
    q.on_ticket(ticket(10, priority="normal"), now=T0)
    assert q.router.load[1] == 1
    pending = replace(
        ticket(10, status="pending", version=2, op="u", priority="normal"),
        committed_at=T0 + timedelta(minutes=5),
    )
    out = q.on_ticket(pending, now=T0 + timedelta(minutes=5))
    assert any(e.kind == "pause" for e in of(SlaEvent, out))
    assert q.router.load[1] == 0 and not q.sla.clock_running(10)
    restored = pickle.loads(pickle.dumps(q))
    assert restored.router.load == q.router.load and len(restored.sla) == 1


def test_tick_samples_agent_load_once_a_minute_with_burnout_risk() -> None:
    from models.burnout import WorkloadScore

    q = QueueState(queue="billing")
    q.on_agent(agent(1), version=1, at=T0)
    angry = replace(ticket(10, priority="normal"), sentiment_label="negative", sentiment=-0.8)
    q.on_ticket(angry, now=T0)
    first = [x for x in q.tick(T0 + timedelta(seconds=10)) if isinstance(x, WorkloadScore)]
    assert [(w.agent_id, w.assigned, w.capacity) for w in first] == [(1, 1, 3)]
    assert first[0].risk > 0 and any("negative" in r for r in first[0].reasons)
    # Within the same minute nothing is sampled again.
    again = q.tick(T0 + timedelta(seconds=40))
    assert not [x for x in again if isinstance(x, WorkloadScore)]


def outcome(tid: int | None, seconds: float = 120.0, work_type: str = "") -> WorkOutcome:
    return WorkOutcome(tid, 1, "billing", work_type, seconds, T0)


def test_an_outcome_that_overtakes_its_ticket_completes_it_once_routed() -> None:
    q = QueueState(queue="billing", ranker=ExpectedTimeRanker(HandlingTimeModel(seed=1)))
    q.on_agent(agent(1), version=1, at=T0)
    at = T0 + timedelta(minutes=5)
    assert q.on_outcome(outcome(7), version=9, at=at) == []  # the ticket is not here yet
    out = of(RoutingDecision, q.on_ticket(ticket(7, version=8, at=at), now=at))
    assert [(d.status, d.agent_id) for d in out] == [("assigned", 1), ("released", 1)]
    assert out[1].version == 9 and q.router.load[1] == 0
    # The same outcome again (a replayed row) teaches nothing twice.
    learned = q.router.ranker.model.n_outcomes  # type: ignore[attr-defined]
    assert q.on_outcome(outcome(7), version=10, at=at) == []
    assert q.router.ranker.model.n_outcomes == learned == 1  # type: ignore[attr-defined]
    # History without an item only teaches.
    assert q.on_outcome(outcome(None, 60.0, "billing"), version=11, at=at) == []
    assert q.router.ranker.model.n_outcomes == 2  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(q)).early_outcomes == {}


def test_queue_states_saved_before_outcomes_existed_still_load() -> None:
    q = QueueState(queue="billing")
    state = {k: v for k, v in q.__dict__.items() if k != "early_outcomes"}
    restored = QueueState.__new__(QueueState)
    restored.__setstate__(state)
    assert restored.on_outcome(outcome(3), version=1, at=T0) == []
    assert 3 in restored.early_outcomes
