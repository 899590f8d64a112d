"""Live metrics: minute windows from ticket changes and hourly volume anomalies."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from evaluation.workload import rhythm_factor
from models.anomaly import AnomalyAlert
from models.helpdesk import EnrichedTicket, Ticket
from models.live_metrics import FAMILIES, LiveMetrics, LiveOutput
from models.sla import SlaEvent
from models.windows import WindowResult
from pipelines.flow import live_metrics_step

START = datetime(2026, 2, 2, 0, 0, tzinfo=UTC)  # a Monday


def created(
    tid: int,
    at: datetime,
    *,
    category: str = "billing",
    channel: str = "email",
    customer: int = 1,
    subject: str = "s",
) -> EnrichedTicket:
    t = Ticket(
        id=tid,
        customer_id=customer,
        subject=subject,
        description="",
        channel=channel,
        status="new",
        priority=None,
        category=None,
        intent=None,
        assigned_agent_id=None,
        created_at=at,
        updated_at=at,
        first_reply_at=None,
        solved_at=None,
        csat=None,
        version=tid,
    )
    return EnrichedTicket(
        ticket=t,
        op="c",
        committed_at=at,
        customer_tier="standard",
        customer_language="en",
        language="en",
        language_confidence=1.0,
        priority="normal",
        priority_reasons=(),
        category=category,
        queue=category,
        enriched_at=at,
    )


def test_windows_count_created_and_solved_per_dimension() -> None:
    lm = LiveMetrics()
    a = created(1, START + timedelta(seconds=5))
    b = created(2, START + timedelta(seconds=20), category="shipping", channel="chat")
    lm.on_ticket(a)
    lm.on_ticket(b)
    solved = replace(
        a,
        op="u",
        previous_status="new",
        ticket=replace(a.ticket, status="solved", solved_at=START + timedelta(seconds=50)),
        committed_at=START + timedelta(seconds=50),
    )
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


def test_volume_spike_names_the_words_its_tickets_share() -> None:
    lm = LiveMetrics()
    rng = np.random.default_rng(11)
    usual = ["Invoice question", "Password reset please", "Where is my parcel",
             "Refund for order", "Cannot login to account", "Change billing address"]  # fmt: skip
    tid = 0
    alerts: list[AnomalyAlert] = []
    hours = 21 * 24
    for h in range(hours + 3):
        hour = START + timedelta(hours=h)
        daytime = 9 <= hour.hour < 17 and hour.weekday() < 5
        subjects = [
            usual[int(rng.integers(len(usual)))] for _ in range(rng.poisson(6 if daytime else 1))
        ]
        if h == hours + 1:  # an outage: the same channel and customers, new words
            subjects += ["Checkout gateway timeout", "Gateway timeout at checkout again"] * 15
        for i, subject in enumerate(subjects):
            tid += 1
            at = hour + timedelta(seconds=(i * 37) % 3600)
            out = lm.on_ticket(created(tid, at, customer=tid % 50, subject=subject))
            alerts += [x for x in out if isinstance(x, AnomalyAlert)]
    assert alerts, "the outage was not detected"
    keywords = {d.value for a in alerts for d in a.drivers if d.dimension == "keyword"}
    assert {"gateway", "timeout", "checkout"} <= keywords
    assert not keywords & {"invoice", "password", "refund"}


def sla(
    tid: int, at: datetime, *, breached: bool, metric: str = "first_reply", kind: str | None = None
) -> SlaEvent:
    """A target decided at ``at``: a breach at its deadline or a fulfil in time."""
    kind = kind or ("breach" if breached else "fulfill")
    return SlaEvent(
        ticket_id=tid,
        metric=metric,
        kind=kind,
        at=at,  # type: ignore[arg-type]
        deadline=at if breached else None,
        policy="standard-normal",
        business_seconds_elapsed=3600.0,
        paused_seconds=0.0,
        breached=breached,
    )


QUEUES = {"billing": "payments", "shipping": "logistics"}
WEEK4_WEDNESDAY = 3 * 168 + 2 * 24  # hours from START to the fourth Wednesday, 00:00


def sla_weeks(
    weeks: int = 4,
    *,
    seed: int = 1,
    incident: tuple[int, int] | None = None,
    surge: tuple[int, int, float] | None = None,
    outputs: list[LiveOutput] | None = None,
    by_family: bool = False,
) -> tuple[list[AnomalyAlert], list[int]]:
    """Tickets (25 an hour on average, 60 % billing) whose SLA target is decided at once.

    The breach rate has an hour-of-week pattern: 5 % in weekday business hours, 25 % at
    night and on weekends (thin staffing). Within ``incident`` (hours from START)
    billing's first replies breach at 60 %; within ``surge`` every category's volume is
    multiplied. Returns the alerts and the breaches of each hour; ``outputs`` receives
    everything emitted. ``by_family``: one copy per dimension family, as the dataflow keys
    them, instead of one for all.
    """
    copies = [LiveMetrics(family=f) for f in FAMILIES] if by_family else [LiveMetrics()]
    rng = np.random.default_rng(seed)
    alerts: list[AnomalyAlert] = []
    breaches: list[int] = []
    tid = 0
    for h in range(weeks * 168 + 1):
        hour = START + timedelta(hours=h)
        staffed = hour.weekday() < 5 and 8 <= hour.hour < 18
        factor = surge[2] if surge and surge[0] <= h < surge[1] else 1.0
        slow = incident is not None and incident[0] <= h < incident[1]
        breaches.append(0)
        for category, share in (("billing", 0.6), ("shipping", 0.4)):
            for i in range(int(rng.poisson(25.0 * share * factor * rhythm_factor(hour)))):
                tid += 1
                at = hour + timedelta(seconds=int(rng.integers(3600)))
                metric = "first_reply" if rng.random() < 0.7 else "resolution"
                p = 0.05 if staffed else 0.25
                if slow and category == "billing" and metric == "first_reply":
                    p = 0.6
                breached = bool(rng.random() < p)
                breaches[-1] += breached
                ticket = replace(
                    created(tid, at, category=category, customer=tid % 40),
                    priority="high" if i % 3 == 0 else "normal",
                    queue=QUEUES[category],
                )
                event = sla(tid, at, breached=breached, metric=metric)
                out = [x for lm in copies for x in lm.on_ticket(ticket) + lm.on_sla(event)]
                alerts += [x for x in out if isinstance(x, AnomalyAlert)]
                if outputs is not None:
                    outputs += out
    return alerts, breaches


def breach_rate_alerts(alerts: list[AnomalyAlert]) -> list[AnomalyAlert]:
    return [a for a in alerts if a.series.startswith("sla_breach_rate:")]


def test_stable_breach_rate_with_a_weekly_rhythm_raises_no_breach_rate_alert() -> None:
    alerts, breaches = sla_weeks()
    # Nights and weekends breach five times as often as office hours: normal here.
    assert breach_rate_alerts(alerts) == []
    assert sum(breaches) > 500


def test_breach_rate_jump_at_normal_volume_alerts_and_names_billing_first_replies() -> None:
    start = WEEK4_WEDNESDAY + 10  # three slow hours from 10:00
    alerts = breach_rate_alerts(sla_weeks(incident=(start, start + 3))[0])
    hours = {START + timedelta(hours=start + k) for k in range(3)}
    assert alerts and all(a.start in hours for a in alerts)  # nothing outside the incident
    assert {a.series for a in alerts} == {"sla_breach_rate:all", "sla_breach_rate:category=billing"}
    overall = next(a for a in alerts if a.series == "sla_breach_rate:all")
    assert overall.observed > 3 * overall.expected
    top = {(d.dimension, d.value) for d in overall.drivers[:3]}
    assert {("category", "billing"), ("metric", "first_reply")} <= top
    assert not {v for _, v in top} & {"shipping", "logistics", "resolution"}
    billing = next(a for a in alerts if a.series == "sla_breach_rate:category=billing")
    assert billing.drivers[0].value in {"payments", "first_reply"}
    assert "category" not in {d.dimension for d in billing.drivers}


def test_surge_in_volume_with_the_same_breach_share_is_no_breach_rate_alert() -> None:
    start = WEEK4_WEDNESDAY + 9  # six hours at 2.5 times the volume from 09:00
    alerts, breaches = sla_weeks(surge=(start, start + 6, 2.5))
    during = sum(breaches[start : start + 6])
    week_before = sum(breaches[start - 168 : start - 162])
    assert during > 2 * week_before  # breaches did jump: a plain count would alert
    assert any(a.series == "volume:all" for a in alerts)
    assert breach_rate_alerts(alerts) == []


def test_each_target_counts_once_and_a_solve_keeps_its_category() -> None:
    lm = LiveMetrics()
    ticket = replace(created(1, START + timedelta(minutes=1)), queue="payments")
    lm.on_ticket(ticket)
    lm.on_sla(sla(1, START + timedelta(minutes=2), breached=True))
    # The reply comes late: the target was already decided by its breach.
    lm.on_sla(sla(1, START + timedelta(minutes=3), breached=True, kind="fulfill"))
    solved_at = START + timedelta(minutes=4)
    solved = replace(ticket.ticket, status="solved", solved_at=solved_at)
    lm.on_ticket(
        replace(ticket, op="u", previous_status="new", committed_at=solved_at, ticket=solved)
    )
    # The solve's resolution fulfil follows the ticket change that closed it.
    lm.on_sla(sla(1, solved_at, breached=False, metric="resolution"))
    for series in ("sla_breach_rate:all", "sla_breach_rate:category=billing"):
        assert (lm.counts[series], lm.exposures[series]) == (1.0, 2.0)
    assert lm.driver_exposures["sla_breach_rate:all"]["metric"] == {
        "first_reply": 1.0,
        "resolution": 1.0,
    }
    assert lm.drivers["sla_breach_rate:all"]["queue"] == {"payments": 1.0}
    assert "category" not in lm.driver_exposures["sla_breach_rate:category=billing"]
    # An hour on, the done ticket's context is dropped: memory follows open tickets.
    lm.on_ticket(created(2, START + timedelta(hours=2)))
    assert 1 not in lm.sla_context and list(lm.sla_context) == [2]
    # The hour was handed to the detector: only the new hour's volume is being counted.
    assert set(lm.counts) == {"volume:all", "volume:category=billing"}


def test_a_replayed_backlog_keeps_its_event_time_when_the_timer_fires() -> None:
    """Old changes read back to back: the timer must not close their windows early."""
    metrics = LiveMetrics()
    old = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    metrics.on_ticket(created(1, old))
    # The timer fires a moment later in wall time: the watermark moves by that moment only.
    assert metrics.tick(datetime.now(UTC) + timedelta(seconds=1)) == []
    metrics.on_ticket(created(2, old + timedelta(seconds=30)))
    windows = [w for w in metrics.finish() if isinstance(w, WindowResult) and w.dimension == "all"]
    assert sum(w.counts["created"] for w in windows) == 2
    assert metrics.windows.too_late_total == 0
    # A quiet stream still closes its windows as wall time passes.
    quiet = LiveMetrics()
    quiet.on_ticket(created(3, old))
    closed = quiet.tick(datetime.now(UTC) + timedelta(minutes=5))
    assert any(isinstance(w, WindowResult) and w.counts["created"] == 1 for w in closed)


def test_one_copy_per_dimension_family_emits_what_one_copy_of_all_emits() -> None:
    """The dataflow keys live metrics by family; together the keys must emit exactly the
    windows and alerts of a single copy (the incident makes both kinds of alert)."""
    start = WEEK4_WEDNESDAY + 10
    single: list[LiveOutput] = []
    split: list[LiveOutput] = []
    alerts, _ = sla_weeks(weeks=4, incident=(start, start + 3), outputs=single)
    sla_weeks(weeks=4, incident=(start, start + 3), outputs=split, by_family=True)
    assert alerts and any(isinstance(x, WindowResult) for x in single)
    dimensions = {x.dimension.split("=")[0] for x in single if isinstance(x, WindowResult)}
    assert dimensions == {"all", "category", "priority", "channel"}
    assert sorted(map(repr, split)) == sorted(map(repr, single))


def test_the_single_key_state_keeps_every_family_until_the_step_narrows_it() -> None:
    """A snapshot of the single metrics key (earlier versions, or ``metrics_by_family``
    off) resumes with every family; switched to family keys, that key (``metrics``)
    becomes the ``all`` family and keeps the whole-helpdesk baselines."""
    lm = LiveMetrics()
    for tid in range(1, 40):
        at = START + timedelta(minutes=7 * tid)
        lm.on_ticket(created(tid, at, category="billing" if tid % 2 else "shipping"))
        lm.on_sla(sla(tid, at, breached=tid % 3 == 0))
    state = dict(lm.__dict__)
    del state["family"]  # what earlier versions pickled
    older = LiveMetrics.__new__(LiveMetrics)
    older.__setstate__(pickle.loads(pickle.dumps(state)))
    assert older.family is None and older.known_series == lm.known_series
    later = created(99, START + timedelta(hours=6), category="billing")
    kept, _ = live_metrics_step(pickle.loads(pickle.dumps(older)), (None, later))
    assert kept.family is None and kept.known_series == lm.known_series
    narrowed, _ = live_metrics_step(older, ("all", later))
    assert narrowed.family == "all"
    assert narrowed.known_series == {"volume:all", "sla_breach_rate:all"}
    closed = narrowed.flush(START + timedelta(days=1))
    assert closed and {r.dimension for r in closed} == {"all"}


def test_done_tickets_keep_their_context_for_an_hour_but_at_most_done_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from models import live_metrics

    monkeypatch.setattr(live_metrics, "DONE_KEPT", 3)
    lm = LiveMetrics()
    at = START + timedelta(minutes=1)
    for tid in range(1, 7):
        lm.on_ticket(created(tid, at))
    for tid in range(1, 7):  # six tickets closed within a minute
        t = created(tid, at)
        closed = replace(t.ticket, status="closed")
        lm.on_ticket(replace(t, op="u", previous_status="new", ticket=closed))
    # Within the hour, but only the three done last are kept.
    assert list(lm.done_at) == [4, 5, 6] and sorted(lm.sla_context) == [4, 5, 6]
    # Open tickets are never dropped for the cap.
    lm.on_ticket(created(7, at))
    assert 7 in lm.sla_context and list(lm.done_at) == [4, 5, 6]


def test_tickets_of_one_combination_share_one_context() -> None:
    lm = LiveMetrics()
    for tid in (1, 2):
        lm.on_ticket(created(tid, START + timedelta(minutes=tid)))
    lm.on_ticket(created(3, START + timedelta(minutes=3), category="technical"))
    assert lm.sla_context[1] is lm.sla_context[2]
    assert lm.sla_context[3] != lm.sla_context[1]
    # A resumed copy keeps attributing the same way.
    resumed = pickle.loads(pickle.dumps(lm))
    assert resumed.sla_context == lm.sla_context
