"""The analyst notebooks in notebooks/, executed on a synthetic analytics history.

One database is migrated and seeded for the module (three weeks, an injected incident and
two forecast runs); each test runs a notebook in a fresh kernel, as `jupyter execute`
would, and checks what it reports against the data.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nbformat
import psycopg
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_notebook

from sinks.migrations import apply_migrations
from triage.jobs.forecast_job import run_forecast
from triage.services import LocalPostgres
from triage.tools.sample_analytics import Incident, seed_analytics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
ANALYTICS_SQL = ROOT / "sql" / "analytics"
NAMES = ["volume_and_sla_trends", "anomaly_drilldown", "forecast_accuracy"]

END = datetime(2024, 6, 5, 12, tzinfo=UTC)
# A Monday-morning surge of technical tickets, after the detector's two weeks of warm-up.
INCIDENT = Incident("technical", datetime(2024, 6, 3, 10, tzinfo=UTC), hours=3, factor=4.0)


@pytest.fixture(scope="module")
def seeded_dsn(postgres: LocalPostgres) -> str:
    dsn = postgres.create_database(f"notebooks_{uuid.uuid4().hex[:8]}")
    apply_migrations(dsn, ANALYTICS_SQL)
    seed_analytics(dsn, days=21, end=END, tickets_per_minute=1.0, agents=2, incidents=[INCIDENT])
    # A second run a day after the first (made three days before the end), to compare runs.
    run_forecast(dsn, now=END - timedelta(days=2), history_days=18)
    return dsn


def _row(dsn: str, query: str, params: dict[str, Any] | None = None) -> tuple[Any, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return tuple(row)


def _execute(
    name: str, dsn: str, monkeypatch: pytest.MonkeyPatch, parameters: str = ""
) -> NotebookNode:
    """Run a notebook in a new kernel; ``parameters`` go in a cell after the tagged one."""
    monkeypatch.setenv("TRIAGE_ANALYTICS__DSN", dsn)
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    if parameters:
        tagged = next(
            i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])
        )
        nb.cells.insert(tagged + 1, new_code_cell(parameters))
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    return nb


def _outputs(nb: NotebookNode, kind: str) -> list[Any]:
    """Printed text (``stream``), rich text (``text/plain``) or images (``image/png``)."""
    found: list[Any] = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{out.ename}: {out.evalue}"
            if kind == "stream" and out.output_type == "stream":
                found.append(out.text)
            elif kind != "stream" and kind in out.get("data", {}):
                found.append(out.data[kind])
    return found


def _table(text: str) -> list[dict[str, str]]:
    """The rows of a polars frame's text rendering, as column -> cell text."""
    lines = [line for line in text.splitlines() if line.startswith("│")]
    cells = [[cell.strip() for cell in line.strip("│").split("┆")] for line in lines]
    header, body = cells[0], cells[3:]  # below the names: dashes, then the data types
    return [dict(zip(header, row, strict=True)) for row in body]


def _table_with(nb: NotebookNode, column: str) -> list[dict[str, str]]:
    tables = [_table(text) for text in _outputs(nb, "text/plain") if text.startswith("shape:")]
    matching = [t for t in tables if t and column in t[0]]
    assert len(matching) == 1, f"expected one table with a {column!r} column"
    return matching[0]


def test_notebooks_are_committed_clean() -> None:
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), name
        assert "TRIAGE_ANALYTICS__DSN" in code[0].source, name
        assert "parameters" in code[1].metadata.get("tags", []), name


def test_missing_dsn_stops_with_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIAGE_ANALYTICS__DSN", raising=False)
    # The first code cell of every notebook, in one kernel (starting one takes seconds).
    first_cells = []
    for name in NAMES:
        cells = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4).cells
        first = next(c for c in cells if c.cell_type == "code")
        first_cells.append(new_code_cell(first.source, id=name))
    nb = new_notebook(cells=first_cells)
    client = NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            with pytest.raises(CellExecutionError) as failure:
                client.execute_cell(cell, index)
            assert failure.value.ename == "RuntimeError", NAMES[index]
            assert failure.value.evalue.startswith("TRIAGE_ANALYTICS__DSN is not set")
            assert "%env TRIAGE_ANALYTICS__DSN=" in failure.value.evalue


def test_volume_and_sla_trends(seeded_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _execute("volume_and_sla_trends", seeded_dsn, monkeypatch)
    printed = "".join(_outputs(nb, "stream"))
    assert "Window: 2024-05-15 12:00 to 2024-06-05 12:00 UTC (21.0 days)" in printed
    # The headline counts what the hourly rollup holds for each week.
    week = timedelta(days=7)
    last_week, week_before = _row(
        seeded_dsn,
        "SELECT sum(created) FILTER (WHERE bucket >= %(cut)s),"
        "       sum(created) FILTER (WHERE bucket < %(cut)s)"
        "  FROM analytics.metrics_hourly"
        " WHERE dimension = 'all' AND bucket >= %(start)s AND bucket < %(end)s",
        {"start": END - 2 * week, "cut": END - week, "end": END},
    )
    assert re.search(rf"last 7 days: {last_week} \(the 7 days before: {week_before}, [+-]", printed)
    for metric in ("first_reply", "resolution"):
        found = re.search(rf"SLA {metric} met, last 7 days: ([\d.]+) %", printed)
        assert found is not None and 50.0 < float(found.group(1)) < 100.0
    wow = {row["dimension"]: row for row in _table_with(nb, "created_Δ%")}
    assert int(wow["all"]["created"]) == last_week
    assert {"category=technical", "priority=urgent", "channel=email"} <= set(wow)
    # The incident week: technical grew against the week before.
    assert float(wow["category=technical"]["created_Δ%"]) > 0
    assert len(_outputs(nb, "image/png")) >= 5


def test_anomaly_drilldown_explains_the_strongest(
    seeded_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    top_id, top_series = _row(
        seeded_dsn, "SELECT id, series FROM analytics.anomalies ORDER BY score DESC LIMIT 1"
    )
    assert top_series == "volume:category=technical"
    nb = _execute("anomaly_drilldown", seeded_dsn, monkeypatch)
    printed = "".join(_outputs(nb, "stream"))
    assert f"Anomaly #{top_id}: volume:category=technical, hour from Mon 2024-06-03 10:00 UTC" in (
        printed
    )
    breakdown = _table_with(nb, "detector_lift")
    # The category is the series' own: the breakdown is by channel and priority only.
    assert {row["dimension"] for row in breakdown} == {"channel", "priority"}
    assert all(float(row["now"]) > float(row["usual"]) for row in breakdown[:2])
    tickets = _table_with(nb, "subject")
    assert len(tickets) == 15
    assert {row["category"] for row in tickets} == {"technical"}
    assert all(row["created_at"].startswith("2024-06-03 10:") for row in tickets)
    assert len(_outputs(nb, "image/png")) == 2


def test_anomaly_drilldown_takes_an_anomaly_id(
    seeded_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    other, start = _row(
        seeded_dsn,
        "SELECT id, bucket_start FROM analytics.anomalies WHERE series = 'volume:all' "
        "ORDER BY bucket_start LIMIT 1",
    )
    # The surge of one category shows in the total within the incident's three hours.
    assert INCIDENT.start <= start < INCIDENT.start + timedelta(hours=INCIDENT.hours)
    nb = _execute("anomaly_drilldown", seeded_dsn, monkeypatch, f"ANOMALY_ID = {other}")
    printed = "".join(_outputs(nb, "stream"))
    hour = start.astimezone(UTC).strftime("%a %Y-%m-%d %H:%M")
    assert f"Anomaly #{other}: volume:all, hour from {hour} UTC" in printed
    # Over all tickets, the category is a driver and the technical surge shows in it.
    breakdown = _table_with(nb, "detector_lift")
    assert "category" in {row["dimension"] for row in breakdown}
    top_category = next(row for row in breakdown if row["dimension"] == "category")
    assert top_category["value"] == "technical"


def test_anomaly_drilldown_without_anomalies(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    apply_migrations(pg_dsn, ANALYTICS_SQL)
    nb = _execute("anomaly_drilldown", pg_dsn, monkeypatch)
    printed = "".join(_outputs(nb, "stream"))
    assert "No anomalies in analytics.anomalies: nothing to drill into." in printed
    assert "Nothing to plot." in printed and "No tickets to show." in printed
    assert _outputs(nb, "image/png") == []


def test_forecast_accuracy(seeded_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _execute("forecast_accuracy", seeded_dsn, monkeypatch)
    accuracy = _table_with(nb, "mase")
    series = {"all", "billing", "technical", "account", "shipping", "returns", "general"}
    assert {(row["run"], row["series"]) for row in accuracy} == {
        (run, s) for run in ("1", "2") for s in series
    }
    # Run 1 forecast from three days before the end, run 2 from two: 72 and 48 hours passed.
    assert {row["run"]: int(row["hours"]) for row in accuracy} == {"1": 72, "2": 48}
    for row in accuracy:
        for column in ("mae", "naive_mae", "mase", "naive_mase"):
            value = float(row[column])
            assert math.isfinite(value) and value > 0, (row, column)
        assert 0.0 <= float(row["coverage"]) <= 1.0
    printed = "".join(_outputs(nb, "stream"))
    assert re.search(r"14 forecasts scored: mean MASE \d+\.\d\d \(seasonal naive", printed)
    plan = _table_with(nb, "peak_agents")
    assert len(plan) == 8  # a week from noon: eight calendar days
    assert all(int(r["agent_hours_per_category"]) >= int(r["agent_hours"]) for r in plan)
    assert len(_outputs(nb, "image/png")) == 2
