"""The warehouse buffer step: size and time limits, and snapshots that pickle each item once."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic
from bytewax.testing import TestingSink, TestingSource, run_main

from pipelines.state import _EPOCH, _BufferLogic, _KeyedBufferLogic, buffer, release_time


def test_lists_are_cut_at_max_size_and_the_rest_is_released_at_the_end() -> None:
    flow = Dataflow("buffer_test")
    items = op.input("in", flow, TestingSource([("a", i) for i in range(5)] + [("b", 9)]))
    out: list[tuple[str, list[int]]] = []
    op.output("out", buffer("buf", items, timeout=timedelta(hours=1), max_size=2), TestingSink(out))
    run_main(flow)
    assert sorted(out) == [("a", [0, 1]), ("a", [2, 3]), ("a", [4]), ("b", [9])]


def test_the_deadline_is_set_by_the_oldest_item() -> None:
    logic: _BufferLogic[int] = _BufferLogic(timedelta(seconds=10), 100, None)
    before = datetime.now(UTC)
    logic.on_item(1)
    due = logic.notify_at()
    assert due is not None and before + timedelta(seconds=10) <= due
    logic.on_item(2)
    assert logic.notify_at() == due  # a later item does not push the release back
    out, verdict = logic.on_notify()
    assert list(out) == [[1, 2]] and verdict == StatefulLogic.DISCARD


def test_snapshots_pickle_only_new_items_and_resume_the_whole_buffer() -> None:
    logic: _BufferLogic[dict[str, int]] = _BufferLogic(timedelta(seconds=10), 100, None)
    logic.on_item({"n": 1})
    logic.on_item({"n": 2})
    first = logic.snapshot()
    logic.on_item({"n": 3})
    second = logic.snapshot()
    assert second[1][0] == first[1][0]  # the first chunk is not pickled again
    assert [pickle.loads(c) for c in second[1]] == [[{"n": 1}, {"n": 2}], [{"n": 3}]]
    assert logic.snapshot() == second  # nothing new: same snapshot

    resumed: _BufferLogic[dict[str, int]] = _BufferLogic(timedelta(seconds=10), 100, second)
    assert resumed.notify_at() == second[0]
    resumed.on_item({"n": 4})
    out, _ = resumed.on_eof()
    assert list(out) == [[{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]]
    assert len(resumed.snapshot()[1]) == 3  # only the new item was pickled


def test_release_times_fall_at_the_key_phase_and_never_later_than_the_timeout() -> None:
    period = timedelta(seconds=10)
    now = datetime(2026, 3, 2, 9, 0, 3, 250_000, tzinfo=UTC)
    for phase in (0.0, 0.1, 0.33, 0.5, 0.99):
        due = release_time(now, period, phase)
        assert now < due <= now + period
        assert release_time(due, period, phase) == due + period  # the same phase next time
        assert round((due - _EPOCH).total_seconds() / 10 % 1, 6) == round(phase, 6)


def test_staggered_keys_release_at_different_moments() -> None:
    flow = Dataflow("stagger_test")
    items = op.input("in", flow, TestingSource([(f"w{i}", i) for i in range(16)]))
    dues: dict[str, datetime] = {}
    out: list[tuple[str, list[int]]] = []
    op.output(
        "out",
        buffer("buf", items, timeout=timedelta(seconds=10), max_size=100, staggered=True),
        TestingSink(out),
    )
    run_main(flow)  # the end of input releases everything at once
    assert sorted(out) == sorted((f"w{i}", [i]) for i in range(16))

    for i in range(16):
        logic: _KeyedBufferLogic[int] = _KeyedBufferLogic(
            timedelta(seconds=10), 100, None, staggered=True
        )
        logic.on_item((f"w{i}", i))
        due = logic.notify_at()
        assert due is not None
        dues[f"w{i}"] = due
    spread = max(dues.values()) - min(dues.values())
    assert spread >= timedelta(seconds=5)  # sixteen shards spread over the period
    assert len(set(dues.values())) == 16
