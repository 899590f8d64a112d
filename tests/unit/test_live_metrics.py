"""Live metrics: minute windows from ticket changes and hourly volume anomalies."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np

from models.anomaly import AnomalyAlert
from models.helpdesk import EnrichedTicket, Ticket
from models.live_metrics import LiveMetrics
from models.windows import WindowResult

START = datetime(2026, 2, 2, 0, 0, tzinfo=UTC)  # a Monday


def created(tid: int, at: datetime, *, category: str = "billing", channel: str = "email",
            customer: int = 1) -> EnrichedTicket:  # fmt: skip
    t = Ticket(id=tid, customer_id=customer, subject="s", description="", channel=channel,
               status="new", priority=None, category=None, intent=None,
               assigned_agent_id=None, created_at=at, updated_at=at, first_reply_at=None,
               solved_at=None, csat=None, version=tid)  # fmt: skip
    return EnrichedTicket(ticket=t, op="c", committed_at=at, customer_tier="standard",
                          customer_language="en", language="en", language_confidence=1.0,
                          priority="normal", priority_reasons=(), category=category,
                          queue=category, enriched_at=at)  # fmt: skip


def test_windows_count_created_and_solved_per_dimension() -> None:
    lm = LiveMetrics()
    a = created(1, START + timedelta(seconds=5))
    b = created(2, START + timedelta(seconds=20), category="shipping", channel="chat")
    lm.on_ticket(a)
    lm.on_ticket(b)
    solved = replace(a, op="u", previous_status="new",
                     ticket=replace(a.ticket, status="solved",
                                    solved_at=START + timedelta(seconds=50)),
                     committed_at=START + timedelta(seconds=50))  # fmt: skip
    lm.on_ticket(solved)
    results = {r.dimension: r for r in lm.finish() if isinstance(r, WindowResult)}
    assert results["all"].counts["created"] == 2 and results["all"].counts["solved"] == 1
    assert results["all"].resolution_p50 == 45.0
    assert results["category=shipping"].counts["created"] == 1
    assert results["channel=chat"].counts["created"] == 1


def test_volume_spike_after_warm_up_raises_an_alert_naming_the_channel() -> None:
    lm = LiveMetrics()
    rng = np.random.default_rng(5)
    tid = 0
    alerts: list[AnomalyAlert] = []
    hours = 21 * 24
    for h in range(hours + 3):
        hour = START + timedelta(hours=h)
        daytime = 9 <= hour.hour < 17 and hour.weekday() < 5
        n = int(rng.poisson(6 if daytime else 1))
        spike = h == hours + 1 and hour.hour >= 0
        channel_counts = [("email", n)] + ([("chat", 40)] if spike else [])
        for channel, count in channel_counts:
            for i in range(count):
                tid += 1
                at = hour + timedelta(seconds=(i * 37) % 3600)
                out = lm.on_ticket(created(tid, at, channel=channel, customer=tid % 50))
                alerts += [x for x in out if isinstance(x, AnomalyAlert)]
    assert alerts, "the chat flood was not detected"
    assert all(a.start >= START + timedelta(hours=hours) for a in alerts)  # quiet rhythm
    top = alerts[0].drivers[0]
    assert (top.dimension, top.value) == ("channel", "chat")
    restored = pickle.loads(pickle.dumps(lm))
    assert restored.current_hour == lm.current_hour
