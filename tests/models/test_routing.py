"""Routing rules: eligibility, least-loaded choice, holding queue, release and replay."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from models.helpdesk import Agent, EnrichedTicket, Ticket
from models.routing import QueueRouter, RoutingPolicy, RoutingRequest

NOON = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


def agent(
    aid: int,
    *,
    skill: float = 0.8,
    capacity: int = 2,
    langs=("en",),
    status="online",
    shift=(0, 24),
    version: int = 1,
) -> Agent:
    return Agent(
        id=aid,
        name=f"a{aid}",
        team="billing",
        skills={"billing": skill},
        languages=tuple(langs),
        capacity=capacity,
        status=status,
        shift_start=shift[0],
        shift_end=shift[1],
        version=version,
    )


def ticket(
    tid: int,
    *,
    version: int,
    status: str = "new",
    op: str = "c",
    language: str = "en",
    priority: str = "normal",
    assigned: int | None = None,
) -> RoutingRequest:
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
        assigned_agent_id=assigned,
        created_at=NOON,
        updated_at=NOON,
        first_reply_at=None,
        solved_at=None,
        csat=None,
        version=version,
    )
    return RoutingRequest.from_enriched(
        EnrichedTicket(
            ticket=t,
            op=op,
            committed_at=NOON,
            customer_tier="standard",
            customer_language="en",
            language=language,
            language_confidence=0.99,
            priority=priority,
            priority_reasons=("x",),
            category="billing",
            queue="billing",
            enriched_at=NOON,
        )
    )


@pytest.fixture
def router() -> QueueRouter:
    r = QueueRouter(queue="billing", policy=RoutingPolicy())
    r.upsert_agent(agent(1, capacity=2), version=1, at=NOON)
    r.upsert_agent(agent(2, capacity=2, skill=0.9), version=2, at=NOON)
    return r


def test_least_loaded_then_skill_breaks_ties(router: QueueRouter) -> None:
    first = router.on_ticket(ticket(10, version=100), at=NOON)[0]
    assert first.status == "assigned" and first.agent_id == 2  # tie on load, higher skill
    second = router.on_ticket(ticket(11, version=101), at=NOON)[0]
    assert second.agent_id == 1  # agent 2 now carries one ticket
    assert router.load == {1: 1, 2: 1}
    assert any("least loaded" in r for r in second.reasons)


def test_nobody_eligible_goes_to_holding_with_reasons(router: QueueRouter) -> None:
    decision = router.on_ticket(ticket(10, version=100, language="de"), at=NOON)[0]
    assert decision.status == "queued" and decision.agent_id is None
    assert "no eligible agent" in decision.reasons
    assert any("does not speak de" in r for r in decision.reasons)
    assert 10 in router.holding


def test_capacity_frees_and_holding_ticket_is_routed(router: QueueRouter) -> None:
    for i in range(4):
        router.on_ticket(ticket(10 + i, version=100 + i), at=NOON)
    held = router.on_ticket(ticket(20, version=200, priority="urgent"), at=NOON)[0]
    assert held.status == "queued"
    assert all(router.load[a] == 2 for a in (1, 2))

    out = router.on_ticket(ticket(10, version=300, status="solved", op="u"), at=NOON)
    assert [d.status for d in out] == ["released", "assigned"]
    assert out[1].ticket_id == 20 and out[1].version > held.version
    assert sum(router.load.values()) == 4


def test_offline_and_off_shift_agents_are_not_eligible() -> None:
    r = QueueRouter(queue="billing")
    r.upsert_agent(agent(1, status="away"), version=1, at=NOON)
    r.upsert_agent(agent(2, shift=(22, 6)), version=2, at=NOON)  # night shift, wraps midnight
    assert r.on_ticket(ticket(1, version=10), at=NOON)[0].status == "queued"
    night = datetime(2026, 3, 3, 23, 0, tzinfo=UTC)
    assert r.on_ticket(ticket(2, version=11), at=night)[0].agent_id == 2


def test_manual_assignment_is_honoured_and_counted(router: QueueRouter) -> None:
    d = router.on_ticket(ticket(10, version=100, assigned=1, status="open"), at=NOON)[0]
    assert d.agent_id == 1 and d.reasons == ("assigned in helpdesk",)
    assert router.load[1] == 1
    # The assignment write-back of our own decision produces no second decision.
    assert router.on_ticket(ticket(10, version=101, assigned=1, status="open"), at=NOON) == []


def test_released_ticket_leaves_state(router: QueueRouter) -> None:
    router.on_ticket(ticket(10, version=100), at=NOON)
    router.on_ticket(ticket(10, version=101, status="closed", op="u"), at=NOON)
    assert router.assignments == {} and router.last_version == {}
    assert router.on_ticket(ticket(10, version=102, status="closed", op="u"), at=NOON) == []


def test_older_agent_version_is_ignored(router: QueueRouter) -> None:
    router.upsert_agent(agent(1, capacity=9, version=5), version=5, at=NOON)
    router.upsert_agent(agent(1, capacity=1, version=3), version=3, at=NOON)
    assert router.agents[1].capacity == 9


class _RecordingRanker:
    """A ranker that prefers the highest agent id and records what it learns."""

    version = "recording-1"

    def __init__(self) -> None:
        self.outcomes: list = []

    def rank(self, request, candidates, load, *, at):  # type: ignore[no-untyped-def]
        from models.routing import RankedAgent

        ordered = sorted(candidates, key=lambda a: -a.id)
        return [RankedAgent(a, float(a.id), 0.5, ("highest id",)) for a in ordered]

    def learn(self, outcome) -> None:  # type: ignore[no-untyped-def]
        self.outcomes.append(outcome)


def test_pluggable_ranker_decides_and_learns_from_solve_and_reopen() -> None:
    ranker = _RecordingRanker()
    r = QueueRouter(queue="billing", ranker=ranker)
    r.upsert_agent(agent(1), version=1, at=NOON)
    r.upsert_agent(agent(2), version=2, at=NOON)
    d = r.on_ticket(ticket(10, version=100), at=NOON)[0]
    assert (d.agent_id, d.model_version, d.reasons[0]) == (2, "recording-1", "highest id")
    r.on_ticket(ticket(10, version=101, status="solved", op="u"), at=NOON)
    assert [(o.agent_id, o.reopened) for o in ranker.outcomes] == [(2, False)]
    r.on_ticket(ticket(10, version=102, status="open", op="u"), at=NOON)
    assert [(o.agent_id, o.reopened) for o in ranker.outcomes] == [(2, False), (2, True)]


def test_tickets_waiting_on_the_customer_do_not_count_toward_load(router: QueueRouter) -> None:
    first = router.on_ticket(ticket(10, version=100), at=NOON)[0]
    agent_id = first.agent_id
    assert agent_id is not None and router.load[agent_id] == 1
    router.on_ticket(ticket(10, version=101, status="pending", op="u"), at=NOON)
    assert router.load[agent_id] == 0
    router.on_ticket(ticket(10, version=102, status="open", op="u"), at=NOON)
    assert router.load[agent_id] == 1
    router.on_ticket(ticket(10, version=103, status="pending", op="u"), at=NOON)
    router.on_ticket(ticket(10, version=104, status="solved", op="u"), at=NOON)
    assert router.load[agent_id] == 0 and router.paused == set()
