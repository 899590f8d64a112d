"""Event-time tumbling windows of ticket metrics with a bounded wait for late events.

Each ticket change (created, first reply, solved, reopened, SLA breach) is an input stamped
with its source commit time. Inputs fall into fixed windows (one minute by default) and
into one row per dimension: ``all`` plus ``category=…``, ``priority=…``, ``channel=…``.
A window closes when the watermark passes its end plus the allowed lateness; it is then
emitted once as a :class:`WindowResult` and dropped, so state only holds the windows that
can still change.

Late events:

* an event older than the watermark whose window is still open is merged into it and
  counted in that window's ``late_merged``;
* an event whose window has already closed is *too late*. It is not added to any window's
  counts or percentiles (that window was published already), but it is not lost either:
  it is counted in ``too_late`` of the next window emitted for each of its dimensions, it
  still moves the backlog (that window's ``backlog`` includes it), and the running total is
  :attr:`MinuteWindows.too_late_total`. Callers that need the raw event (for a correction
  table or dead letters) test :meth:`MinuteWindows.is_too_late` before :meth:`add`.

Windows with no events for a dimension produce no row: absence means zero.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> w = MinuteWindows(allowed_lateness=timedelta(0))
    >>> t0 = datetime(2024, 1, 1, 9, 0, 10, tzinfo=UTC)
    >>> w.add(WindowInput(at=t0, kind="created", dimensions={"category": "billing"}))
    []
    >>> [(r.dimension, r.counts["created"], r.backlog)
    ...  for r in w.add(WindowInput(at=t0 + timedelta(minutes=1), kind="created"))]
    [('all', 1, 1), ('category=billing', 1, 1)]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

WindowKind = Literal["created", "solved", "reopened", "first_reply", "breach"]
KINDS: tuple[WindowKind, ...] = ("created", "solved", "reopened", "first_reply", "breach")
ALL = "all"
"""The dimension that every input belongs to."""

# Windows are aligned on the Unix epoch so that every worker (and every restart) cuts
# the same windows for the same width.
_ORIGIN = datetime(1970, 1, 1, tzinfo=UTC)
_BACKLOG_DELTA: Mapping[str, int] = {"created": 1, "solved": -1, "reopened": 1}


def dimension_family(key: str) -> str:
    """``all`` for ``all``, else the dimension's name: ``category=billing`` → ``category``."""
    return key.split("=", 1)[0]


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def percentile(values: list[float], q: float) -> float | None:
    """Exact percentile with linear interpolation between order statistics (numpy's default).

    Example:
        >>> percentile([4.0, 1.0, 3.0, 2.0], 0.5)
        2.5
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class WindowInput:
    """One ticket change, placed in a window by its event (commit) time.

    Args:
        at: Event time: the source commit time of the change (naive means UTC).
        kind: What happened to the ticket.
        dimensions: Dimension name → value for this ticket, e.g.
            ``{"category": "billing", "priority": "urgent", "channel": "email"}``; ``None``
            values are skipped.
        first_reply_seconds: Time to first reply, on ``first_reply`` inputs.
        resolution_seconds: Time to resolution, on ``solved`` inputs.
        ticket_id: The ticket, for tracing only.
    """

    at: datetime
    kind: WindowKind
    dimensions: Mapping[str, str | None] = field(default_factory=dict)
    first_reply_seconds: float | None = None
    resolution_seconds: float | None = None
    ticket_id: int | None = None

    def dimension_keys(self) -> list[str]:
        """``all`` followed by ``name=value`` for every dimension with a value."""
        keys = [ALL]
        keys.extend(f"{name}={value}" for name, value in sorted(self.dimensions.items()) if value)
        return keys


@dataclass(frozen=True)
class WindowResult:
    """Metrics of one dimension over one closed window.

    Args:
        start: Window start (inclusive).
        end: Window end (exclusive).
        dimension: ``all`` or ``name=value``.
        counts: Inputs per kind (every kind present, zero when none).
        first_reply_p50: Median first-reply seconds of the window's ``first_reply`` inputs.
        first_reply_p90: 90th percentile of the same.
        resolution_p50: Median resolution seconds of the window's ``solved`` inputs.
        resolution_p90: 90th percentile of the same.
        backlog: Open tickets at window end (created − solved + reopened since the start
            of the stream, including too-late events received so far).
        late_merged: Inputs that arrived behind the watermark but in time for this window.
        too_late: Inputs of this dimension that arrived after their own window had closed,
            since the previous window emitted for this dimension.
    """

    start: datetime
    end: datetime
    dimension: str
    counts: Mapping[str, int]
    first_reply_p50: float | None
    first_reply_p90: float | None
    resolution_p50: float | None
    resolution_p90: float | None
    backlog: int
    late_merged: int
    too_late: int


@dataclass
class _Accumulator:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    first_reply: list[float] = field(default_factory=list)
    resolution: list[float] = field(default_factory=list)
    backlog_delta: int = 0
    late_merged: int = 0


class MinuteWindows:
    """Tumbling event-time windows per dimension, closed by a watermark after a bounded wait.

    The watermark is the latest event time seen, or a later time the caller passes to
    :meth:`advance` (a processing-time flush when the stream goes quiet). It never moves
    back. A window ``[start, end)`` closes once ``end + allowed_lateness <= watermark``.
    Results come out ordered by window start, then ``all`` first and the other dimensions
    sorted, so one input order always yields the same output.

    Args:
        width: Window width.
        allowed_lateness: How long after a window's end late events are still merged.
        families: Dimension families kept (``all``, ``category``, …); ``None``: all. The
            dataflow keys its metrics by family, each key keeping its own.

    Example:
        >>> from datetime import UTC, datetime, timedelta
        >>> w = MinuteWindows()
        >>> t0 = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)
        >>> _ = w.add(WindowInput(at=t0, kind="solved", resolution_seconds=60.0))
        >>> [r.resolution_p50 for r in w.advance(t0 + timedelta(minutes=3))]
        [60.0]
    """

    def __init__(
        self,
        width: timedelta = timedelta(minutes=1),
        allowed_lateness: timedelta = timedelta(minutes=2),
        families: frozenset[str] | None = None,
    ) -> None:
        if width <= timedelta(0):
            raise ValueError("width must be positive")
        if allowed_lateness < timedelta(0):
            raise ValueError("allowed_lateness must be >= 0")
        self.width = width
        self.allowed_lateness = allowed_lateness
        self.families = families
        self.watermark: datetime | None = None
        self.too_late_total = 0
        # Window index → dimension → accumulator; only windows that can still change.
        self._open: dict[int, dict[str, _Accumulator]] = {}
        # Every window with index <= this one is closed (None before the first close).
        self._closed_through: int | None = None
        # Per dimension: backlog at the end of its last emitted window (plus too-late
        # deltas), and too-late inputs waiting to be reported on its next window.
        self._backlog: dict[str, int] = {}
        self._pending_too_late: dict[str, int] = {}

    # ------------------------------------------------------------------ time arithmetic

    def _index(self, at: datetime) -> int:
        return (_aware(at) - _ORIGIN) // self.width

    def _closable_through(self, watermark: datetime) -> int:
        # end + lateness <= watermark  ⟺  (index + 1) * width <= watermark - lateness - origin
        return (watermark - self.allowed_lateness - _ORIGIN) // self.width - 1

    families: frozenset[str] | None = None  # snapshots from before the attribute: all

    def narrow(self, families: frozenset[str]) -> None:
        """Keep only these families from now on, open windows included."""
        self.families = families
        for dims in self._open.values():
            for key in [k for k in dims if dimension_family(k) not in families]:
                del dims[key]
        for table in (self._backlog, self._pending_too_late):
            for key in [k for k in table if dimension_family(k) not in families]:
                del table[key]

    def is_too_late(self, event: WindowInput) -> bool:
        """True when the event's window has closed already (it will not be in any count)."""
        return self._closed_through is not None and self._index(event.at) <= self._closed_through

    # ------------------------------------------------------------------ public API

    def add(self, event: WindowInput) -> list[WindowResult]:
        """Take one input; returns the windows its event time lets close (often none)."""
        keys = event.dimension_keys()
        if self.families is not None:
            keys = [k for k in keys if dimension_family(k) in self.families]
        delta = _BACKLOG_DELTA.get(event.kind, 0)
        if self.is_too_late(event):
            self.too_late_total += bool(keys)
            for key in keys:
                self._pending_too_late[key] = self._pending_too_late.get(key, 0) + 1
                if delta:
                    self._backlog[key] = self._backlog.get(key, 0) + delta
            return []
        at = _aware(event.at)
        late = self.watermark is not None and at < self.watermark
        dims = self._open.setdefault(self._index(at), {})
        for key in keys:
            acc = dims.get(key)
            if acc is None:
                acc = dims[key] = _Accumulator()
            acc.counts[event.kind] += 1
            acc.backlog_delta += delta
            acc.late_merged += late
            if event.kind == "first_reply" and event.first_reply_seconds is not None:
                acc.first_reply.append(float(event.first_reply_seconds))
            if event.kind == "solved" and event.resolution_seconds is not None:
                acc.resolution.append(float(event.resolution_seconds))
        return self.advance(at)

    def advance(self, watermark: datetime) -> list[WindowResult]:
        """Move the watermark forward (never back) and emit every window it closes."""
        watermark = _aware(watermark)
        if self.watermark is None or watermark > self.watermark:
            self.watermark = watermark
        through = self._closable_through(self.watermark)
        if self._closed_through is not None and through <= self._closed_through:
            return []
        self._closed_through = through
        results: list[WindowResult] = []
        for index in sorted(i for i in self._open if i <= through):
            dims = self._open.pop(index)
            for key in sorted(dims, key=lambda k: (k != ALL, k)):
                results.append(self._emit(index, key, dims[key]))
        return results

    def flush(self) -> list[WindowResult]:
        """Emit every open window now (end of a bounded stream)."""
        if not self._open:
            return []
        last = max(self._open)
        end = _ORIGIN + (last + 1) * self.width
        return self.advance(end + self.allowed_lateness)

    @property
    def open_windows(self) -> int:
        """Windows still held in state (bounded by lateness / width + 1 once data flows)."""
        return len(self._open)

    def backlog(self, dimension: str = ALL) -> int:
        """Open tickets as of the last window emitted for ``dimension`` (with too-late ones)."""
        return self._backlog.get(dimension, 0)

    def _emit(self, index: int, key: str, acc: _Accumulator) -> WindowResult:
        backlog = self._backlog.get(key, 0) + acc.backlog_delta
        self._backlog[key] = backlog
        start = _ORIGIN + index * self.width
        return WindowResult(
            start=start,
            end=start + self.width,
            dimension=key,
            counts=dict(acc.counts),
            first_reply_p50=percentile(acc.first_reply, 0.5),
            first_reply_p90=percentile(acc.first_reply, 0.9),
            resolution_p50=percentile(acc.resolution, 0.5),
            resolution_p90=percentile(acc.resolution, 0.9),
            backlog=backlog,
            late_merged=acc.late_merged,
            too_late=self._pending_too_late.pop(key, 0),
        )
