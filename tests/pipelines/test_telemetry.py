"""The telemetry interface, its pure computations and the Prometheus implementation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from connectors.debezium import encode_envelope
from models.events import RawChange
from models.helpdesk import RoutingDecision
from models.telemetry import (
    NoTelemetry,
    commit_time,
    dead_letter_kind,
    decision_latency_seconds,
    enabled,
    install_telemetry,
    report_changes,
    report_dead_letters,
    report_decisions,
    report_written,
    source_lag_seconds,
    table_of_topic,
    telemetry,
)
from pipelines.metrics import PrometheusTelemetry

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def change(table: str, ts: datetime, *, schemas: bool = False) -> RawChange:
    value = encode_envelope(
        table=table,
        op="c",
        lsn=100,
        ts_ms=int(ts.timestamp() * 1000),
        after={"id": 1},
        schemas=schemas,
    )
    return RawChange(topic=f"triage.public.{table}", key=None, value=value)


def decision(decided: datetime, committed: datetime) -> RoutingDecision:
    return RoutingDecision(
        ticket_id=1,
        version=10,
        queue="billing",
        status="queued",
        agent_id=None,
        score=0.0,
        confidence=0.0,
        reasons=(),
        priority="normal",
        sla_deadline=None,
        model_version="v1",
        decided_at=decided,
        source_committed_at=committed,
    )


@pytest.fixture
def prom() -> Iterator[tuple[PrometheusTelemetry, CollectorRegistry]]:
    registry = CollectorRegistry()
    installed = PrometheusTelemetry(registry)
    previous = install_telemetry(installed)
    try:
        yield installed, registry
    finally:
        install_telemetry(previous)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


class TestComputations:
    def test_source_lag_is_seconds_since_commit(self) -> None:
        assert source_lag_seconds(T0, T0 + timedelta(seconds=2.5)) == 2.5

    def test_source_lag_never_negative(self) -> None:
        assert source_lag_seconds(T0 + timedelta(seconds=1), T0) == 0.0

    def test_decision_latency(self) -> None:
        d = decision(T0 + timedelta(milliseconds=40), T0)
        assert decision_latency_seconds(d) == pytest.approx(0.04)

    def test_table_of_topic(self) -> None:
        assert table_of_topic("triage.public.ticket_events") == "ticket_events"
        assert table_of_topic("tickets") == "tickets"

    @pytest.mark.parametrize("schemas", [False, True])
    def test_commit_time_from_envelope(self, schemas: bool) -> None:
        assert commit_time(change("tickets", T0, schemas=schemas)) == T0

    @pytest.mark.parametrize("raw", [None, b"not json", b"[]", b'{"source": {"ts_ms": "x"}}'])
    def test_commit_time_absent(self, raw: bytes | None) -> None:
        assert commit_time(RawChange(topic="t", key=None, value=raw)) is None

    @pytest.mark.parametrize(
        ("reason", "kind"),
        [
            ("bad row: 'subject' is missing", "bad_row"),
            ("kafka error _MSG_TIMED_OUT: timed out", "kafka_error"),
            ("unexpected KeyError: 'x'", "unexpected_error"),
            ("value is not acceptable JSON: Expecting value", "malformed"),
        ],
    )
    def test_dead_letter_kinds_are_bounded(self, reason: str, kind: str) -> None:
        assert dead_letter_kind(reason) == kind


class TestInstall:
    def test_default_is_a_no_op(self) -> None:
        assert isinstance(telemetry(), NoTelemetry)
        assert not enabled()
        report_changes([change("tickets", T0)])  # nothing to report to, nothing raised
        report_written("redis", [object()])

    def test_install_returns_previous(
        self, prom: tuple[PrometheusTelemetry, CollectorRegistry]
    ) -> None:
        installed, _ = prom
        assert telemetry() is installed
        assert enabled()
        assert install_telemetry(None) is installed
        assert isinstance(telemetry(), NoTelemetry)
        install_telemetry(installed)


class TestPrometheus:
    def test_changes_per_table_and_lag(
        self, prom: tuple[PrometheusTelemetry, CollectorRegistry]
    ) -> None:
        _, registry = prom
        batch = [change("tickets", T0), change("agents", T0), change("tickets", T0)]
        report_changes(batch, now=T0 + timedelta(seconds=3))
        assert value(registry, "triage_source_changes_total", table="tickets") == 2
        assert value(registry, "triage_source_changes_total", table="agents") == 1
        assert value(registry, "triage_source_lag_seconds") == 3.0

    def test_empty_batch_means_caught_up(
        self, prom: tuple[PrometheusTelemetry, CollectorRegistry]
    ) -> None:
        _, registry = prom
        report_changes([change("tickets", T0)], now=T0 + timedelta(seconds=5))
        report_changes([])
        assert value(registry, "triage_source_lag_seconds") == 0.0

    def test_items_retries_dead_letters(
        self, prom: tuple[PrometheusTelemetry, CollectorRegistry]
    ) -> None:
        installed, registry = prom
        report_written("redis", [decision(T0, T0), decision(T0, T0), "x"])
        installed.items_written("postgres", {"ticket_facts": 4, "dead_letters": 0})
        installed.sink_retry("postgres")
        report_dead_letters([("decode_cdc", "not JSON"), ("enrich_ticket", "bad row: x")] * 2)
        assert value(registry, "triage_sink_items_total", sink="redis", kind="RoutingDecision") == 2
        assert value(registry, "triage_sink_items_total", sink="redis", kind="str") == 1
        assert value(registry, "triage_sink_items_total", sink="postgres", kind="ticket_facts") == 4
        assert (
            registry.get_sample_value(
                "triage_sink_items_total", {"sink": "postgres", "kind": "dead_letters"}
            )
            is None
        )  # no series for nothing written
        assert value(registry, "triage_sink_retries_total", sink="postgres") == 1
        assert (
            value(registry, "triage_dead_letters_total", stage="decode_cdc", kind="malformed") == 2
        )
        assert (
            value(registry, "triage_dead_letters_total", stage="enrich_ticket", kind="bad_row") == 2
        )

    def test_decision_latency_histogram(
        self, prom: tuple[PrometheusTelemetry, CollectorRegistry]
    ) -> None:
        _, registry = prom
        report_decisions(
            [
                decision(T0 + timedelta(seconds=0.02), T0),
                "x",
                decision(T0 + timedelta(seconds=2), T0),
            ]
        )
        assert value(registry, "triage_decision_latency_seconds_count") == 2
        assert value(registry, "triage_decision_latency_seconds_sum") == pytest.approx(2.02)
        assert value(registry, "triage_decision_latency_seconds_bucket", le="0.025") == 1

    def test_flow_counters_read_at_scrape(
        self, prom: tuple[PrometheusTelemetry, CollectorRegistry]
    ) -> None:
        from pipelines.flow import FLOW_COUNTERS

        _, registry = prom
        before = value(registry, "triage_flow_events_total", outcome="events")
        FLOW_COUNTERS["events"] += 3
        try:
            assert value(registry, "triage_flow_events_total", outcome="events") == before + 3
        finally:
            FLOW_COUNTERS["events"] -= 3

    def test_snapshot_counters_count_what_the_recovery_store_is_handed(
        self, prom: tuple[PrometheusTelemetry, CollectorRegistry]
    ) -> None:
        from pipelines.state import _BufferLogic, _JournalLogic, _PickledFlatMapLogic

        _, registry = prom

        def counted(state: str) -> tuple[float, float]:
            return (
                value(registry, "triage_snapshots_total", state=state),
                value(registry, "triage_snapshot_bytes_total", state=state),
            )

        def add(total: list[object] | None, item: object) -> tuple[list[object], list[object]]:
            return [*(total or []), item], []

        plain = _PickledFlatMapLogic(add, None)
        plain.on_item(5)
        before = counted("list")
        data = plain.snapshot()
        after = counted("list")
        assert after[0] == before[0] + 1 and after[1] == before[1] + len(data)

        journaled = _JournalLogic(lambda s, v, now: add(s, v), None, timed=False, rebase=1.0)
        journaled.on_item("x" * 1000)  # a base larger than the next input's journal
        before = counted("list (journaled)")
        first = journaled.snapshot()  # the first snapshot is a base
        journaled.on_item(9)
        second = journaled.snapshot()  # then the base and the journal
        after = counted("list (journaled)")
        assert after[0] == before[0] + 2
        sizes = len(first.base) + len(second.base) + sum(map(len, second.journal))
        assert after[1] == before[1] + sizes and second.journal

        buffered = _BufferLogic(timedelta(seconds=5), 100, None)
        buffered.on_item("a")
        before = counted("buffer")
        _, chunks = buffered.snapshot()
        assert counted("buffer") == (before[0] + 1, before[1] + sum(map(len, chunks)))
        assert value(registry, "triage_snapshot_seconds_total", state="buffer") >= 0

    def test_held_state_is_the_keys_alive_and_their_latest_snapshots(
        self, prom: tuple[PrometheusTelemetry, CollectorRegistry]
    ) -> None:
        from pipelines.state import Journaled, _BufferLogic, _JournalLogic, _PickledFlatMapLogic

        _, registry = prom

        def held(state: str) -> tuple[float, float]:
            return (
                value(registry, "triage_state_keys", state=state),
                value(registry, "triage_state_bytes", state=state),
            )

        def keep(total: dict[str, int] | None, item: str) -> tuple[dict[str, int] | None, list]:
            if item == "end":
                return None, []
            return {**(total or {}), item: len(item)}, []

        start = held("dict")
        plain = _PickledFlatMapLogic(keep, None)
        plain.on_item("a")
        assert held("dict") == start  # nothing is held before its first snapshot
        first = plain.snapshot()
        assert held("dict") == (start[0] + 1, start[1] + len(first))
        plain.on_item("b" * 500)
        second = plain.snapshot()  # the same key: its latest snapshot replaces the first
        assert len(second) > len(first)
        assert held("dict") == (start[0] + 1, start[1] + len(second))
        plain.on_item("end")  # discarded: the store forgets it
        assert held("dict") == start

        # A key resumed from the recovery store is held from the start.
        journaled = _JournalLogic(lambda s, v, now: keep(s, v), None, timed=False, rebase=1.0)
        journaled.on_item("x")
        snap = journaled.snapshot()
        before = held("dict (journaled)")
        resumed = _JournalLogic(lambda s, v, now: keep(s, v), snap, timed=False, rebase=1.0)
        assert isinstance(snap, Journaled)
        size = len(snap.base) + sum(map(len, snap.journal))
        assert held("dict (journaled)") == (before[0] + 1, before[1] + size)
        resumed.on_item("end")
        assert held("dict (journaled)") == before

        start = held("buffer")
        buffered = _BufferLogic(timedelta(seconds=5), 100, None)
        buffered.on_item("a")
        _, chunks = buffered.snapshot()
        assert held("buffer") == (start[0] + 1, start[1] + sum(map(len, chunks)))
        buffered.on_notify()  # released downstream: nothing held
        assert held("buffer") == start

    def test_process_memory_gauges(
        self, prom: tuple[PrometheusTelemetry, CollectorRegistry]
    ) -> None:
        import sys

        _, registry = prom
        blocks = value(registry, "triage_process_python_blocks")
        assert blocks > 1000
        kept = [bytearray(64) for _ in range(20_000)]  # live objects raise the count
        assert value(registry, "triage_process_python_blocks") >= blocks + 15_000
        del kept
        if sys.platform == "linux":  # glibc's mallinfo2
            big = bytearray(1 << 20)  # served by malloc, not Python's small-object arenas
            assert value(registry, "triage_process_malloc_bytes", part="in_use") + value(
                registry, "triage_process_malloc_bytes", part="mmapped"
            ) >= len(big)
