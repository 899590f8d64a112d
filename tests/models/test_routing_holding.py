"""The holding list's drain: same decisions as sorting and checking the whole list at every
release (the straightforward rule it replaces), at a fraction of the cost."""

from __future__ import annotations

import pickle
import random
from dataclasses import replace
from datetime import timedelta

from models.priority import priority_rank
from models.routing import QueueRouter, RoutingDecision, RoutingPolicy, RoutingRequest
from tests.models.test_routing import NOON, agent, ticket

PRIORITIES = ("low", "normal", "high", "urgent")


class SortEveryTime(QueueRouter):
    """The reference: sort the whole holding list, check every held ticket."""

    def _drain_holding(self, *, trigger_version: int, at):  # type: ignore[no-untyped-def]
        out: list[RoutingDecision] = []
        order = sorted(
            self.holding.values(),
            key=lambda h: (priority_rank(h.ticket.priority), h.ticket.created_at),
        )
        for held in order:
            et = held.ticket
            if not self.eligible(et, at=at)[0]:
                continue
            self._unhold(et.ticket_id)
            version = max(trigger_version, self.last_version.get(et.ticket_id, 0) + 1)
            out.append(self._route(et, at=at, version=version))
        return out


def _request(rng: random.Random, tid: int, version: int) -> RoutingRequest:
    base = ticket(
        tid,
        version=version,
        language=rng.choice(("en", "en", "de")),
        priority=rng.choice(PRIORITIES),
    )
    # Few distinct creation times: ties must keep the order in which tickets were held.
    return replace(base, created_at=NOON + timedelta(minutes=rng.randrange(4)))


def _script(seed: int) -> list[tuple[str, RoutingRequest]]:
    rng = random.Random(seed)
    steps: list[tuple[str, RoutingRequest]] = []
    live: dict[int, RoutingRequest] = {}
    version = 1000
    for tid in range(1, 160):
        version += 1
        req = _request(rng, tid, version)
        live[tid] = req
        steps.append(("route", req))
        if rng.random() < 0.3 and live:  # a held or assigned ticket changes priority
            version += 1
            some = rng.choice(sorted(live))
            changed = replace(live[some], priority=rng.choice(PRIORITIES), version=version)
            live[some] = changed
            steps.append(("route", changed))
        if rng.random() < 0.45 and live:  # one is solved: capacity frees
            version += 1
            gone = live.pop(rng.choice(sorted(live)))
            steps.append(("route", replace(gone, status="solved", version=version)))
    return steps


def _play(router: QueueRouter, steps: list[tuple[str, RoutingRequest]]) -> list[tuple]:
    router.upsert_agent(agent(1, capacity=3), version=1, at=NOON)
    router.upsert_agent(agent(2, capacity=2, langs=("en", "de")), version=2, at=NOON)
    router.upsert_agent(agent(3, capacity=1, skill=0.2), version=3, at=NOON)  # never eligible
    seen = []
    for _, req in steps:
        for d in router.on_ticket(req, at=NOON):
            seen.append((d.ticket_id, d.status, d.agent_id, d.version))
    return seen


def test_drain_matches_sorting_the_whole_list_at_every_release() -> None:
    for seed in range(12):
        steps = _script(seed)
        fast = _play(QueueRouter(queue="billing", policy=RoutingPolicy()), steps)
        slow = _play(SortEveryTime(queue="billing", policy=RoutingPolicy()), steps)
        assert fast == slow, f"seed {seed}"
        assert any(status == "queued" for _, status, _, _ in fast)  # the list was used


def test_the_index_survives_a_snapshot_and_is_rebuilt_for_an_older_one() -> None:
    steps = _script(3)
    router = QueueRouter(queue="billing", policy=RoutingPolicy())
    _play(router, steps[:80])
    assert router.holding
    restored = pickle.loads(pickle.dumps(router))
    assert restored._held_order == router._held_order

    older = pickle.loads(pickle.dumps(router))
    for name in ("_held_order", "_held_keys", "_held_seq"):
        del older.__dict__[name]  # a snapshot from before the index existed
    rebuilt = pickle.loads(pickle.dumps(older))
    assert [k[3] for k in rebuilt._held_order] == [k[3] for k in router._held_order]

    def rest(r: QueueRouter) -> list[tuple]:
        return [
            (d.ticket_id, d.status, d.agent_id)
            for _, req in steps[80:]
            for d in r.on_ticket(req, at=NOON)
        ]

    assert rest(restored) == rest(rebuilt) == rest(router)


class CountingChecks(QueueRouter):
    checks = 0

    def _suits(self, agent, et):  # type: ignore[no-untyped-def]
        CountingChecks.checks += 1
        return super()._suits(agent, et)


def test_a_release_checks_one_ticket_per_group_not_the_whole_list() -> None:
    router = CountingChecks(queue="billing", policy=RoutingPolicy())
    router.upsert_agent(agent(1, capacity=1), version=1, at=NOON)
    # 500 German tickets nobody can take wait, then one English ticket behind agent 1's.
    for tid in range(1, 501):
        router.on_ticket(ticket(tid, version=tid, language="de", priority="urgent"), at=NOON)
    router.on_ticket(ticket(600, version=600), at=NOON)  # assigned to agent 1
    router.on_ticket(ticket(601, version=601), at=NOON)  # held: agent 1 is busy
    CountingChecks.checks = 0
    out = router.on_ticket(ticket(600, version=700, status="solved"), at=NOON)
    assert [(d.ticket_id, d.status) for d in out] == [(600, "released"), (601, "assigned")]
    assert CountingChecks.checks <= 4  # two groups, one free agent (the walk checked 501)
    # A held ticket that changes language moves group and is found there.
    router.on_ticket(ticket(602, version=701), at=NOON)  # held behind 601
    moved = replace(router.holding[7].ticket, language="en", version=702)
    router.on_ticket(moved, at=NOON)
    out = router.on_ticket(ticket(601, version=703, status="solved"), at=NOON)
    # Ticket 7 is urgent: it goes before the normal-priority ticket 602.
    assert [(d.ticket_id, d.status) for d in out] == [(601, "released"), (7, "assigned")]
    assert sorted(k for keys in router._held_groups.values() for k in keys) == sorted(
        router._held_order
    )
