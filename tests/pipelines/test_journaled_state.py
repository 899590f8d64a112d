"""Journaled keyed state: snapshots cost what arrived, and a resume rebuilds the same state.

The routing step keeps each queue's open tickets; its snapshot used to pickle all of
them at every epoch. A journaled key pickles each input once and re-pickles the state
only when the journal outgrows it; a resume replays the journal on the base.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from bytewax.operators import StatefulLogic

from models.helpdesk import Agent, RoutingDecision, WorkOutcome
from pipelines.flow import AgentUpsert, OutcomeIn, guarded_state, make_queue_step
from pipelines.settings import PipelineSettings
from pipelines.state import Journaled, _JournalLogic, replaying
from tests.models.test_queue_state import T0, ticket


@dataclass
class Tally:
    """A state that depends on order, time and seeded randomness, like a queue's."""

    seen: list[tuple[int, datetime]] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    draws: list[float] = field(default_factory=list)
    replayed: int = 0
    ticks: int = 0
    wake: datetime | None = None

    def tick(self, now: datetime) -> list[str]:
        self.ticks += 1
        self.wake = None
        return [f"tick {len(self.seen)}"]

    def next_wakeup(self) -> datetime | None:
        return self.wake

    def is_idle(self) -> bool:
        return not self.seen


def tally_step(state: Tally | None, item: int, now: datetime) -> tuple[Tally | None, list[str]]:
    state = state or Tally()
    if item < 0:  # a negative item ends the key
        return None, ["gone"]
    state.seen.append((item, now))
    state.draws.append(state.rng.random())
    state.replayed += replaying()
    state.wake = now + timedelta(seconds=1)
    return state, [f"saw {item}"]


def _view(state: Tally | None) -> tuple[object, ...] | None:
    if state is None:
        return None
    return (state.seen, state.draws, state.ticks, state.wake, state.rng.getstate())


def test_a_resume_rebuilds_the_state_from_its_base_and_journal() -> None:
    logic = _JournalLogic(tally_step, None, timed=True, rebase=1.0)
    out, verdict = logic.on_item(1)
    assert list(out) == ["saw 1"] and verdict == StatefulLogic.RETAIN
    first = logic.snapshot()
    assert first.journal == ()  # a new key: its first snapshot is the state itself
    for item in (2, 3):
        logic.on_item(item)
    logic.on_notify()
    second = logic.snapshot()
    assert second.base == first.base and len(second.journal) == 1
    logic.on_item(4)
    third = logic.snapshot()
    assert third.base == first.base and len(third.journal) == 2

    resumed = _JournalLogic(tally_step, third, timed=True, rebase=1.0)
    assert _view(resumed.state) == _view(logic.state)
    assert resumed.state is not None and resumed.state.replayed == 4 - 1  # items 2, 3, 4
    assert not replaying()
    assert resumed.notify_at() == logic.notify_at()
    # The resumed key goes on as the original would (at its own wall-clock time).
    assert list(resumed.on_item(5)[0]) == list(logic.on_item(5)[0])
    assert resumed.state is not None and logic.state is not None
    assert resumed.state.draws == logic.state.draws
    assert [i for i, _ in resumed.state.seen] == [1, 2, 3, 4, 5]


def test_the_state_is_pickled_again_once_the_journal_outgrows_it() -> None:
    logic = _JournalLogic(tally_step, None, timed=False, rebase=1.0)
    logic.on_item(0)
    base = logic.snapshot().base
    rebased_at = None
    for epoch in range(1, 200):
        logic.on_item(epoch)
        snap = logic.snapshot()
        assert sum(map(len, snap.journal)) <= len(snap.base)
        if snap.base != base:
            rebased_at = epoch
            break
    assert rebased_at is not None and rebased_at > 1
    assert snap.journal == ()
    assert _view(pickle.loads(snap.base)) == _view(logic.state)


def test_a_key_that_ends_is_discarded_and_starts_afresh() -> None:
    logic = _JournalLogic(tally_step, None, timed=True, rebase=1.0)
    logic.on_item(1)
    logic.snapshot()
    out, verdict = logic.on_item(-1)
    assert list(out) == ["gone"] and verdict == StatefulLogic.DISCARD
    assert logic.state is None and logic.base is None and logic.pending == []


def test_a_plain_pickled_snapshot_of_the_earlier_step_resumes() -> None:
    state, _ = tally_step(None, 1, T0)
    logic = _JournalLogic(tally_step, pickle.dumps(state), timed=True, rebase=1.0)
    assert _view(logic.state) == _view(state)
    assert isinstance(logic.snapshot(), Journaled)


def _agent(aid: int) -> Agent:
    return Agent(
        id=aid,
        name=f"a{aid}",
        team="billing",
        skills={"billing": 0.5 + aid / 10},
        languages=("en",),
        capacity=2,
        status="online",
    )


@pytest.mark.parametrize("ranker", ["learned", "expected_time"])
def test_a_queue_resumed_from_its_journal_decides_as_the_original(ranker: str) -> None:
    """The real routing step: agents, tickets, outcomes and timers, snapshots between
    them; the resumed queue then routes the next tickets exactly as the original."""
    settings = PipelineSettings(ranker=ranker)
    step = guarded_state("route_ticket", make_queue_step(settings, settings.routing_policy()))
    live = _JournalLogic(step, None, timed=True, rebase=1.0)
    rng = random.Random(3)
    clock = T0
    version = 0
    snaps: list[Journaled] = []

    def next_version() -> int:
        nonlocal version
        version += 1
        return version

    for aid in range(1, 5):
        live.on_item(AgentUpsert(_agent(aid), next_version(), clock))
    for tid in range(1, 121):
        clock += timedelta(seconds=rng.randint(1, 30))
        live.on_item(ticket(tid, version=next_version(), at=clock))
        if tid % 3 == 0:
            outcome = WorkOutcome(
                ticket_id=rng.randint(1, tid),
                agent_id=rng.randint(1, 4),
                queue="billing",
                work_type="",
                handling_seconds=float(rng.randint(60, 3600)),
                completed_at=clock,
                quality=rng.choice([None, 0.4, 1.0]),
            )
            live.on_item(OutcomeIn(outcome, next_version(), clock))
        if tid % 10 == 0:
            live.on_notify()
            snaps.append(live.snapshot())
    assert any(s.journal for s in snaps)  # the journal was used, not only re-pickled bases
    resumed = _JournalLogic(step, snaps[-1], timed=True, rebase=1.0)

    def decisions(logic: _JournalLogic, item: object) -> list[tuple[int, str, int | None]]:
        out, _ = logic.on_item(item)
        return [(d.ticket_id, d.status, d.agent_id) for d in out if isinstance(d, RoutingDecision)]

    # Solving tickets frees agents, who take held tickets; new tickets arrive meanwhile.
    later = clock + timedelta(minutes=1)
    then: list[object] = []
    for n, tid in enumerate(range(1, 61)):
        then.append(ticket(tid, status="solved", version=20_000 + n, at=later))
        then.append(ticket(500 + n, version=30_000 + n, at=later))
    expected = [decisions(live, item) for item in then]
    got = [decisions(resumed, item) for item in then]
    assert got == expected
    assert any(agent is not None for d in expected for _, _, agent in d)
    assert resumed.notify_at() == live.notify_at()


def test_the_queue_snapshot_grows_with_the_epoch_not_with_the_backlog() -> None:
    settings = PipelineSettings()
    step = guarded_state("route_ticket", make_queue_step(settings, settings.routing_policy()))
    live = _JournalLogic(step, None, timed=True, rebase=1.0)
    live.on_item(AgentUpsert(_agent(1), 1, T0))
    for tid in range(1, 3_001):
        live.on_item(ticket(tid, version=tid + 1, at=T0 + timedelta(seconds=tid)))
    backlog = live.snapshot()
    live.on_item(ticket(5_000, version=5_000, at=T0 + timedelta(hours=2)))
    after_one = live.snapshot()
    assert after_one.base == backlog.base
    assert len(after_one.journal[-1]) * 100 < len(backlog.base)
    assert datetime.now(UTC) > T0


def test_keys_due_together_rebase_one_per_spacing_and_none_beyond_twice_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipelines import state as state_module

    now = [1000.0]
    monkeypatch.setattr(state_module, "_clock", lambda: now[0])
    monkeypatch.setattr(state_module._rebased, "at", None, raising=False)
    keys = [_JournalLogic(tally_step, None, timed=False, rebase=1.0) for _ in range(3)]
    for logic in keys:
        for i in range(40):
            logic.on_item(i)
    bases = [logic.snapshot().base for logic in keys]  # first snapshots are bases
    now[0] += 10
    # Each key's journal outgrows its base in the same epoch.
    for logic in keys:
        for i in range(60):
            logic.on_item(100 + i)
    snaps = [logic.snapshot() for logic in keys]
    rebased = [s.base != b for s, b in zip(snaps, bases, strict=True)]
    assert rebased == [True, False, False]  # one rebase in this burst
    assert all(s.journal for s, r in zip(snaps, rebased, strict=True) if not r)
    now[0] += 10
    snaps = [logic.snapshot() for logic in keys]  # the next epoch: the next key
    assert [not s.journal for s in snaps] == [True, True, False]
    # A postponed key rebases at once when its journal reaches twice the limit.
    last = keys[2]
    size = len(snaps[2].base)
    while last.journal_bytes + sum(map(len, last.pending)) <= 2 * size:
        last.on_item(7)
    assert not last.snapshot().journal  # same burst as the rebase above, rebased anyway
    # Whatever was postponed, each key still resumes to its live state.
    for logic in keys:
        resumed = _JournalLogic(tally_step, logic.snapshot(), timed=False, rebase=1.0)
        assert _view(resumed.state) == _view(logic.state)
