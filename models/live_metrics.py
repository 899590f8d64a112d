"""Live metrics of the ticket stream: minute windows and hourly anomaly detection.

One :class:`LiveMetrics` turns finished ticket changes and SLA events into window inputs
(created, solved, reopened, first reply, breach; by category, priority and channel), and
counts new tickets per hour and category for the anomaly detector, with the channel, the
customer and the priority as candidate drivers. Hours are fed to the detector in order,
zeros included, once the stream's event time has moved past them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from models.anomaly import AnomalyAlert, VolumeAnomalyDetector
from models.helpdesk import DONE_STATUSES, EnrichedTicket
from models.sla import SlaEvent
from models.windows import MinuteWindows, WindowInput, WindowResult

LiveOutput = WindowResult | AnomalyAlert

_HOUR = timedelta(hours=1)


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


@dataclass
class LiveMetrics:
    """Windowed metrics and volume anomalies over the whole stream.

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
    flush_every: timedelta = timedelta(seconds=15)
    next_flush: datetime | None = None
    last_ticket_at: datetime | None = None

    def on_ticket(self, et: EnrichedTicket) -> list[LiveOutput]:
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
        if self.last_ticket_at is None or et.committed_at > self.last_ticket_at:
            self.last_ticket_at = et.committed_at
        out: list[LiveOutput] = []
        if kind is None:
            return out
        out += self._advance_hours(et.committed_at)
        if kind == "created":
            self._count(f"volume:category={et.category}", et)
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
        dims = self.categories.get(event.ticket_id, {})
        if event.kind == "breach":
            kind = "breach"
        elif event.kind == "fulfill" and event.metric == "first_reply":
            kind = "first_reply"
        else:
            return []
        # SLA events come from the queue step (breaches on a timer), another path than
        # ticket changes: they may be placed in time but never move the watermark past
        # the ticket stream, or on-time ticket changes would count as too late.
        at = event.at
        if self.last_ticket_at is not None and at > self.last_ticket_at:
            at = self.last_ticket_at
        out = self._advance_hours(at)
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

    def _count(self, series: str, et: EnrichedTicket) -> None:
        self.known_series.add(series)
        self.counts[series] += 1
        by_dim = self.drivers.setdefault(series, {})
        for dim, value in (
            ("channel", et.ticket.channel),
            ("priority", et.priority),
            ("customer", str(et.ticket.customer_id)),
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
                score = self.detector.update(
                    series,
                    self.current_hour,
                    self.counts.get(series, 0.0),
                    drivers=self.drivers.get(series),
                )
                if score.alert is not None:
                    out.append(score.alert)
            self.counts = defaultdict(float)
            self.drivers = {}
            self.current_hour += _HOUR
        return out

    def flush(self, watermark: datetime) -> list[LiveOutput]:
        """Close windows up to ``watermark`` (processing time when the stream is quiet)."""
        return list(self.windows.advance(watermark))

    # Timer protocol of the dataflow's timed state: quiet streams still close windows.

    def tick(self, now: datetime) -> list[LiveOutput]:
        self.next_flush = now + self.flush_every
        return self.flush(now)

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
