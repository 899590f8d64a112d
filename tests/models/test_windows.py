"""Event-time minute windows: late merges, too-late counting, percentiles, backlog."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import pytest

from models.windows import MinuteWindows, WindowInput, WindowResult, percentile

T0 = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def created(minutes: float, category: str = "billing", **extra: str) -> WindowInput:
    return WindowInput(at=at(minutes), kind="created", dimensions={"category": category, **extra})


def by_key(results: list[WindowResult]) -> dict[tuple[datetime, str], WindowResult]:
    return {(r.start, r.dimension): r for r in results}


def test_late_within_lateness_merges_and_later_counts_as_too_late() -> None:
    w = MinuteWindows(width=timedelta(minutes=1), allowed_lateness=timedelta(minutes=2))
    out: list[WindowResult] = []
    out += w.add(created(0.1))
    out += w.add(created(1.5))
    out += w.add(created(2.5))
    out += w.add(created(0.7))  # behind the watermark (2.5), window [0, 1) still open
    assert out == []
    out += w.add(created(3.2))  # watermark 3.2: [0, 1) closes (1 + 2 <= 3.2)
    first = by_key(out)
    assert [(r.start, r.dimension) for r in out] == [(at(0), "all"), (at(0), "category=billing")]
    assert first[(at(0), "all")].counts["created"] == 2
    assert first[(at(0), "all")].late_merged == 1
    assert w.is_too_late(created(0.9))
    assert w.add(created(0.9, category="account")) == []  # too late: counted, not merged
    assert w.too_late_total == 1
    out = w.add(created(4.0))  # closes [1, 2)
    second = by_key(out)
    assert second[(at(1), "all")].counts["created"] == 1
    assert second[(at(1), "all")].too_late == 1
    # The too-late ticket still counts in the backlog of the next window emitted.
    assert second[(at(1), "all")].backlog == 4
    assert second[(at(1), "category=billing")].too_late == 0
    rest = by_key(w.flush())
    assert rest[(at(2), "all")].backlog == 5
    assert rest[(at(4), "all")].backlog == 7
    # The account dimension had no window yet; its too-late event waits for the next one.
    assert w.backlog("category=account") == 1


def test_out_of_order_events_give_the_same_counts_as_in_order() -> None:
    events = [
        created(m / 10, category=c) for m, c in zip(range(0, 50, 3), "abcab" * 4, strict=False)
    ]
    shuffled = events[::2] + events[1::2]

    def run(items: list[WindowInput]) -> dict[tuple[datetime, str], dict[str, int]]:
        w = MinuteWindows(allowed_lateness=timedelta(minutes=5))
        results = [r for e in items for r in w.add(e)] + w.flush()
        return {k: dict(r.counts) for k, r in by_key(results).items()}

    assert run(events) == run(shuffled)


def test_percentiles_are_exact_per_window() -> None:
    w = MinuteWindows(allowed_lateness=timedelta(0))
    for seconds in (10.0, 20.0, 30.0, 40.0, 100.0):
        w.add(WindowInput(at=at(0.5), kind="first_reply", first_reply_seconds=seconds))
    w.add(WindowInput(at=at(0.6), kind="solved", resolution_seconds=3600.0))
    (result,) = w.advance(at(1))
    assert result.counts == {
        "created": 0,
        "solved": 1,
        "reopened": 0,
        "first_reply": 5,
        "breach": 0,
    }
    assert result.first_reply_p50 == 30.0
    assert result.first_reply_p90 == pytest.approx(76.0)  # 40 + 0.6 × (100 − 40)
    assert result.resolution_p50 == result.resolution_p90 == 3600.0
    assert percentile([], 0.5) is None


def test_backlog_from_created_solved_reopened_per_dimension() -> None:
    w = MinuteWindows(allowed_lateness=timedelta(0))
    urgent = {"priority": "urgent", "channel": "email"}
    for kind in ("created", "created", "solved", "reopened", "breach"):
        w.add(WindowInput(at=at(0.2), kind=kind, dimensions=urgent))
    w.add(WindowInput(at=at(0.3), kind="created", dimensions={"priority": "low"}))
    results = by_key(w.advance(at(1)))
    assert results[(at(0), "all")].backlog == 3
    assert results[(at(0), "priority=urgent")].backlog == 2
    assert results[(at(0), "channel=email")].counts["breach"] == 1
    assert results[(at(0), "priority=low")].backlog == 1
    w.add(WindowInput(at=at(1.5), kind="solved", dimensions=urgent))
    (later, *_) = w.advance(at(2))
    assert (later.dimension, later.backlog) == ("all", 2)


def test_watermark_never_moves_back_and_state_stays_bounded() -> None:
    w = MinuteWindows(allowed_lateness=timedelta(minutes=2))
    for i in range(600):
        w.add(created(i / 10))
        assert w.open_windows <= 4
    assert w.advance(at(0)) == []
    assert w.watermark == at(59.9)


def test_pickle_round_trip_continues_identically() -> None:
    w = MinuteWindows()
    for i in range(30):
        w.add(created(i / 7))
    clone = pickle.loads(pickle.dumps(w))
    tail = [created(5 + i / 3) for i in range(10)]
    assert [r for e in tail for r in w.add(e)] + w.flush() == [
        r for e in tail for r in clone.add(e)
    ] + clone.flush()


def test_naive_times_are_utc_and_bad_settings_are_refused() -> None:
    w = MinuteWindows(allowed_lateness=timedelta(0))
    w.add(WindowInput(at=datetime(2024, 1, 1, 9, 0, 30), kind="created"))
    (result,) = w.advance(at(1))
    assert result.start == T0
    with pytest.raises(ValueError):
        MinuteWindows(width=timedelta(0))
    with pytest.raises(ValueError):
        MinuteWindows(allowed_lateness=timedelta(seconds=-1))
