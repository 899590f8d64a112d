"""Dashboard panels over a seeded history: the API, the hourly rollups against the minute
tables they summarise, and the Grafana dashboard's SQL against the built-in one."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.panels import PANELS, PANELS_BY_ID
from api.routes.dashboard import json_value
from api.settings import ApiSettings
from triage.tools.grafana import GRAFANA_JSON, render
from triage.tools.sample_analytics import SeedSummary

pytestmark = pytest.mark.integration

END = datetime.fromisoformat("2026-03-02T00:00:00+00:00")


@pytest.fixture(scope="module")
def client(seeded_analytics: tuple[str, SeedSummary], redis_server: Any) -> Iterator[TestClient]:
    dsn, _ = seeded_analytics
    app = create_app(
        ApiSettings(redis_url=redis_server.url, analytics_dsn=dsn, auth_required=False)
    )
    with TestClient(app) as c:
        yield c


def _panel(client: TestClient, panel_id: str, range_: str) -> dict[str, Any]:
    response = client.get(
        f"/v1/dashboard/panels/{panel_id}", params={"range": range_, "end": END.isoformat()}
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _scalar(dsn: str, query: str, params: tuple[Any, ...]) -> Any:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def test_lists_every_panel(client: TestClient) -> None:
    listed = client.get("/v1/dashboard/panels").json()
    assert [p["id"] for p in listed] == [p.id for p in PANELS]
    assert {p["format"] for p in listed} == {"wide", "long", "table"}


@pytest.mark.parametrize("range_", ["24h", "3d", "7d", "14d"])
def test_volume_totals_match_the_minute_metrics(
    client: TestClient, seeded_analytics: tuple[str, SeedSummary], range_: str
) -> None:
    """Short ranges read minute rows, long ones hourly rollups: the totals agree."""
    dsn, _ = seeded_analytics
    data = _panel(client, "volume", range_)
    span = {"24h": 1, "3d": 3, "7d": 7, "14d": 14}[range_]
    expected = _scalar(
        dsn,
        "SELECT sum(created) FROM analytics.metrics_minute WHERE dimension = 'all'"
        " AND bucket >= %s AND bucket < %s",
        (END - timedelta(days=span), END),
    )
    created = data["columns"].index("created")
    assert sum(r[created] for r in data["rows"]) == expected > 0
    assert data["width_seconds"] == {"24h": 300, "3d": 900, "7d": 3600, "14d": 10800}[range_]
    # Buckets are aligned and inside the range.
    times = [datetime.fromisoformat(r[0]) for r in data["rows"]]
    assert times == sorted(times)
    assert all(END - timedelta(days=span) <= t < END for t in times)


def test_category_volume_adds_up_to_the_total(client: TestClient) -> None:
    total = sum(r[1] for r in _panel(client, "volume", "7d")["rows"])
    by_category = _panel(client, "volume_by_category", "7d")
    assert by_category["columns"] == ["time", "metric", "value"]
    assert {r[1] for r in by_category["rows"]} >= {"billing", "technical", "account"}
    assert sum(r[2] for r in by_category["rows"]) == total


def test_sla_compliance_is_the_same_from_events_and_from_rollups(
    client: TestClient, seeded_analytics: tuple[str, SeedSummary]
) -> None:
    dsn, _ = seeded_analytics
    with psycopg.connect(dsn) as conn:
        events = conn.execute(
            "SELECT count(*) FILTER (WHERE kind = 'fulfill' AND NOT breached),"
            " count(*) FILTER (WHERE kind = 'breach') FROM analytics.sla_events"
            " WHERE at >= %s AND at < %s",
            (END - timedelta(days=3), END),
        ).fetchone()
    assert events is not None
    met, missed = events
    assert met > 0 and missed > 0
    with psycopg.connect(dsn) as conn:
        hourly = conn.execute(
            "SELECT sum(met), sum(missed) FROM analytics.sla_hourly WHERE bucket >= %s"
            " AND bucket < %s",
            (END - timedelta(days=3), END),
        ).fetchone()
    assert hourly == (met, missed)
    rows = _panel(client, "sla_compliance", "3d")["rows"]
    assert all(0 <= r[1] <= 100 for r in rows if r[1] is not None)
    assert min(r[1] for r in rows if r[1] is not None) < 100


def test_forecast_panel_compares_the_latest_forecast_with_actuals(client: TestClient) -> None:
    data = _panel(client, "forecast_vs_actual", "7d")
    assert data["columns"] == ["time", "actual", "forecast", "lower", "upper"]
    both = [r for r in data["rows"] if r[1] is not None and r[2] is not None]
    # The forecast job ran three days before the end of the history.
    assert 60 <= len(both) <= 72
    assert all(r[3] <= r[2] <= r[4] for r in both)


def test_anomalies_panel_lists_the_injected_incident(client: TestClient) -> None:
    data = _panel(client, "anomalies", "7d")
    series = data["columns"].index("series")
    found = {r[series] for r in data["rows"]}
    assert "volume:category=billing" in found
    row = next(r for r in data["rows"] if r[series] == "volume:category=billing")
    assert row[0].startswith("2026-02-27T1")  # within the incident, 10:00-13:00
    assert "category:billing" in json.loads(row[data["columns"].index("drivers")])


def test_agent_load_is_a_percentage_with_burnout(client: TestClient) -> None:
    for range_ in ("24h", "7d"):
        rows = _panel(client, "agent_load", range_)["rows"]
        assert rows and all(0 <= r[1] <= 100 for r in rows)
        assert max(r[2] for r in rows) > 0


def test_bad_requests_are_explained(client: TestClient) -> None:
    missing = client.get("/v1/dashboard/panels/nope")
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]
    bad = client.get("/v1/dashboard/panels/volume", params={"range": "soon"})
    assert bad.status_code == 422
    assert "24h" in bad.json()["detail"]


def test_page_is_served(client: TestClient) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/v1/dashboard/panels" in page.text
    # Self-contained: no external scripts, styles or fonts.
    assert not re.search(r"(src|href)=\"https?://", page.text)


def test_committed_grafana_dashboard_is_generated_from_the_panels() -> None:
    assert GRAFANA_JSON.read_text(encoding="utf-8") == render(), (
        "infra/grafana/dashboards/smart-triage.json is stale: run `triage dashboards grafana`"
    )


def _grafana_to_sql(raw: str, start: datetime, end: datetime, interval_ms: int) -> str:
    """Expand the Grafana macros the dashboard uses, as Grafana's PostgreSQL source does."""
    text = raw.replace("$__timeFrom()", f"'{start.isoformat()}'::timestamptz")
    text = text.replace("$__timeTo()", f"'{end.isoformat()}'::timestamptz")
    text = text.replace("$__interval_ms", str(interval_ms))
    assert "$" not in text.replace("$__", ""), "unexpanded placeholder"
    return text


@pytest.mark.parametrize(("days", "interval_ms"), [(1, 300_000), (14, 10_800_000)])
def test_grafana_queries_return_what_the_built_in_dashboard_shows(
    client: TestClient, seeded_analytics: tuple[str, SeedSummary], days: int, interval_ms: int
) -> None:
    dsn, _ = seeded_analytics
    dashboard = json.loads(Path(GRAFANA_JSON).read_text(encoding="utf-8"))
    panels = {p["title"]: p for p in dashboard["panels"]}
    assert set(panels) == {p.title for p in PANELS}
    start = END - timedelta(days=days)
    with psycopg.connect(dsn, options="-c search_path=analytics,public") as conn:
        for title, grafana_panel in panels.items():
            panel = next(p for p in PANELS if p.title == title)
            assert grafana_panel["datasource"]["uid"] == "triage-analytics"
            target = grafana_panel["targets"][0]
            assert target["format"] == ("table" if panel.format == "table" else "time_series")
            query = _grafana_to_sql(target["rawSql"], start, END, interval_ms)
            got = [[json_value(v) for v in r] for r in conn.execute(query).fetchall()]
            built_in = _panel(client, panel.id, f"{days}d")
            # Both pick the same bucket width for these ranges, so the rows are identical.
            assert built_in["width_seconds"] * 1000 == max(
                interval_ms, int(panel.min_width.total_seconds() * 1000)
            )
            assert got == built_in["rows"], title
            assert len(got) > 0 or panel.id == "anomalies", title
        annotations = dashboard["annotations"]["list"][0]["target"]["rawSql"]
        notes = conn.execute(_grafana_to_sql(annotations, start, END, interval_ms)).fetchall()
    assert any("billing" in text for _, text, _ in notes) == (days >= 3)


def test_panel_widths_never_exceed_the_point_budget() -> None:
    for span in (timedelta(hours=1), timedelta(days=1), timedelta(days=30), timedelta(days=365)):
        for panel in PANELS:
            width = panel.width_for(END - span, END)
            assert width >= panel.min_width
            assert span / width <= 300 or width == timedelta(days=1)
    assert PANELS_BY_ID["volume"].width_for(END - timedelta(days=3), END) < timedelta(hours=1)
