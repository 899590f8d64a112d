"""The triage dataflow from raw Debezium records to decisions, on one and two workers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from connectors.debezium import encode_envelope, encode_key
from models.events import DeadLetter, RawChange, SourcePosition
from models.helpdesk import EnrichedTicket, RoutingDecision
from models.signals import BreachRiskScore
from models.sla import SlaEvent
from models.windows import WindowResult
from pipelines.flow import build_flow
from pipelines.settings import PipelineSettings

TS = 1_772_442_000_000  # 2026-03-02 09:00 UTC, a Monday morning


class Feed:
    """Builds raw CDC records with increasing LSNs."""

    def __init__(self) -> None:
        self.lsn = 1000
        self.records: list[RawChange] = []

    def add(
        self,
        table: str,
        op: str,
        after: dict[str, Any] | None,
        before: dict[str, Any] | None = None,
    ) -> None:
        self.lsn += 10
        row = after or before or {}
        self.records.append(
            RawChange(
                topic=f"triage.public.{table}",
                key=encode_key({"id": row["id"]}, table=table),
                value=encode_envelope(
                    table=table,
                    op=op,
                    lsn=self.lsn,
                    ts_ms=TS + self.lsn,
                    before=before,
                    after=after,
                ),
                position=SourcePosition(lsn=self.lsn),
            )
        )


def agent_row(aid: int, team: str = "billing", capacity: int = 1) -> dict[str, Any]:
    skills = json.dumps({"billing": 0.9, "shipping": 0.8})
    return {
        "id": aid,
        "name": f"A{aid}",
        "email": "a@x",
        "team": team,
        "skills": skills,
        "languages": ["en"],
        "capacity": capacity,
        "status": "online",
        "shift_start": 0,
        "shift_end": 24,
    }


def ticket_row(tid: int, status: str = "new", **extra: Any) -> dict[str, Any]:
    row = {
        "id": tid,
        "customer_id": 1,
        "subject": f"Refund for invoice {tid}",
        "description": "I was charged twice on my credit card",
        "channel": "email",
        "status": status,
        "created_at": "2026-03-02T09:00:00Z",
    }
    row.update(extra)
    return row


@pytest.fixture
def feed() -> Feed:
    f = Feed()
    f.add("agents", "r", agent_row(1))
    f.add("agents", "r", agent_row(2))
    f.add(
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
    body = "If your credit card was charged twice, request a refund from the billing page."
    f.add(
        "kb_articles",
        "r",
        {
            "id": 7,
            "title": "How to get a refund for a double charge",
            "body": body,
            "language": "en",
            "published": True,
        },
    )
    for tid in (10, 11, 12):
        f.add("tickets", "c", ticket_row(tid))
    f.records.append(
        RawChange("triage.public.tickets", b'{"id": 13}', b"{not json", SourcePosition(lsn=99_999))
    )
    f.add(
        "ticket_events",
        "c",
        {
            "id": 1,
            "ticket_id": 11,
            "kind": "comment",
            "author_type": "agent",
            "body": "See KB-7",
            "public": True,
            "created_at": "2026-03-02T09:00:30Z",
        },
    )
    f.add("tickets", "u", ticket_row(10, "solved"), before=ticket_row(10))
    return f


def run_flow(
    records: list[RawChange], workers: int, settings: PipelineSettings | None = None
) -> tuple[list[Any], list[RoutingDecision]]:
    analytics: list[Any] = []
    live: list[Any] = []
    flow = build_flow(
        settings or PipelineSettings(),
        source=TestingSource(records),
        analytics_sink=TestingSink(analytics),
        decision_sink=TestingSink(live),
    )
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return analytics, [x for x in live if isinstance(x, RoutingDecision)]


def test_tickets_are_enriched_routed_released_and_rerouted(feed: Feed) -> None:
    analytics, decisions = run_flow(feed.records, workers=1)
    by_ticket = {(d.ticket_id, d.status): d for d in decisions}
    assert by_ticket[(10, "assigned")].agent_id in {1, 2}
    assert by_ticket[(11, "assigned")].agent_id in {1, 2}
    assert by_ticket[(12, "queued")].agent_id is None  # both agents at capacity 1
    assert by_ticket[(10, "released")].agent_id == by_ticket[(10, "assigned")].agent_id
    # Ticket 10's release frees its agent for the held ticket 12.
    assert by_ticket[(12, "assigned")].agent_id == by_ticket[(10, "assigned")].agent_id
    assert by_ticket[(12, "assigned")].version > by_ticket[(12, "queued")].version

    enriched = [x for x in analytics if isinstance(x, EnrichedTicket)]
    assert {e.ticket_id for e in enriched} == {10, 11, 12}
    assert all(e.customer_tier == "premium" and e.category == "billing" for e in enriched)
    assert all(e.kb_suggestions and e.kb_suggestions[0][0] == 7 for e in enriched)
    assert all(e.intent for e in enriched)

    sla = [x for x in analytics if isinstance(x, SlaEvent)]
    applied = {e.ticket_id for e in sla if e.kind == "apply" and e.metric == "first_reply"}
    assert applied == {10, 11, 12}
    # The agent's reply on ticket 11 fulfils its first-reply clock.
    assert any(e.ticket_id == 11 and e.metric == "first_reply" and e.kind == "fulfill" for e in sla)
    assert any(isinstance(x, BreachRiskScore) for x in analytics)
    # Minute windows close at the end of the input: three tickets created.
    windows = [x for x in analytics if isinstance(x, WindowResult) and x.dimension == "all"]
    assert sum(w.counts["created"] for w in windows) == 3
    assert sum(w.counts["solved"] for w in windows) == 1
    dead = [x for x in analytics if isinstance(x, DeadLetter)]
    assert len(dead) == 1 and dead[0].stage == "decode_cdc" and dead[0].payload == "{not json"
    assert sum(isinstance(x, RoutingDecision) for x in analytics) == len(decisions)


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_keyed_by_dimension_family_give_the_windows_of_one_key(
    feed: Feed, workers: int
) -> None:
    def windows(analytics: list[Any]) -> list[tuple[Any, ...]]:
        # Breach counts are left out: the queues find breaches on the wall clock, and in
        # this feed of past times every open clock is overdue, so how many breach before
        # their reply arrives depends on when each queue's timer fires against its
        # items, which differs from run to run with two workers (seen under load). That
        # the family keys count breaches as one key does is checked on a fixed clock in
        # tests/models/test_live_metrics.py.
        return sorted(
            (
                w.start,
                w.dimension,
                tuple(sorted((k, n) for k, n in w.counts.items() if k != "breach")),
                w.backlog,
            )
            for w in analytics
            if isinstance(w, WindowResult)
        )

    one_key, _ = run_flow(feed.records, workers=1)
    by_family, _ = run_flow(
        feed.records, workers=workers, settings=PipelineSettings(metrics_by_family=True)
    )
    assert {d.split("=")[0] for _, d, _, _ in windows(one_key)} == {
        "all",
        "category",
        "priority",
        "channel",
    }
    assert windows(by_family) == windows(one_key)


def test_two_workers_end_in_the_same_state_as_one(feed: Feed) -> None:
    """Tickets take different workers, so a queue may see two tickets' changes in either
    order: ticket 12 is held and then assigned, or assigned at once when ticket 10's
    release came first, and 10 and 11 may take either agent. The outcome is the same."""

    def final(ds: list[RoutingDecision]) -> dict[int, tuple[str, int | None]]:
        last: dict[int, RoutingDecision] = {}
        for d in sorted(ds, key=lambda d: d.version):
            last[d.ticket_id] = d
        return {t: (d.status, d.agent_id) for t, d in last.items()}

    analytics_one, one = run_flow(feed.records, workers=1)
    analytics_two, two = run_flow(feed.records, workers=2)
    for run in (final(one), final(two)):
        # Which of the two agents took 10 and 11 depends on arrival order; the outcome
        # does not: 10 released, 11 and 12 assigned, 12 to the agent 10 freed.
        assert {t: status for t, (status, _) in run.items()} == {
            10: "released",
            11: "assigned",
            12: "assigned",
        }
        assert run[12][1] == run[10][1] != run[11][1]

    def facts(items: list[Any]) -> list[tuple[int, str, str, str, str]]:
        tickets = [x for x in items if isinstance(x, EnrichedTicket)]
        return sorted(
            (e.ticket_id, e.ticket.status, e.category, e.queue, e.priority) for e in tickets
        )

    assert facts(analytics_one) == facts(analytics_two)


def test_a_ticket_before_its_customer_waits_and_gets_the_real_tier() -> None:
    f = Feed()
    f.add("agents", "r", agent_row(1))
    f.add("tickets", "c", ticket_row(20))  # customer 1 is not known yet
    f.add("tickets", "c", ticket_row(21, customer_id=9))  # customer 9 never arrives
    f.add(
        "customers",
        "r",
        {
            "id": 1,
            "name": "Acme",
            "email": "c@x",
            "tier": "enterprise",
            "language": "en",
            "region": "us",
        },
    )
    analytics, decisions = run_flow(f.records, workers=1)
    enriched = {x.ticket_id: x for x in analytics if isinstance(x, EnrichedTicket)}
    assert enriched[20].customer_tier == "enterprise"
    assert "customer unknown" not in enriched[20].priority_reasons
    assert {d.ticket_id for d in decisions} == {20}
    dead = [x for x in analytics if isinstance(x, DeadLetter)]
    assert [(d.stage, "customer" in d.reason) for d in dead] == [("enrich_ticket", True)]
    assert json.loads(dead[0].key or "{}") == {"id": 21}


def test_a_routing_pool_books_an_agent_once_across_the_queues_it_serves() -> None:
    f = Feed()
    f.add("agents", "r", {**agent_row(1), "queues": ["logistics"]})  # billing, also logistics
    f.add("agents", "r", agent_row(2, team="logistics"))
    f.add(
        "customers",
        "r",
        {"id": 1, "name": "Acme", "email": "c@x", "tier": "standard", "language": "en"},
    )
    parcel = {"subject": "My parcel never arrived", "description": "The courier lost it"}
    f.add("tickets", "c", ticket_row(10))  # billing
    f.add("tickets", "c", ticket_row(20, **parcel))  # logistics
    f.add("tickets", "c", ticket_row(21, **parcel))  # logistics: both agents busy
    f.add("tickets", "u", ticket_row(10, "solved"), before=ticket_row(10))
    live: list[Any] = []
    flow = build_flow(
        PipelineSettings(routing_pools={"billing": "front", "logistics": "front"}),
        source=TestingSource(f.records),
        analytics_sink=TestingSink([]),
        decision_sink=TestingSink(live),
    )
    run_main(flow)
    decisions = [x for x in live if isinstance(x, RoutingDecision)]
    history = [(d.ticket_id, d.queue, d.status, d.agent_id) for d in decisions]
    assert (10, "billing", "assigned", 1) in history
    assert (20, "logistics", "assigned", 2) in history
    assert (21, "logistics", "queued", None) in history
    # Agent 1 is free again once ticket 10 is solved, and serves logistics too.
    assert history[-1] == (21, "logistics", "assigned", 1)
    # Never two open tickets on one agent of capacity 1.
    open_load: dict[int, set[int]] = {}
    for tid, _, status, agent in history:
        for tickets in open_load.values():
            tickets.discard(tid)
        if status == "assigned" and agent is not None:
            open_load.setdefault(agent, set()).add(tid)
            assert len(open_load[agent]) == 1
