"""SLA clocks: deadlines, pauses, policy changes, reply cycles, reopen, breaches, eviction."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from models.sla import (
    SlaEvent,
    SlaPolicySet,
    SlaTracker,
    TicketComment,
    TicketUpdate,
)

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
MON_9 = datetime(2024, 3, 4, 9, tzinfo=NY)  # Monday 4 March 2024, 09:00 in New York
H = timedelta(hours=1)


def ny(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 3, day, hour, minute, tzinfo=NY)


def update(
    at: datetime,
    status: str = "open",
    priority: str = "high",
    *,
    tid: int = 1,
    tier: str = "standard",
    region: str = "us",
) -> TicketUpdate:
    return TicketUpdate(tid, at, status, priority, tier, region)


def agent(at: datetime, *, tid: int = 1, public: bool = True) -> TicketComment:
    return TicketComment(tid, at, "agent", public)


def customer(at: datetime, *, tid: int = 1) -> TicketComment:
    return TicketComment(tid, at, "customer")


def kinds(events: list[SlaEvent]) -> list[tuple[str, str]]:
    return [(e.metric, e.kind) for e in events]


def by_metric(events: list[SlaEvent], metric: str) -> SlaEvent:
    return next(e for e in events if e.metric == metric)


@pytest.fixture
def tracker() -> SlaTracker:
    return SlaTracker(holiday_years=range(2024, 2025))


def test_default_policies() -> None:
    policies = SlaPolicySet.default()
    urgent = policies.policy_for("enterprise", "urgent")
    assert urgent.name == "enterprise-urgent" and not urgent.business_hours
    assert urgent.first_reply == timedelta(minutes=30)
    assert policies.policy_for("free", "low").resolution == timedelta(hours=160)
    assert "on_hold" in policies.policy_for("standard", "normal").pause_statuses
    assert "on_hold" not in policies.policy_for("premium", "normal").pause_statuses
    assert policies.policy_for("gold", None).name == "standard-normal"


def test_creation_deadlines_in_business_hours(tracker: SlaTracker) -> None:
    events = tracker.apply(update(MON_9, "new"))
    assert kinds(events) == [("first_reply", "apply"), ("resolution", "apply")]
    assert by_metric(events, "first_reply").deadline == ny(4, 13)
    assert by_metric(events, "resolution").deadline == ny(6, 17)  # 3 business days
    assert by_metric(events, "first_reply").policy == "standard-high"
    assert tracker.next_deadline(1) == ny(4, 13)
    assert tracker.clock_running(1)


def test_german_holiday_in_deadline(tracker: SlaTracker) -> None:
    wednesday_4pm = datetime(2024, 10, 2, 16, tzinfo=BERLIN)
    events = tracker.apply(update(wednesday_4pm, "new", "normal", region="de"))
    # 8 business hours: one on Wednesday, none on 3 October (a holiday), seven on Friday.
    assert by_metric(events, "first_reply").deadline == datetime(2024, 10, 4, 16, tzinfo=BERLIN)


def test_pending_pauses_and_priority_change_keeps_paused_time(tracker: SlaTracker) -> None:
    tracker.apply(update(MON_9, "new"))
    fulfil = tracker.apply(agent(ny(4, 9, 30)))
    assert kinds(fulfil) == [("first_reply", "fulfill")]
    assert fulfil[0].business_seconds_elapsed == 1800 and not fulfil[0].breached

    paused = tracker.apply(update(ny(4, 10), "pending"))
    assert kinds(paused) == [("resolution", "pause")]
    assert paused[0].business_seconds_elapsed == 3600 and paused[0].deadline is None
    assert not tracker.clock_running(1) and tracker.next_deadline(1) is None

    changed = tracker.apply(update(ny(5, 8), "pending", "normal"))
    assert kinds(changed) == [("resolution", "update")]
    assert changed[0].policy == "standard-normal"
    assert changed[0].paused_seconds == 22 * 3600 and changed[0].deadline is None

    resumed = tracker.apply(update(ny(5, 10), "open", "normal"))
    assert kinds(resumed) == [("resolution", "resume")]
    event = resumed[0]
    assert event.business_seconds_elapsed == 3600 and event.paused_seconds == 24 * 3600
    # 39 business hours left from Tuesday 10:00: Tue 7 + Wed 8 + Thu 8 + Fri 8 + Mon 8,
    # and that Monday is after the switch to daylight saving time.
    assert event.deadline == ny(11, 17)
    assert event.deadline == datetime(2024, 3, 11, 21, tzinfo=UTC)


def test_on_hold_pauses_per_tier(tracker: SlaTracker) -> None:
    tracker.apply(update(MON_9, "open", tid=1, tier="standard"))
    tracker.apply(update(MON_9, "open", tid=2, tier="enterprise"))
    assert kinds(tracker.apply(update(ny(4, 10), "on_hold", tid=1, tier="standard"))) == [
        ("first_reply", "pause"),
        ("resolution", "pause"),
    ]
    assert tracker.apply(update(ny(4, 10), "on_hold", tid=2, tier="enterprise")) == []
    assert not tracker.clock_running(1) and tracker.clock_running(2)


def test_next_reply_cycles(tracker: SlaTracker) -> None:
    tracker.apply(update(MON_9, "open", "normal"))
    # A customer comment before the first reply adds nothing: the customer already waits.
    assert tracker.apply(customer(ny(4, 9, 15))) == []
    tracker.apply(agent(ny(4, 9, 30)))
    started = tracker.apply(customer(ny(4, 10)))
    assert kinds(started) == [("next_reply", "apply")]
    assert started[0].deadline == ny(6, 10)  # 16 business hours: Mon 7 + Tue 8 + Wed 1
    assert tracker.apply(customer(ny(4, 11))) == []  # the earliest unanswered comment counts
    assert tracker.apply(agent(ny(4, 12), public=False)) == []  # internal notes do not count
    done = tracker.apply(agent(ny(4, 12, 30)))
    assert kinds(done) == [("next_reply", "fulfill")]
    assert done[0].business_seconds_elapsed == 2.5 * 3600
    again = tracker.apply(customer(ny(4, 13)))
    assert kinds(again) == [("next_reply", "apply")]
    assert again[0].business_seconds_elapsed == 0


def test_solve_and_reopen_keep_resolution_time(tracker: SlaTracker) -> None:
    tracker.apply(update(MON_9, "open"))
    tracker.apply(agent(ny(4, 10)))
    solved = tracker.apply(update(ny(4, 11), "solved"))
    assert kinds(solved) == [("resolution", "fulfill")]
    assert solved[0].business_seconds_elapsed == 2 * 3600
    assert not tracker.clock_running(1)

    reopened = tracker.apply(update(ny(5, 9), "open"))
    assert kinds(reopened) == [("resolution", "resume")]
    assert reopened[0].business_seconds_elapsed == 2 * 3600
    assert reopened[0].paused_seconds == 22 * 3600  # the time solved
    assert reopened[0].deadline == ny(7, 15)  # 22 business hours left from Tuesday 09:00
    assert tracker.apply(update(ny(5, 10), "solved"))[0].business_seconds_elapsed == 3 * 3600


def test_customer_comment_on_solved_ticket_waits_for_reopen(tracker: SlaTracker) -> None:
    tracker.apply(update(MON_9, "open"))
    tracker.apply(agent(ny(4, 10)))
    tracker.apply(update(ny(4, 11), "solved"))
    assert kinds(tracker.apply(customer(ny(4, 12)))) == [
        ("next_reply", "apply"),
        ("next_reply", "pause"),
    ]
    reopened = tracker.apply(update(ny(4, 12, 1), "open"))
    assert sorted(kinds(reopened)) == [("next_reply", "resume"), ("resolution", "resume")]


def test_tick_emits_each_breach_once(tracker: SlaTracker) -> None:
    t0 = datetime(2024, 3, 9, 22, tzinfo=UTC)  # a Saturday: urgent runs on calendar hours
    tracker.apply(update(t0, "new", "urgent"))
    assert tracker.tick(t0 + timedelta(minutes=59)) == []
    breaches = tracker.tick(t0 + timedelta(minutes=61))
    assert kinds(breaches) == [("first_reply", "breach")]
    assert breaches[0].at == t0 + H == breaches[0].deadline
    assert breaches[0].business_seconds_elapsed == 3600 and breaches[0].breached
    assert tracker.tick(t0 + 2 * H) == []
    late = tracker.apply(agent(t0 + 3 * H))
    assert kinds(late) == [("first_reply", "fulfill")] and late[0].breached
    assert kinds(tracker.tick(t0 + 9 * H)) == [("resolution", "breach")]


def test_breach_found_by_a_late_input_without_tick(tracker: SlaTracker) -> None:
    t0 = datetime(2024, 3, 9, 22, tzinfo=UTC)
    tracker.apply(update(t0, "new", "urgent"))
    events = tracker.apply(agent(t0 + 2 * H))
    assert kinds(events) == [("first_reply", "breach"), ("first_reply", "fulfill")]
    assert events[0].at == t0 + H
    assert tracker.tick(t0 + 2 * H) == []


def test_raising_priority_can_breach_at_once(tracker: SlaTracker) -> None:
    tracker.apply(update(MON_9, "open", "low"))
    events = tracker.apply(update(ny(4, 15), "open", "high"))  # 6 h used, new target 4 h
    assert ("first_reply", "breach") in kinds(events)
    assert by_metric(events, "resolution").deadline == ny(6, 17)  # 18 business hours left


def test_open_deadlines_and_eviction(tracker: SlaTracker) -> None:
    tracker.apply(update(MON_9, "new", "high", tid=1))
    tracker.apply(update(MON_9, "new", "low", tid=2))
    deadlines = tracker.open_deadlines()
    assert [(d.ticket_id, d.metric) for d in deadlines][:2] == [
        (1, "first_reply"),
        (1, "resolution"),
    ]
    assert deadlines == sorted(deadlines, key=lambda d: d.deadline)

    tracker.apply(update(ny(4, 10), "closed", tid=1))
    assert 1 not in tracker.tickets and len(tracker) == 1
    tracker.apply(update(ny(4, 10), "solved", "low", tid=2))
    assert len(tracker) == 1 and not tracker.clock_running(2)
    tracker.tick(ny(8, 9, 59))
    assert len(tracker) == 1
    tracker.tick(ny(8, 10, 1))  # four days after the solve
    assert len(tracker) == 0
    assert tracker.apply(update(ny(9, 10), "closed", tid=2)) == []  # nothing to measure


def test_closed_tickets_leave_no_eviction_entries_behind(tracker: SlaTracker) -> None:
    # Thousands of tickets solved then closed within the retention: the tracker holds none
    # of them, and what it keeps to evict solved tickets stays bounded too.
    minute = timedelta(minutes=1)
    for tid in range(1, 6001):
        at = MON_9 + tid * minute
        tracker.apply(update(at, "new", tid=tid))
        tracker.apply(update(at, "solved", tid=tid))
        if tid % 100:  # every hundredth stays solved, to be evicted after the retention
            tracker.apply(update(at + minute, "closed", tid=tid))
    assert len(tracker) == 60
    assert len(tracker._evictions) <= 2 * len(tracker) + 1024
    last_solve = (MON_9 + 6000 * minute).astimezone(UTC)  # days of 24 hours, DST or not
    tracker.tick(last_solve + timedelta(days=4) - minute)
    assert len(tracker) == 1  # only the last solved ticket is within its retention
    tracker.tick(last_solve + timedelta(days=4))
    assert len(tracker) == 0


def test_deleted_ticket_is_dropped(tracker: SlaTracker) -> None:
    tracker.apply(update(MON_9, "new"))
    assert tracker.apply(TicketUpdate(1, ny(4, 10), "open", "high", "standard", deleted=True)) == []
    assert len(tracker) == 0 and tracker.tick(ny(20, 0)) == []


def test_snapshot_started_before_it_was_seen(tracker: SlaTracker) -> None:
    seen = ny(4, 15)
    events = tracker.apply(
        TicketUpdate(1, seen, "open", "high", "standard", "us", created_at=MON_9)
    )
    assert kinds(events) == [
        ("first_reply", "apply"),
        ("resolution", "apply"),
        ("first_reply", "breach"),
    ]
    assert events[-1].at == ny(4, 13)


def test_progress_and_pickle_round_trip(tracker: SlaTracker) -> None:
    tracker.apply(update(MON_9, "new"))
    progress = {p.metric: p for p in tracker.progress(1, ny(4, 11))}
    assert progress["first_reply"].fraction_elapsed == 0.5
    assert progress["resolution"].remaining_business_seconds == 22 * 3600
    copy: SlaTracker = pickle.loads(pickle.dumps(tracker))
    later = ny(4, 14)
    assert copy.tick(later) == tracker.tick(later)
    assert copy.open_deadlines() == tracker.open_deadlines()


def test_naive_datetimes_are_refused(tracker: SlaTracker) -> None:
    with pytest.raises(ValueError, match="naive"):
        tracker.apply(update(datetime(2024, 3, 4, 9)))
