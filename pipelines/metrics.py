"""Prometheus metrics of the pipeline process.

:class:`PrometheusTelemetry` implements :class:`models.telemetry.Telemetry`, which the CDC
source and the sinks report to once per batch (see that module for why the interface lives
on the ground floor). The flow's own outcome counters (``FLOW_COUNTERS``) are read at
scrape time, so they cost the flow nothing. :func:`serve_metrics` installs the telemetry
and serves ``/metrics`` from a background thread of the pipeline process.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from models.telemetry import install_telemetry

log = logging.getLogger(__name__)

# From a healthy few milliseconds to a stalled minute.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Finer, for the per-stage breakdown that ``triage bench`` reads back.
STAGE_BUCKETS = (
    0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4,
    0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class _FlowCounters(Collector):
    """``triage_flow_events_total{outcome}`` from the flow's process-local counters."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        from pipelines.flow import FLOW_COUNTERS

        family = CounterMetricFamily(
            "triage_flow_events",
            "Change events seen by the flow's steps, per outcome.",
            labels=["outcome"],
        )
        for outcome, count in sorted(FLOW_COUNTERS.items()):
            family.add_metric([outcome], count)
        yield family


class _SnapshotCounters(Collector):
    """``triage_snapshots_total``, ``triage_snapshot_bytes_total`` and
    ``triage_snapshot_seconds_total`` per kind of state, from :data:`pipelines.state.SNAPSHOTS`,
    and the gauges ``triage_state_keys`` and ``triage_state_bytes`` of what is held now."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        from pipelines.state import SNAPSHOTS

        families = [
            CounterMetricFamily(
                "triage_snapshots", "Recovery snapshots taken, per state.", labels=["state"]
            ),
            CounterMetricFamily(
                "triage_snapshot_bytes",
                "Bytes handed to the recovery store by snapshots, per state.",
                labels=["state"],
            ),
            CounterMetricFamily(
                "triage_snapshot_seconds",
                "Worker time spent making recovery snapshots (decisions wait), per state.",
                labels=["state"],
            ),
        ]
        yield from _per_state(families, SNAPSHOTS.totals())
        held = [
            GaugeMetricFamily(
                "triage_state_keys", "Keys of each kind of state held now.", labels=["state"]
            ),
            GaugeMetricFamily(
                "triage_state_bytes",
                "Size of the latest recovery snapshot of the keys held now, per state (what "
                "the recovery store keeps for them; the objects in memory are larger).",
                labels=["state"],
            ),
        ]
        yield from _per_state(held, SNAPSHOTS.held())


Family = TypeVar("Family", CounterMetricFamily, GaugeMetricFamily)


def _per_state(families: list[Family], rows: Mapping[str, Sequence[float]]) -> list[Family]:
    """Each row's values, in order, as samples of ``families`` labelled with the state."""
    for state, values in sorted(rows.items()):
        for family, value in zip(families, values, strict=True):
            family.add_metric([state], value)
    return families


class _mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


@functools.cache
def _glibc_mallinfo() -> Callable[[], _mallinfo2] | None:
    """glibc's ``mallinfo2`` (2.33 and later), or None on other C libraries."""
    try:
        libc = ctypes.CDLL(None)
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _mallinfo2
    fn.argtypes = []
    return cast(Callable[[], _mallinfo2], fn)


def process_memory() -> dict[str, int]:
    """Where the process's memory is, as far as the allocators tell.

    ``python_blocks``: objects and buffers Python's allocator holds (a count; it grows
    with live objects, not with fragmentation). With glibc, from ``mallinfo2`` (all
    arenas): ``malloc_in_use`` bytes in allocated chunks, ``malloc_free`` bytes free
    inside the heap (kept by the allocator, resident if touched) and ``malloc_mmapped``
    bytes of large blocks in their own mappings. Python's small objects live in 256 KiB
    arenas of their own, which none of these count.
    """
    figures = {"python_blocks": sys.getallocatedblocks()}
    mallinfo = _glibc_mallinfo()
    if mallinfo is not None:
        info = mallinfo()
        figures.update(
            malloc_in_use=info.uordblks, malloc_free=info.fordblks, malloc_mmapped=info.hblkhd
        )
    return figures


class _ProcessMemory(Collector):
    """``triage_process_python_blocks`` and ``triage_process_malloc_bytes{part}``."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        figures = process_memory()
        yield GaugeMetricFamily(
            "triage_process_python_blocks",
            "Memory blocks held by Python's allocator (grows with live objects).",
            value=figures.pop("python_blocks"),
        )
        family = GaugeMetricFamily(
            "triage_process_malloc_bytes",
            "Bytes of the C allocator (glibc mallinfo2): in_use, free (kept in the heap), "
            "mmapped (large blocks).",
            labels=["part"],
        )
        for part, value in figures.items():
            family.add_metric([part.removeprefix("malloc_")], value)
        yield family


class PrometheusTelemetry:
    """The pipeline's metrics, registered on ``registry``.

    Args:
        registry: Where the metrics are registered; the process-wide default by default.
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.source_changes = Counter(
            "triage_source_changes",
            "Changes read by the CDC source, per table.",
            ["table"],
            registry=registry,
        )
        self.source_lag = Gauge(
            "triage_source_lag_seconds",
            "Now minus the source commit time of the newest change read; 0 when caught up.",
            registry=registry,
        )
        self.source_in_flight_changes = Gauge(
            "triage_source_in_flight_changes",
            "Changes the CDC source emitted that no complete epoch covers yet; the source "
            "pauses at TRIAGE_SOURCE__MAX_IN_FLIGHT.",
            registry=registry,
        )
        self.sink_items = Counter(
            "triage_sink_items",
            "Items committed by a sink, per table or item kind.",
            ["sink", "kind"],
            registry=registry,
        )
        self.sink_retries = Counter(
            "triage_sink_retries",
            "Failed sink writes that are retried.",
            ["sink"],
            registry=registry,
        )
        self.dead_letters_stored = Counter(
            "triage_dead_letters",
            "Dead letters stored, per stage and reason kind.",
            ["stage", "kind"],
            registry=registry,
        )
        self.degraded_parts = Counter(
            "triage_degraded_parts",
            "Optional parts (sentiment, categories, learned_priority, kb_suggestions) events "
            "skipped because their per-step time budget was spent.",
            ["stage", "part"],
            registry=registry,
        )
        self.decision_latency = Histogram(
            "triage_decision_latency_seconds",
            "Source commit to routing decision, per decision written to Redis.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.stage_latency = Histogram(
            "triage_stage_latency_seconds",
            "Source commit to the moment an item left a stage (decode, enrich, classify, "
            "route, write_analytics, write_live).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        registry.register(_FlowCounters())
        registry.register(_SnapshotCounters())
        registry.register(_ProcessMemory())

    def changes_read(self, tables: Mapping[str, int], lag_seconds: float | None) -> None:
        for table, count in tables.items():
            self.source_changes.labels(table=table).inc(count)
        if lag_seconds is not None:
            self.source_lag.set(lag_seconds)

    def items_written(self, sink: str, kinds: Mapping[str, int]) -> None:
        for kind, count in kinds.items():
            if count:
                self.sink_items.labels(sink=sink, kind=kind).inc(count)

    def sink_retry(self, sink: str) -> None:
        self.sink_retries.labels(sink=sink).inc()

    def dead_letters(self, kinds: Mapping[tuple[str, str], int]) -> None:
        for (stage, kind), count in kinds.items():
            self.dead_letters_stored.labels(stage=stage, kind=kind).inc(count)

    def decision_latencies(self, seconds: Sequence[float]) -> None:
        for value in seconds:
            self.decision_latency.observe(value)

    def stage_latencies(self, stage: str, seconds: Sequence[float]) -> None:
        child = self.stage_latency.labels(stage=stage)
        for value in seconds:
            child.observe(value)

    def source_in_flight(self, changes: int) -> None:
        self.source_in_flight_changes.set(changes)

    def degraded(self, stage: str, parts: Sequence[str]) -> None:
        for part in parts:
            self.degraded_parts.labels(stage=stage, part=part).inc()


@functools.cache
def prometheus_telemetry(registry: CollectorRegistry = REGISTRY) -> PrometheusTelemetry:
    """The telemetry of ``registry``, made once (a metric name registers only once)."""
    return PrometheusTelemetry(registry)


def install_prometheus(registry: CollectorRegistry = REGISTRY) -> PrometheusTelemetry:
    """Make the source and sinks of this process report to ``registry``."""
    telemetry = prometheus_telemetry(registry)
    install_telemetry(telemetry)
    return telemetry


def serve_metrics(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> Any:
    """Install the telemetry and serve ``http://host:port/metrics`` from a daemon thread.

    Returns:
        The HTTP server (``shutdown()`` stops it).
    """
    from prometheus_client import start_http_server

    install_prometheus(registry)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    log.info("pipeline metrics on http://%s:%d/metrics", host, port)
    return server
