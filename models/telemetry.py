"""Pipeline telemetry: what the CDC source and the sinks report, behind a tiny interface.

Why here: sinks and connectors must not import each other nor ``pipelines`` (imports only
go down a floor), and ``models`` imports no client library. So the ground floor holds the
interface, a no-op default and the pure computations (lag, latency, label values);
``pipelines.metrics`` implements the interface with ``prometheus_client`` and ``triage``
installs it at start-up. Unless one is installed, each report is a no-op call per batch.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

from models.events import RawChange
from models.helpdesk import RoutingDecision

log = logging.getLogger(__name__)


class Telemetry(Protocol):
    """Receives counts once per batch; implementations must be thread-safe."""

    def changes_read(self, tables: Mapping[str, int], lag_seconds: float | None) -> None:
        """Changes read by the CDC source per table, and the source lag after the batch."""

    def items_written(self, sink: str, kinds: Mapping[str, int]) -> None:
        """Items one sink committed, per table or item kind."""

    def sink_retry(self, sink: str) -> None:
        """A sink's write failed and will be retried."""

    def dead_letters(self, kinds: Mapping[tuple[str, str], int]) -> None:
        """Dead letters stored, per ``(stage, reason kind)``."""

    def decision_latencies(self, seconds: Sequence[float]) -> None:
        """Source commit → routing decision latency of each decision written."""

    def stage_latencies(self, stage: str, seconds: Sequence[float]) -> None:
        """Source commit → the moment items left ``stage`` (decode, enrich, ... sinks)."""

    def degraded(self, stage: str, parts: Sequence[str]) -> None:
        """Optional parts one event skipped in ``stage`` because its time budget was spent."""

    def source_in_flight(self, changes: int) -> None:
        """Changes the source emitted that are not durable yet (its back-pressure measure)."""


class NoTelemetry:
    """The default: reports go nowhere."""

    def changes_read(self, tables: Mapping[str, int], lag_seconds: float | None) -> None:
        pass

    def items_written(self, sink: str, kinds: Mapping[str, int]) -> None:
        pass

    def sink_retry(self, sink: str) -> None:
        pass

    def dead_letters(self, kinds: Mapping[tuple[str, str], int]) -> None:
        pass

    def decision_latencies(self, seconds: Sequence[float]) -> None:
        pass

    def stage_latencies(self, stage: str, seconds: Sequence[float]) -> None:
        pass

    def degraded(self, stage: str, parts: Sequence[str]) -> None:
        pass

    def source_in_flight(self, changes: int) -> None:
        pass


_NONE = NoTelemetry()
_current: Telemetry = _NONE


def telemetry() -> Telemetry:
    """The installed telemetry (a :class:`NoTelemetry` unless one was installed)."""
    return _current


def install_telemetry(new: Telemetry | None) -> Telemetry:
    """Install ``new`` for the whole process (``None``: none); returns the previous one."""
    global _current
    previous, _current = _current, new if new is not None else _NONE
    return previous


def enabled() -> bool:
    """Whether reports go anywhere, so callers can skip preparing them."""
    return _current is not _NONE


# -- pure computations -----------------------------------------------------------------------


def source_lag_seconds(committed_at: datetime, now: datetime) -> float:
    """Seconds from a change's source commit to ``now``; never negative (clock skew).

    Example:
        >>> t = datetime(2024, 1, 1, tzinfo=UTC)
        >>> source_lag_seconds(t, t.replace(second=3))
        3.0
    """
    return max(0.0, (now - committed_at).total_seconds())


def decision_latency_seconds(decision: RoutingDecision) -> float:
    """Seconds from the source commit of the change behind a decision to the decision."""
    return max(0.0, (decision.decided_at - decision.source_committed_at).total_seconds())


def table_of_topic(topic: str) -> str:
    """The table of a Debezium topic ``prefix.schema.table``.

    Example:
        >>> table_of_topic("triage.public.tickets")
        'tickets'
    """
    return topic.rsplit(".", 1)[-1]


def commit_time(change: RawChange) -> datetime | None:
    """The source commit time (``source.ts_ms``) of a Debezium envelope; ``None`` if absent."""
    if change.value is None:
        return None
    try:
        doc = json.loads(change.value)
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("payload"), dict):
        doc = doc["payload"]  # the envelope with its schema (JSON converter, schemas on)
    source = doc.get("source") if isinstance(doc, dict) else None
    ts_ms = source.get("ts_ms") if isinstance(source, dict) else None
    if not isinstance(ts_ms, int) or isinstance(ts_ms, bool):
        return None
    return datetime.fromtimestamp(ts_ms / 1000, UTC)


def dead_letter_kind(reason: str) -> str:
    """A bounded label for a dead letter's free-text reason.

    Example:
        >>> dead_letter_kind("bad row: 'subject' is missing")
        'bad_row'
        >>> dead_letter_kind("value is not acceptable JSON: ...")
        'malformed'
    """
    if reason.startswith("bad row"):
        return "bad_row"
    if reason.startswith("kafka error"):
        return "kafka_error"
    if reason.startswith("unexpected "):
        return "unexpected_error"
    return "malformed"


def kinds_of(items: Iterable[object]) -> Counter[str]:
    """Item counts per class name: the ``kind`` label of sinks without tables."""
    return Counter(type(item).__name__ for item in items)


# -- reports, one call per batch -------------------------------------------------------------


def report_changes(changes: Sequence[RawChange], now: datetime | None = None) -> None:
    """Count a source batch per table and set the lag from its newest change.

    An empty batch means the source found nothing new: it is caught up, so the lag is 0.
    Only the newest change's envelope is parsed, once per batch.
    """
    if not enabled():
        return
    if not changes:
        _current.changes_read({}, 0.0)
        return
    tables = Counter(table_of_topic(change.topic) for change in changes)
    committed = next(
        (t for t in (commit_time(c) for c in reversed(changes[-8:])) if t is not None), None
    )
    lag = None if committed is None else source_lag_seconds(committed, now or datetime.now(UTC))
    _current.changes_read(tables, lag)


def report_in_flight(changes: int) -> None:
    """Set how many emitted changes are not durable yet."""
    if enabled():
        _current.source_in_flight(changes)


def report_written(sink: str, items: Iterable[object]) -> None:
    """Count the items a sink committed per class name."""
    if enabled():
        _current.items_written(sink, kinds_of(items))


def report_dead_letters(stage_reasons: Iterable[tuple[str, str]]) -> None:
    """Count stored dead letters given their ``(stage, reason)``."""
    if enabled():
        kinds = Counter((stage, dead_letter_kind(reason)) for stage, reason in stage_reasons)
        if kinds:
            _current.dead_letters(kinds)


def report_decisions(items: Iterable[object]) -> None:
    """Observe the commit → decision latency of the routing decisions among ``items``."""
    if enabled():
        latencies = [
            decision_latency_seconds(item) for item in items if isinstance(item, RoutingDecision)
        ]
        if latencies:
            _current.decision_latencies(latencies)


def commit_time_of(item: object) -> datetime | None:
    """The source commit time an in-flow item carries, if any."""
    committed = getattr(item, "source_committed_at", None) or getattr(item, "committed_at", None)
    return committed if isinstance(committed, datetime) else None


_degraded_logged = 0.0


def report_degraded(stage: str, parts: Sequence[str]) -> None:
    """Count the parts an event skipped for time; log it at most every 10 s."""
    global _degraded_logged
    telemetry().degraded(stage, parts)
    now = time.monotonic()
    if now - _degraded_logged >= 10.0:
        _degraded_logged = now
        log.warning(
            "%s skipped %s for an event to keep within its time budget (counted in "
            "triage_degraded_parts_total; the ticket's `degraded` lists them)",
            stage,
            ", ".join(parts),
        )


def report_stage(stage: str, items: Iterable[object], now: datetime | None = None) -> None:
    """Observe source commit → now for the items that just left ``stage``."""
    if not enabled():
        return
    now = now or datetime.now(UTC)
    seconds = [
        max(0.0, (now - t).total_seconds())
        for t in (commit_time_of(i) for i in items)
        if t is not None
    ]
    if seconds:
        _current.stage_latencies(stage, seconds)


class StageRecorder:
    """Collects items leaving a dataflow step and reports their latency in small batches.

    One call per item (``op.inspect``) only appends; every ``every`` items, or when the
    oldest waits longer than ``max_wait`` seconds, the batch is reported at once.
    """

    def __init__(self, stage: str, every: int = 256, max_wait: float = 0.5) -> None:
        self.stage = stage
        self.every = every
        self.max_wait = max_wait
        self._seconds: list[float] = []
        self._first = 0.0
        self._lock = threading.Lock()

    def __call__(self, item: object) -> None:
        committed = commit_time_of(item)
        if committed is None:
            return
        now = datetime.now(UTC)
        with self._lock:
            if not self._seconds:
                self._first = time.monotonic()
            self._seconds.append(max(0.0, (now - committed).total_seconds()))
            if len(self._seconds) < self.every and time.monotonic() - self._first <= self.max_wait:
                return
            batch, self._seconds = self._seconds, []
        _current.stage_latencies(self.stage, batch)
