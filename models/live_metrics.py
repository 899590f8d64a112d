"""Live metrics of the ticket stream: minute windows and hourly anomaly detection.

One :class:`LiveMetrics` turns finished ticket changes and SLA events into window inputs
(created, solved, reopened, first reply, breach; by category, priority and channel), and
feeds two kinds of hourly series to the anomaly detector:

* ``volume:all`` and ``volume:category=<c>``: new tickets, with the channel, the customer
  and the priority as candidate drivers;
* ``sla_breach_rate:all`` and ``sla_breach_rate:category=<c>``: SLA targets breached
  (count) out of SLA targets decided (exposure) in the hour, with the category, priority,
  metric and queue as candidate drivers judged by their own breach rates. A target is
  decided once: by its ``breach`` event, or by a ``fulfill`` in time; a late fulfil was
  already counted at its breach. More tickets with the same share of breaches therefore
  do not look like a breach-rate jump.

Hours are fed to the detector in order, zeros included, once the stream's event time has
moved past them.

A :class:`LiveMetrics` with a ``family`` keeps one dimension family: ``all`` (the
``all`` windows and the ``…:all`` series), ``category`` (its windows and the
``…:category=<c>`` series), ``priority`` or ``channel`` (windows only). The dataflow runs
one per family on its own key, each fed the whole stream, so every family moves its
watermark and closes its windows exactly as a single copy would, and together they emit
what one copy of every family emits.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from models.anomaly import AnomalyAlert, VolumeAnomalyDetector
from models.helpdesk import DONE_STATUSES, EnrichedTicket
from models.kb import content_words
from models.sla import SlaEvent
from models.windows import MinuteWindows, WindowInput, WindowResult, dimension_family

LiveOutput = WindowResult | AnomalyAlert

_HOUR = timedelta(hours=1)
BREACH_RATE = "sla_breach_rate"
"""Prefix of the breach-rate series: their buckets carry an exposure (targets decided)."""
# SLA events of a solve (the resolution fulfil) follow the ticket change that closed the
# ticket; its dimensions are kept this long after it is done so those events keep them.
_DONE_RETENTION = timedelta(hours=1)
DONE_KEPT = 50_000
"""At most this many done tickets keep their context (the earliest done go first): a
backfill or a mass closure finishes far more than an hour's usual share in minutes, and
would otherwise hold all of them for the hour (two map entries each)."""


@dataclass(frozen=True)
class SlaContext:
    """What the SLA events of a ticket are attributed to (they carry only its id)."""

    category: str
    priority: str
    queue: str


@functools.lru_cache(maxsize=4096)
def sla_context(category: str, priority: str, queue: str) -> SlaContext:
    """One shared (immutable) context per combination: tickets share a few hundred of them
    at most, so each open ticket costs its map entries, not an object of its own."""
    return SlaContext(category, priority, queue)


def sla_outcome(event: SlaEvent) -> bool | None:
    """Whether the event decides a target as breached (True) or met (False), else None.

    Each target is decided once: a breach at its deadline, or a fulfil in time; the later
    fulfil of a breached target is not a second outcome. A resolution met, reopened and
    met again counts twice (rare, and it keeps this stateless).

    Example:
        >>> from dataclasses import replace
        >>> at = datetime(2024, 1, 1, tzinfo=UTC)
        >>> met = SlaEvent(1, "first_reply", "fulfill", at, None, "standard-high", 60.0, 0.0)
        >>> breach = replace(met, kind="breach", breached=True)
        >>> [sla_outcome(e) for e in (met, breach, replace(met, breached=True))]
        [False, True, None]
    """
    if event.kind == "breach":
        return True
    if event.kind == "fulfill" and not event.breached:
        return False
    return None


FAMILIES = ("all", "category", "priority", "channel")
"""Dimension families of the windows; the dataflow keys its metrics by family."""
ALL_FAMILY = FAMILIES[0]


def series_family(series: str) -> str:
    """The dimension family of an anomaly series: ``volume:category=billing`` → ``category``.

    Example:
        >>> series_family("volume:all"), series_family("sla_breach_rate:category=billing")
        ('all', 'category')
    """
    return dimension_family(series.split(":", 1)[1])


def _is_rate(series: str) -> bool:
    return series.startswith(BREACH_RATE + ":")


def _add(by_dim: dict[str, dict[str, float]], values: dict[str, str | None]) -> None:
    """Count one event under each of its dimension values (None: not a dimension here)."""
    for dim, value in values.items():
        if value is not None:
            bucket = by_dim.setdefault(dim, {})
            bucket[value] = bucket.get(value, 0.0) + 1.0


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


@dataclass
class LiveMetrics:
    """Windowed metrics, volume and SLA breach-rate anomalies over the whole stream.

    Memory: per open ticket its dimensions and SLA context (done tickets for an hour
    more), per series this hour's counts, and the detector's per-series state.

    Example:
        >>> metrics = LiveMetrics()
        >>> metrics.known_series
        set()
    """

    windows: MinuteWindows = field(default_factory=MinuteWindows)
    detector: VolumeAnomalyDetector = field(default_factory=VolumeAnomalyDetector)
    known_series: set[str] = field(default_factory=set)
    current_hour: datetime | None = None
    counts: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    drivers: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    categories: dict[int, dict[str, str | None]] = field(default_factory=dict)
    exposures: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    driver_exposures: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    sla_context: dict[int, SlaContext] = field(default_factory=dict)
    done_at: dict[int, datetime] = field(default_factory=dict)
    flush_every: timedelta = timedelta(seconds=15)
    next_flush: datetime | None = None
    last_ticket_at: datetime | None = None
    # Processing time of the latest input: a quiet stream's watermark moves on from the
    # latest event time by the wall time since then (see :meth:`tick`).
    last_input_seen: datetime | None = None
    # One dimension family (``all``, ``category``, ``priority``, ``channel``): its windows
    # and anomaly series only; ``None``: every family.
    family: str | None = None

    def on_ticket(self, et: EnrichedTicket) -> list[LiveOutput]:
        self.last_input_seen = datetime.now(UTC)
        ticket = et.ticket
        dims = {"category": et.category, "priority": et.priority, "channel": ticket.channel}
        kind: str | None = None
        resolution: float | None = None
        was_done = et.previous_status in DONE_STATUSES
        if ticket.id not in self.categories and et.op in ("c", "r") and not was_done:
            kind = "created" if ticket.is_open else None
        elif ticket.status == "solved" and et.previous_status not in DONE_STATUSES:
            kind = "solved"
            if ticket.solved_at is not None:
                resolution = max(0.0, (ticket.solved_at - ticket.created_at).total_seconds())
        elif was_done and ticket.is_open:
            kind = "reopened"
        if ticket.is_open and et.op != "d":
            self.categories[ticket.id] = dict(dims)
        else:
            self.categories.pop(ticket.id, None)
        if self._keeps("all") or self._keeps("category"):
            self._keep_context(et)  # for the breach-rate series, which only these keep
        if self.last_ticket_at is None or et.committed_at > self.last_ticket_at:
            self.last_ticket_at = et.committed_at
        out: list[LiveOutput] = []
        if kind is None:
            return out
        out += self._advance_hours(et.committed_at)
        if kind == "created":
            if self._keeps("category"):
                self._count(f"volume:category={et.category}", et)
            if self._keeps("all"):
                self._count("volume:all", et)
        out += self.windows.add(
            WindowInput(
                at=et.committed_at,
                kind=kind,  # type: ignore[arg-type]
                dimensions=dims,
                resolution_seconds=resolution,
                ticket_id=ticket.id,
            )
        )
        return out

    def on_sla(self, event: SlaEvent) -> list[LiveOutput]:
        self.last_input_seen = datetime.now(UTC)
        dims = self.categories.get(event.ticket_id, {})
        outcome = sla_outcome(event)
        kind: str | None = None
        if event.kind == "breach":
            kind = "breach"
        elif event.kind == "fulfill" and event.metric == "first_reply":
            kind = "first_reply"
        if kind is None and outcome is None:
            return []
        # SLA events come from the queue step (breaches on a timer), another path than
        # ticket changes: they may be placed in time but never move the watermark past
        # the ticket stream, or on-time ticket changes would count as too late.
        at = event.at
        if self.last_ticket_at is not None and at > self.last_ticket_at:
            at = self.last_ticket_at
        out = self._advance_hours(at)
        if outcome is not None:
            self._count_sla(event, breached=outcome)
        if kind is None:
            return out
        out += self.windows.add(
            WindowInput(
                at=at,
                kind=kind,  # type: ignore[arg-type]
                dimensions=dims,
                first_reply_seconds=(
                    event.business_seconds_elapsed if kind == "first_reply" else None
                ),
                ticket_id=event.ticket_id,
            )
        )
        return out

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Snapshots from before the breach-rate series lack its fields: start them empty.
        # Snapshots from before families kept every family.
        fresh: dict[str, Any] = {
            "exposures": defaultdict(float),
            "driver_exposures": {},
            "sla_context": {},
            "done_at": {},
            "family": None,
        }
        self.__dict__.update({**fresh, **state})

    def __post_init__(self) -> None:
        if self.family is not None:
            self.windows.narrow(frozenset({self.family}))

    def _keeps(self, family: str) -> bool:
        return self.family is None or self.family == family

    def narrow(self, family: str) -> None:
        """Keep one dimension family (windows and anomaly series) from now on."""
        self.family = family
        self.windows.narrow(frozenset({family}))
        dropped = {s for s in self.known_series if series_family(s) != family}
        self.known_series -= dropped
        for table in (self.counts, self.drivers, self.exposures, self.driver_exposures):
            for name in dropped & table.keys():
                del table[name]

    def _keep_context(self, et: EnrichedTicket) -> None:
        """Remember what the ticket's SLA events are attributed to, a while past its end."""
        tid = et.ticket.id
        if et.ticket.is_open and et.op != "d":
            self.sla_context[tid] = sla_context(et.category, et.priority, et.queue)
            self.done_at.pop(tid, None)
        elif tid in self.sla_context:
            # Re-inserted so that ``done_at`` stays in the order tickets finished.
            self.done_at.pop(tid, None)
            self.done_at[tid] = et.committed_at
        while self.done_at:
            oldest, finished = next(iter(self.done_at.items()))
            if et.committed_at - finished < _DONE_RETENTION and len(self.done_at) <= DONE_KEPT:
                break
            del self.done_at[oldest]
            self.sla_context.pop(oldest, None)

    def _count_sla(self, event: SlaEvent, *, breached: bool) -> None:
        """Add one decided target to this hour's breach-rate series."""
        context = self.sla_context.get(event.ticket_id)
        values: dict[str, str | None] = {"metric": event.metric}
        series = [f"{BREACH_RATE}:all"]
        if context is not None:
            values |= {
                "category": context.category,
                "priority": context.priority,
                "queue": context.queue,
            }
            series.append(f"{BREACH_RATE}:category={context.category}")
        for name in series:
            if not self._keeps(series_family(name)):
                continue
            self.known_series.add(name)
            self.exposures[name] += 1.0
            self.counts[name] += 1.0 if breached else 0.0
            # The category is constant within a category's own series: no driver there.
            dims = values if name == series[0] else {**values, "category": None}
            _add(self.driver_exposures.setdefault(name, {}), dims)
            if breached:
                _add(self.drivers.setdefault(name, {}), dims)

    def _count(self, series: str, et: EnrichedTicket) -> None:
        self.known_series.add(series)
        self.counts[series] += 1
        by_dim = self.drivers.setdefault(series, {})
        for dim, value in (
            ("channel", et.ticket.channel),
            ("priority", et.priority),
            ("customer", str(et.ticket.customer_id)),
            # Words of the subject: an outage shows up as tickets saying "gateway timeout".
            *(("keyword", word) for word in content_words(et.ticket.subject)),
        ):
            bucket = by_dim.setdefault(dim, {})
            bucket[value] = bucket.get(value, 0.0) + 1

    def _advance_hours(self, at: datetime) -> list[LiveOutput]:
        """Score every finished hour, in order and with zeros, before ``at``'s hour."""
        hour = _hour(at)
        if self.current_hour is None:
            self.current_hour = hour
            return []
        out: list[LiveOutput] = []
        while self.current_hour < hour:
            for series in sorted(self.known_series):
                rate = _is_rate(series)
                score = self.detector.update(
                    series,
                    self.current_hour,
                    self.counts.get(series, 0.0),
                    drivers=self.drivers.get(series),
                    exposure=self.exposures.get(series, 0.0) if rate else None,
                    driver_exposures=self.driver_exposures.get(series) if rate else None,
                )
                if score.alert is not None:
                    out.append(score.alert)
            self.counts = defaultdict(float)
            self.drivers = {}
            self.exposures = defaultdict(float)
            self.driver_exposures = {}
            self.current_hour += _HOUR
        return out

    def flush(self, watermark: datetime) -> list[LiveOutput]:
        """Close windows up to ``watermark`` (processing time when the stream is quiet)."""
        return list(self.windows.advance(watermark))

    # Timer protocol of the dataflow's timed state: quiet streams still close windows.

    def tick(self, now: datetime) -> list[LiveOutput]:
        """Close the windows a quiet stream would have closed by now.

        The watermark moves on from the latest event time by the wall time passed since the
        latest input, not to the wall clock itself: a replay or a backlog of old changes,
        read back to back, keeps its own event time, so no window closes under events still
        on their way (which would count them as too late). A live stream's event time is
        the wall clock, so there both agree.
        """
        self.next_flush = now + self.flush_every
        event_time, seen = self.windows.watermark, self.last_input_seen
        if event_time is None or seen is None:
            return self.flush(now)
        return self.flush(event_time + max(timedelta(0), now - seen))

    def next_wakeup(self) -> datetime | None:
        if not self.windows.open_windows:
            return None
        if self.next_flush is None:
            self.next_flush = datetime.now(UTC) + self.flush_every
        return self.next_flush

    def is_idle(self) -> bool:
        return False

    def finish(self) -> list[LiveOutput]:
        """Close every open window (the input ended)."""
        return list(self.windows.flush())
