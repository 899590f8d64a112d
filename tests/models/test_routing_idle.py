"""Contact-centre routing: idle time, longest-idle ties and the direct outcome input."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

from models.affinity import AffinityModel, LearnedRanker
from models.helpdesk import Agent
from models.routing import (
    HandlingOutcome,
    LeastLoadedRanker,
    OracleRanker,
    QueueRouter,
    RoutingPolicy,
    RoutingRequest,
)

T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def agent(aid: int, *, status: str = "online") -> Agent:
    return Agent(aid, f"a{aid}", "calls", {"sales": 1.0}, ("en",), 1, status)


def call(tid: int, at: datetime, *, work_type: str = "sales") -> RoutingRequest:
    return RoutingRequest(
        ticket_id=tid,
        version=tid,
        queue="calls",
        op="c",
        status="new",
        assigned_agent_id=None,
        language="en",
        category=work_type,
        priority="normal",
        customer_tier="standard",
        created_at=at,
        committed_at=at,
    )


def router(*, longest_idle: bool, ranker=None) -> QueueRouter:  # type: ignore[no-untyped-def]
    r = QueueRouter(
        queue="calls",
        policy=RoutingPolicy(respect_shifts=False, prefer_longest_idle=longest_idle),
        ranker=ranker or LeastLoadedRanker(),
    )
    for i, aid in enumerate((1, 2, 3)):
        r.upsert_agent(agent(aid), version=aid, at=T0 + timedelta(minutes=i))
    return r


def finish(r: QueueRouter, tid: int, agent_id: int, at: datetime) -> None:
    r.complete(HandlingOutcome(tid, agent_id, "sales", 120.0, at))


def test_agents_are_idle_from_login_and_from_the_end_of_their_last_item() -> None:
    r = router(longest_idle=True)
    assert r.idle_since == {1: T0, 2: T0 + timedelta(minutes=1), 3: T0 + timedelta(minutes=2)}
    first = r.on_ticket(call(10, T0 + timedelta(minutes=5)), at=T0 + timedelta(minutes=5))[0]
    assert first.agent_id == 1 and any(reason.startswith("idle 300 s") for reason in first.reasons)
    done = T0 + timedelta(minutes=9)
    finish(r, 10, 1, done)
    assert r.load[1] == 0 and r.idle_since[1] == done and 10 not in r.assignments


def test_longest_idle_agent_wins_at_capacity_one() -> None:
    r = router(longest_idle=True)
    at = T0 + timedelta(minutes=5)
    # Agent 1 takes a call and finishes it at 09:06: agents 2 and 3 have been idle longer.
    r.on_ticket(call(10, at), at=at)
    finish(r, 10, 1, T0 + timedelta(minutes=6))
    order = []
    for i, minute in enumerate((7, 8, 9)):
        t = T0 + timedelta(minutes=minute)
        order.append(r.on_ticket(call(20 + i, t), at=t)[0].agent_id)
    assert order == [2, 3, 1]


def test_without_the_option_least_loaded_keeps_its_pecking_order() -> None:
    r = router(longest_idle=False)
    picks = []
    for i in range(3):
        t = T0 + timedelta(minutes=10 + i)
        picks.append(r.on_ticket(call(30 + i, t), at=t)[0].agent_id)
        finish(r, 30 + i, picks[-1], t + timedelta(seconds=30))
    assert picks == [1, 1, 1]  # every free agent has load 0: the lowest id always wins


def test_longest_idle_only_breaks_ties_of_the_ranker() -> None:
    # The oracle prefers agent 3; idle time must not override a real difference in score.
    oracle = OracleRanker({(1, "sales"): 300.0, (2, "sales"): 300.0, (3, "sales"): 100.0})
    r = router(longest_idle=True, ranker=oracle)
    at = T0 + timedelta(minutes=5)
    assert r.on_ticket(call(10, at), at=at)[0].agent_id == 3
    # Agents 1 and 2 tie; agent 1 has been idle longer, then works a call to 09:06.
    assert r.on_ticket(call(11, at), at=at)[0].agent_id == 1
    finish(r, 11, 1, T0 + timedelta(minutes=6))
    later = T0 + timedelta(minutes=7)
    assert r.on_ticket(call(12, later), at=later)[0].agent_id == 2


def test_completion_routes_the_held_call_and_teaches_the_ranker() -> None:
    ranker = LearnedRanker(AffinityModel(seed=1))
    r = QueueRouter(queue="calls", policy=RoutingPolicy(respect_shifts=False), ranker=ranker)
    r.upsert_agent(agent(1), version=1, at=T0)
    assert r.on_ticket(call(10, T0), at=T0)[0].agent_id == 1
    held = r.on_ticket(call(11, T0), at=T0)[0]
    assert held.status == "queued"
    out = r.complete(HandlingOutcome(10, 1, "sales", 240.0, T0 + timedelta(minutes=4)))
    assert [(d.ticket_id, d.status, d.agent_id) for d in out] == [
        (10, "released", 1),
        (11, "assigned", 1),
    ]
    assert out[0].reasons == ("work done by agent 1 in 240 s",)
    assert out[0].source_committed_at == T0 + timedelta(minutes=4)
    assert r.load[1] == 1 and ranker.model.n_outcomes == 1
    assert ranker.model.categories["sales"].seen == 1  # 240 s learned, not a lifecycle


def test_old_snapshots_without_idle_times_still_load() -> None:
    r = router(longest_idle=True)
    state = r.__getstate__() if hasattr(r, "__getstate__") else dict(r.__dict__)
    state = {k: v for k, v in dict(state).items() if k != "idle_since"}
    restored = QueueRouter.__new__(QueueRouter)
    restored.__setstate__(state)
    assert restored.idle_since == {}
    copy = pickle.loads(pickle.dumps(r))
    assert copy.idle_since == r.idle_since


def test_work_items_without_a_language_route_when_the_policy_does_not_require_one() -> None:
    from datetime import UTC, datetime

    from models.helpdesk import Agent
    from models.routing import QueueRouter, RoutingPolicy, RoutingRequest

    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    speaker = Agent(7, "a7", "calls", {"billing": 0.9}, ("de",), capacity=1, status="online")
    item = RoutingRequest.work_item(1, "billing", queue="calls", at=at, version=5)
    strict = QueueRouter("calls", RoutingPolicy())
    strict.upsert_agent(speaker, version=1, at=at)
    (held,) = strict.on_ticket(item, at=at)
    assert held.status == "queued"  # the helpdesk default: language is a hard filter
    relaxed = QueueRouter("calls", RoutingPolicy(require_language=False))
    relaxed.upsert_agent(speaker, version=1, at=at)
    (decision,) = relaxed.on_ticket(item, at=at)
    assert (decision.status, decision.agent_id) == ("assigned", 7)


def test_an_outcome_without_a_type_learns_the_routed_category() -> None:
    ranker = LearnedRanker(AffinityModel(seed=1))
    r = QueueRouter(queue="calls", policy=RoutingPolicy(respect_shifts=False), ranker=ranker)
    r.upsert_agent(agent(1), version=1, at=T0)
    r.on_ticket(call(10, T0), at=T0)
    r.complete(HandlingOutcome(10, 1, "", 90.0, T0 + timedelta(minutes=2)))
    assert ranker.model.categories["sales"].seen == 1
    # Unknown item and no type: nothing to learn, nothing released.
    assert r.complete(HandlingOutcome(99, 1, "", 90.0, T0 + timedelta(minutes=3))) == []
    assert ranker.model.n_outcomes == 1


def test_updates_after_the_outcome_do_not_book_the_agent_again() -> None:
    r = router(longest_idle=False)
    first = r.on_ticket(call(10, T0), at=T0)[0]
    r.complete(HandlingOutcome(10, first.agent_id, "sales", 60.0, T0 + timedelta(minutes=1)))
    later = T0 + timedelta(minutes=2)
    # The helpdesk writes the assignee back onto the still-open item: no new booking.
    update = RoutingRequest(
        **{
            **call(10, T0).__dict__,
            "version": 50,
            "status": "open",
            "assigned_agent_id": first.agent_id,
            "committed_at": later,
        }
    )
    assert r.on_ticket(update, at=later) == []
    assert r.load[first.agent_id] == 0
    # Handed to another agent: that is new work, booked and reported.
    other = 3 if first.agent_id != 3 else 2
    moved = RoutingRequest(**{**update.__dict__, "version": 51, "assigned_agent_id": other})
    [decision] = r.on_ticket(moved, at=later)
    assert (decision.status, decision.agent_id, r.load[other]) == ("assigned", other, 1)


def test_held_items_drain_when_a_language_is_not_required() -> None:
    policy = RoutingPolicy(respect_shifts=False, require_language=False)
    r = QueueRouter(queue="calls", policy=policy)
    r.upsert_agent(agent(1), version=1, at=T0)
    item = RoutingRequest.work_item(10, "sales", queue="calls", at=T0)
    assert r.on_ticket(item, at=T0)[0].status == "assigned"
    held = RoutingRequest.work_item(11, "sales", queue="calls", at=T0, version=2)
    assert r.on_ticket(held, at=T0)[0].status == "queued"
    out = r.complete(HandlingOutcome(10, 1, "sales", 30.0, T0 + timedelta(seconds=30)))
    assert [(d.ticket_id, d.status) for d in out] == [(10, "released"), (11, "assigned")]


def test_held_tickets_go_to_an_agent_whose_shift_started_before_the_next_event() -> None:
    r = QueueRouter(queue="calls")  # shifts respected (the helpdesk default)
    day = Agent(
        1, "day", "calls", {"sales": 1.0}, ("en",), 2, "online", shift_start=9, shift_end=17
    )
    r.upsert_agent(day, version=1, at=T0)
    night = T0 + timedelta(hours=10)  # 19:00: nobody on shift
    assert r.on_ticket(call(10, night), at=night)[0].status == "queued"
    assert r.shift_check == T0 + timedelta(days=1)  # 09:00 next morning
    # The next event of the queue comes at 09:30: the held ticket is routed as of 09:00,
    # before the new one, which then queues behind it for the agent's second slot.
    morning = T0 + timedelta(days=1, minutes=30)
    out = r.on_ticket(call(11, morning), at=morning)
    assert [(d.ticket_id, d.status, d.agent_id) for d in out] == [
        (10, "assigned", 1),
        (11, "assigned", 1),
    ]
    assert r.shift_check is None


def test_shift_start_catch_up_replays_identically() -> None:
    def run() -> list[tuple[int, str, int | None]]:
        r = QueueRouter(queue="calls")
        for aid, start in ((1, 9), (2, 11)):
            a = Agent(
                aid,
                f"a{aid}",
                "calls",
                {"sales": 1.0},
                ("en",),
                1,
                "online",
                shift_start=start,
                shift_end=start + 4,
            )
            r.upsert_agent(a, version=aid, at=T0 - timedelta(hours=2))
        out = []
        for i, minutes in enumerate((-90, -60, -30, 150)):
            at = T0 + timedelta(minutes=minutes)
            out += r.on_ticket(call(20 + i, at), at=at)
        return [(d.ticket_id, d.status, d.agent_id) for d in out]

    first = run()
    assert first == run()
    assigned = [d for d in first if d[1] == "assigned"]
    assert [d[2] for d in assigned] == [1, 2]  # 09:00 then 11:00, oldest held first
    assert [d[0] for d in assigned] == [20, 21]


def test_a_pool_router_counts_one_load_per_agent_across_its_queues() -> None:
    r = QueueRouter(queue="front", policy=RoutingPolicy(respect_shifts=False))
    both = Agent(1, "both", "sales", {"sales": 1.0}, ("en",), 1, "online", queues=("support",))
    support = Agent(2, "support", "support", {"sales": 1.0}, ("en",), 1, "online")
    r.upsert_agent(both, version=1, at=T0)
    r.upsert_agent(support, version=2, at=T0)

    def item(tid: int, queue: str) -> RoutingRequest:
        return RoutingRequest(**{**call(tid, T0).__dict__, "queue": queue})

    [first] = r.on_ticket(item(10, "sales"), at=T0)
    assert (first.queue, first.agent_id) == ("sales", 1)  # only agent 1 serves sales
    [second] = r.on_ticket(item(11, "support"), at=T0)
    assert (second.queue, second.agent_id) == ("support", 2)  # agent 1 is busy in sales
    [held] = r.on_ticket(item(12, "sales"), at=T0)
    assert held.status == "queued" and "1 does not serve sales" in held.reasons
    out = r.complete(HandlingOutcome(11, 2, "sales", 60.0, T0 + timedelta(minutes=1)))
    # Agent 2 is free but does not serve sales: the sales item keeps waiting for agent 1.
    assert [(d.ticket_id, d.status) for d in out] == [(11, "released")]
    out = r.complete(HandlingOutcome(10, 1, "sales", 60.0, T0 + timedelta(minutes=2)))
    assert [(d.ticket_id, d.status, d.agent_id) for d in out] == [
        (10, "released", 1),
        (12, "assigned", 1),
    ]


def test_agents_read_their_extra_queues_from_the_row() -> None:
    row = {"id": 3, "name": "c", "team": "sales", "queues": ["support", "vip"]}
    assert Agent.from_row(row).queues == ("support", "vip")
    assert Agent.from_row({**row, "queues": "{support,vip}"}).serves("vip")
    assert Agent.from_row({**row, "queues": None}).queues == ()
    assert not Agent.from_row({**row, "queues": []}).serves("support")
