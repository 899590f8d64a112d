"""Keyed state whose recovery snapshots are pickled bytes instead of deep copies.

Bytewax's ``stateful_flat_map`` snapshots each changed key with ``copy.deepcopy`` at every
epoch. For routing state (agents, loads, holding lists) that copy dominated the pipeline's
CPU time in profiles. Pickling the state once is several times cheaper, gives the
immutable copy recovery needs, and is what the recovery store keeps anyway.
"""

from __future__ import annotations

import io
import logging
import pickle
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar, cast

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulLogic

log = logging.getLogger(__name__)

V = TypeVar("V")
W = TypeVar("W")
S = TypeVar("S")

Mapper = Callable[[S | None, V], tuple[S | None, Iterable[W]]]


class SnapshotTotals:
    """Recovery snapshots this process took, per kind of state: how many, their bytes
    (what the recovery store is handed) and the seconds spent making them.

    An epoch's snapshots are taken on the worker thread while decisions wait, so their
    time per epoch is part of the epoch's pause (``triage_snapshot_*`` metrics; ``triage
    bench`` reports them per epoch).

    Also what is held now, per kind: the keys alive and the size of their latest snapshot
    (what the recovery store keeps for them), so a growing state shows which kind grows.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[str, tuple[int, int, float]] = {}
        self._held: dict[str, tuple[int, int]] = {}

    def add(self, kind: str, size: int, seconds: float) -> None:
        with self._lock:  # worker threads of one process share the totals
            count, total, spent = self._totals.get(kind, (0, 0, 0.0))
            self._totals[kind] = (count + 1, total + size, spent + seconds)

    def hold(self, kind: str, keys: int, size: int) -> None:
        """Change what is held of ``kind`` by ``keys`` keys and ``size`` bytes."""
        with self._lock:
            have_keys, have_bytes = self._held.get(kind, (0, 0))
            self._held[kind] = (have_keys + keys, have_bytes + size)

    def totals(self) -> dict[str, tuple[int, int, float]]:
        """``{kind: (snapshots, bytes, seconds)}`` since the process started."""
        with self._lock:
            return dict(self._totals)

    def held(self) -> dict[str, tuple[int, int]]:
        """``{kind: (keys, bytes of their latest snapshots)}`` of the keys alive now."""
        with self._lock:
            return dict(self._held)


SNAPSHOTS = SnapshotTotals()


class AccountedState:
    """A key's share of :meth:`SnapshotTotals.held`: its latest snapshot's kind and size."""

    _held: tuple[str, int] | None = None

    def _holds(self, kind: str, size: int) -> None:
        held = self._held
        if held is None:
            SNAPSHOTS.hold(kind, 1, size)
        elif held[0] == kind:
            SNAPSHOTS.hold(kind, 0, size - held[1])
        else:
            SNAPSHOTS.hold(held[0], -1, -held[1])
            SNAPSHOTS.hold(kind, 1, size)
        self._held = (kind, size)

    def _released(self) -> None:
        """The key is discarded: the recovery store forgets it too."""
        if self._held is not None:
            SNAPSHOTS.hold(self._held[0], -1, -self._held[1])
            self._held = None

    def _taken(self, kind: str, size: int, started: float) -> None:
        seconds = time.perf_counter() - started
        SNAPSHOTS.add(kind, size, seconds)
        self._holds(kind, size)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("snapshot of %s: %d bytes in %.1f ms", kind, size, seconds * 1000)

    def _pickle(self, state: Any) -> bytes:
        """The snapshot bytes of ``state``, counted in :data:`SNAPSHOTS`."""
        started = time.perf_counter()
        data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        self._taken(type(state).__name__, len(data), started)
        return data


class _PickledFlatMapLogic(AccountedState, StatefulLogic[V, W, bytes], Generic[V, W, S]):
    def __init__(self, mapper: Mapper[S, V, W], state: S | None, resumed_size: int = 0) -> None:
        self.mapper = mapper
        self.state = state
        if state is not None:
            self._holds(type(state).__name__, resumed_size)

    def on_item(self, value: V) -> tuple[Iterable[W], bool]:
        state, out = self.mapper(self.state, value)
        if state is None:
            self.state = None
            self._released()
            return out, StatefulLogic.DISCARD
        self.state = state
        return out, StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        return self._pickle(self.state)


def stateful_flat_map(
    step_id: str, up: Stream[tuple[str, V]], mapper: Mapper[S, V, W]
) -> Stream[tuple[str, W]]:
    """Like ``bytewax.operators.stateful_flat_map`` with pickled snapshots."""

    def builder(resume: bytes | None) -> _PickledFlatMapLogic[V, W, S]:
        state: Any = None if resume is None else pickle.loads(resume)
        return _PickledFlatMapLogic(mapper, state, len(resume or b""))

    return op.stateful(step_id, up, builder)


class TimedState(Protocol):
    """Keyed state that also acts on time: ``tick`` at ``next_wakeup``."""

    def tick(self, now: datetime) -> list[Any]: ...

    def next_wakeup(self) -> datetime | None: ...

    def is_idle(self) -> bool: ...


class _TimedLogic(AccountedState, StatefulLogic[V, W, bytes], Generic[V, W, S]):
    def __init__(self, mapper: Mapper[S, V, W], state: S | None, resumed_size: int = 0) -> None:
        self.mapper = mapper
        self.state = state
        if state is not None:
            self._holds(type(state).__name__, resumed_size)

    def on_item(self, value: V) -> tuple[Iterable[W], bool]:
        state, out = self.mapper(self.state, value)
        self.state = state
        return out, self._verdict()

    def on_notify(self) -> tuple[Iterable[W], bool]:
        if self.state is None:
            return [], StatefulLogic.DISCARD
        out = cast(TimedState, self.state).tick(datetime.now(UTC))
        return out, self._verdict()

    def on_eof(self) -> tuple[Iterable[W], bool]:
        # A finite input ended (tests, replays): states that buffer results release them.
        finish = getattr(self.state, "finish", None)
        out = finish() if callable(finish) else []
        return out, self._verdict()

    def notify_at(self) -> datetime | None:
        if self.state is None:
            return None
        return cast(TimedState, self.state).next_wakeup()

    def _verdict(self) -> bool:
        if self.state is None or cast(TimedState, self.state).is_idle():
            self._released()
            return StatefulLogic.DISCARD
        return StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        return self._pickle(self.state)


def timed_stateful_flat_map(
    step_id: str, up: Stream[tuple[str, V]], mapper: Mapper[S, V, W]
) -> Stream[tuple[str, W]]:
    """Keyed flat-map whose state (a :class:`TimedState`) is also woken up on time.

    Bytewax calls ``tick`` once the state's ``next_wakeup`` has passed, so deadlines fire
    even when no event arrives for that key.
    """

    def builder(resume: bytes | None) -> _TimedLogic[V, W, S]:
        state: Any = None if resume is None else pickle.loads(resume)
        return _TimedLogic(mapper, state, len(resume or b""))

    return op.stateful(step_id, up, builder)


# -- journaled state: a pickled base plus the inputs since -------------------------------

ClockedMapper = Callable[[S | None, V, datetime], tuple[S | None, Iterable[W]]]
"""A keyed mapper that is told the time, so that replaying its inputs repeats it."""

_replay = threading.local()


def replaying() -> bool:
    """Whether this thread is rebuilding a journaled state from its recovery snapshot
    (outputs are dropped; process counters should not count them twice)."""
    return bool(getattr(_replay, "active", False))


@dataclass(frozen=True)
class Journaled:
    """The recovery snapshot of a journaled key: ``base`` (the state, pickled) and, per
    epoch since, the inputs it took (each a run of concatenated pickles)."""

    base: bytes
    journal: tuple[bytes, ...]


_ITEM, _TICK, _EOF = "i", "t", "e"


class _JournalLogic(AccountedState, StatefulLogic[V, W, Journaled], Generic[V, W, S]):
    """Keyed state whose snapshot costs what arrived, not what is held.

    A queue's routing state holds every open ticket (MBs with a backlog) and changes at
    every ticket, so pickling it whole at each epoch made the epoch's pause grow with
    the backlog. Here each input is pickled once when it arrives, with the time it was
    applied at; a snapshot joins them to the journal and the state is pickled again only
    when the journal outgrows ``rebase`` times the last base. Resuming unpickles the base
    and applies the journal: the mapper must depend only on the state, the input and the
    time it is given (randomness seeded in the state), which replay hands it again.
    """

    def __init__(
        self,
        mapper: ClockedMapper[S, V, W],
        resume: Journaled | bytes | None,
        *,
        timed: bool,
        rebase: float,
    ) -> None:
        self.mapper = mapper
        self.timed = timed
        self.rebase = rebase
        self.state: S | None = None
        self.base: bytes | None = None
        self.journal: list[bytes] = []
        self.journal_bytes = 0
        self.pending: list[bytes] = []
        if isinstance(resume, Journaled):
            self.state = pickle.loads(resume.base)
            self.base, self.journal = resume.base, list(resume.journal)
            self.journal_bytes = sum(map(len, self.journal))
            _replay.active = True
            try:
                for chunk in resume.journal:
                    self._replay(chunk)
            finally:
                _replay.active = False
            self._holds(self._kind(), len(self.base) + self.journal_bytes)
        elif resume is not None:  # a plain pickle, written before the journal existed
            self.state = pickle.loads(resume)
            self._holds(self._kind(), len(resume))

    def _kind(self) -> str:
        return f"{type(self.state).__name__} (journaled)"

    def _replay(self, chunk: bytes) -> None:
        stream = io.BytesIO(chunk)
        while stream.tell() < len(chunk):
            self._apply(pickle.load(stream))

    def _apply(self, op: tuple[Any, ...]) -> Iterable[W]:
        kind = op[0]
        if kind == _ITEM:
            self.state, out = self.mapper(self.state, op[2], op[1])
            return out
        if self.state is None:
            return []
        if kind == _TICK:
            return cast(TimedState, self.state).tick(op[1])
        finish = getattr(self.state, "finish", None)
        return finish() if callable(finish) else []

    def _record(self, op: tuple[Any, ...]) -> tuple[Iterable[W], bool]:
        out = self._apply(op)
        if self._idle():
            self.state, self.base, self.journal, self.pending = None, None, [], []
            self.journal_bytes = 0
            self._released()
            return out, StatefulLogic.DISCARD
        self.pending.append(pickle.dumps(op, protocol=pickle.HIGHEST_PROTOCOL))
        return out, StatefulLogic.RETAIN

    def _idle(self) -> bool:
        if self.state is None:
            return True
        return self.timed and cast(TimedState, self.state).is_idle()

    def on_item(self, value: V) -> tuple[Iterable[W], bool]:
        return self._record((_ITEM, datetime.now(UTC), value))

    def on_notify(self) -> tuple[Iterable[W], bool]:
        return self._record((_TICK, datetime.now(UTC)))

    def on_eof(self) -> tuple[Iterable[W], bool]:
        return self._record((_EOF,))

    def notify_at(self) -> datetime | None:
        if not self.timed or self.state is None:
            return None
        return cast(TimedState, self.state).next_wakeup()

    def snapshot(self) -> Journaled:
        started = time.perf_counter()
        chunk = b"".join(self.pending)
        self.pending = []
        journal = self.journal_bytes + len(chunk)
        if self.base is None or self._rebase_now(journal, len(self.base)):
            self.base = pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)
            self.journal, self.journal_bytes = [], 0
        elif chunk:
            self.journal.append(chunk)
            self.journal_bytes = journal
        # The base goes to the recovery store at every epoch too (copied, not pickled).
        size = len(self.base) + self.journal_bytes
        self._taken(self._kind(), size, started)
        return Journaled(self.base, tuple(self.journal))

    def _rebase_now(self, journal: int, base: int) -> bool:
        """Whether to pickle the state again: its journal outgrew ``rebase`` times the base.

        Keys that grow together (queues filling at the same rate) would all rebase at the
        same epoch and add their pauses up, so a worker thread rebases one key per
        :data:`REBASE_SPACING`; the others wait for a later epoch, up to twice the limit.
        """
        if journal <= self.rebase * base:
            return False
        now = _clock()
        last = getattr(_rebased, "at", None)
        if journal <= 2 * self.rebase * base and last is not None and now - last < REBASE_SPACING:
            return False
        _rebased.at = now
        return True


REBASE_SPACING = 1.0
"""Seconds between two rebases of journaled keys on one worker thread (an epoch's
snapshots are taken in one burst, and epochs are longer)."""

_rebased = threading.local()
_clock = time.monotonic


def journaled_flat_map(
    step_id: str,
    up: Stream[tuple[str, V]],
    mapper: ClockedMapper[S, V, W],
    *,
    timed: bool = False,
    rebase: float = 1.0,
) -> Stream[tuple[str, W]]:
    """Keyed flat-map (woken on time when ``timed``, as :func:`timed_stateful_flat_map`)
    whose recovery snapshots are journaled (see :class:`_JournalLogic`).

    For large states that every epoch touches and whose mapper replays exactly. A resume
    applies up to ``rebase`` times the base's size of journal. Snapshots written by
    :func:`timed_stateful_flat_map` or :func:`stateful_flat_map` resume too.
    """

    def builder(resume: Journaled | bytes | None) -> _JournalLogic[V, W, S]:
        return _JournalLogic(mapper, resume, timed=timed, rebase=rebase)

    return op.stateful(step_id, up, builder)


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def release_time(now: datetime, timeout: timedelta, phase: float) -> datetime:
    """The first release time after ``now`` of a key whose releases fall at ``phase``
    (0 to 1) of every ``timeout`` period: at most ``timeout`` later, and keys of different
    phases release at different moments.

    Example:
        >>> t = datetime(2026, 3, 2, 9, 0, 3, tzinfo=UTC)
        >>> release_time(t, timedelta(seconds=10), 0.5).time()
        datetime.time(9, 0, 5)
        >>> release_time(t, timedelta(seconds=10), 0.2).time()
        datetime.time(9, 0, 12)
    """
    period = timeout.total_seconds()
    if period <= 0:
        return now
    offset = (now - _EPOCH).total_seconds() - phase * period
    return now + timedelta(seconds=period - offset % period)


class _BufferLogic(
    AccountedState, StatefulLogic[V, list[V], tuple[datetime | None, tuple[bytes, ...]]]
):
    def __init__(
        self,
        timeout: timedelta,
        max_size: int,
        resume: tuple[datetime | None, tuple[bytes, ...]] | None,
        phase: float | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_size = max_size
        self.phase = phase
        self.due: datetime | None = None
        self.items: list[V] = []
        self.chunks: list[bytes] = []
        if resume is not None:
            self.due, chunks = resume
            self.chunks = list(chunks)
            for chunk in chunks:
                self.items.extend(pickle.loads(chunk))
            self._holds("buffer", sum(map(len, chunks)))
        self.pickled = len(self.items)

    def on_item(self, value: V) -> tuple[Iterable[list[V]], bool]:
        if not self.items:
            now = datetime.now(UTC)
            self.due = (
                now + self.timeout
                if self.phase is None
                else release_time(now, self.timeout, self.phase)
            )
        self.items.append(value)
        if len(self.items) >= self.max_size:
            return self._release()
        return (), StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[list[V]], bool]:
        return self._release()

    def on_eof(self) -> tuple[Iterable[list[V]], bool]:
        return self._release()

    def _release(self) -> tuple[Iterable[list[V]], bool]:
        self._released()
        return ((self.items,) if self.items else ()), StatefulLogic.DISCARD

    def notify_at(self) -> datetime | None:
        return self.due

    def snapshot(self) -> tuple[datetime | None, tuple[bytes, ...]]:
        # Only the items added since the last snapshot are pickled: each buffered item
        # is pickled at most once, so an epoch never pauses on the whole buffer.
        started = time.perf_counter()
        if self.pickled < len(self.items):
            self.chunks.append(
                pickle.dumps(self.items[self.pickled :], protocol=pickle.HIGHEST_PROTOCOL)
            )
            self.pickled = len(self.items)
        self._taken("buffer", sum(map(len, self.chunks)), started)
        return self.due, tuple(self.chunks)


def buffer(
    step_id: str,
    up: Stream[tuple[str, V]],
    *,
    timeout: timedelta,
    max_size: int,
    staggered: bool = False,
) -> Stream[tuple[str, list[V]]]:
    """Collect each key's items into lists of at most ``max_size``, released at the latest
    ``timeout`` after the first item of the list arrived.

    ``staggered``: each key releases at its own phase of the ``timeout`` period (from a
    hash of the key), so keys that fill at the same time do not all release, and pause the
    worker with their writes, in the same moment; a list still waits at most ``timeout``.

    Unlike ``bytewax.operators.collect``, whose deadline moves with every new item (a key
    that keeps receiving items waits for ``max_size``) and whose snapshot deep-copies the
    whole buffer at every epoch, the deadline here is fixed by the oldest item, and a
    snapshot pickles only what arrived since the previous one.
    """

    def with_key(kv: tuple[str, V]) -> tuple[str, tuple[str, V]]:
        return kv[0], kv

    def builder(resume: Any) -> _KeyedBufferLogic[V]:
        if resume is not None and hasattr(resume, "acc"):
            # Recovery written by ``op.collect`` (the earlier form of this step).
            resume = (resume.timeout_at, (pickle.dumps(list(resume.acc)),))
        return _KeyedBufferLogic(timeout, max_size, resume, staggered=staggered)

    # The logic receives (key, item) pairs (Bytewax does not tell a builder its key).
    return op.stateful(step_id, op.map(f"{step_id}_with_key", up, with_key), cast(Any, builder))


class _KeyedBufferLogic(_BufferLogic[V]):
    """The buffer of one key; it learns its key (hence its phase) from the first item."""

    def __init__(
        self,
        timeout: timedelta,
        max_size: int,
        resume: tuple[datetime | None, tuple[bytes, ...]] | None,
        *,
        staggered: bool,
    ) -> None:
        super().__init__(timeout, max_size, resume)
        self.staggered = staggered

    def on_item(self, value: Any) -> tuple[Iterable[list[V]], bool]:
        key, item = value
        if self.staggered and self.phase is None:
            self.phase = (zlib.crc32(key.encode()) % 10_000) / 10_000
        return super().on_item(item)
