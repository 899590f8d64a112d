"""``triage dashboards bench``: how long the dashboard's queries take over a long history.

Starts a private PostgreSQL (or uses ``dsn``), applies the analytics migrations, writes
``days`` of synthetic history (:mod:`triage.tools.sample_analytics`: about 300k minute-metric
rows and 860k agent-load samples for 30 days), then runs every panel's query over ranges
from one hour to the whole history, ``repeat`` times each, and reports the median, 95th
percentile and worst time per panel and range. The target is 50 ms per query.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from api.panels import PANELS

TARGET_MS = 50.0
RANGES: tuple[tuple[str, timedelta], ...] = (
    ("1h", timedelta(hours=1)),
    ("24h", timedelta(days=1)),
    ("3d", timedelta(days=3)),
    ("7d", timedelta(days=7)),
    ("30d", timedelta(days=30)),
)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def time_panels(
    dsn: str, *, repeat: int = 20, ranges: tuple[tuple[str, timedelta], ...] = RANGES
) -> list[dict[str, Any]]:
    """Time every panel over every range ending at the newest minute metric."""
    results: list[dict[str, Any]] = []
    with psycopg.connect(dsn, options="-c search_path=analytics,public") as conn:
        row = conn.execute("SELECT max(bucket) FROM analytics.metrics_minute").fetchone()
        if row is None or row[0] is None:
            raise RuntimeError("analytics.metrics_minute is empty: seed it first")
        end = row[0] + timedelta(minutes=1)
        for label, span in ranges:
            for panel in PANELS:
                query, params = panel.bind(end - span, end)
                conn.execute(query, params).fetchall()  # warm the cache and the plan
                times: list[float] = []
                rows = 0
                for _ in range(repeat):
                    started = time.perf_counter()
                    rows = len(conn.execute(query, params).fetchall())
                    times.append((time.perf_counter() - started) * 1000)
                results.append(
                    {
                        "range": label,
                        "panel": panel.id,
                        "rows": rows,
                        "width_seconds": int(params["width"].total_seconds()),
                        "p50_ms": round(statistics.median(times), 2),
                        "p95_ms": round(_percentile(times, 0.95), 2),
                        "max_ms": round(max(times), 2),
                    }
                )
    return results


def run_dashboard_bench(
    *,
    days: int = 30,
    repeat: int = 20,
    dsn: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Seed ``days`` of history into a fresh store and time the dashboard queries."""
    from sinks.migrations import apply_migrations
    from triage.runtime import SQL_DIR
    from triage.services import LocalPostgres
    from triage.tools.sample_analytics import seed_analytics

    say = progress or (lambda _: None)
    with tempfile.TemporaryDirectory(prefix="triage-dashboard-bench-") as tmp:
        pg: LocalPostgres | None = None
        if dsn is None:
            say("starting a private PostgreSQL")
            pg = LocalPostgres(Path(tmp)).start()
            dsn = pg.dsn
        try:
            apply_migrations(dsn, SQL_DIR / "analytics", schema="analytics")
            started = time.perf_counter()
            summary = seed_analytics(dsn, days=days, progress=lambda s: say(f"seeding: {s}"))
            seeded_s = time.perf_counter() - started
            say("timing queries")
            results = time_panels(dsn, repeat=repeat)
        finally:
            if pg is not None:
                pg.stop()
    worst = max(results, key=lambda r: r["p95_ms"])
    long_range = [r for r in results if r["range"] == f"{days}d"] or results
    return {
        "days": days,
        "repeat": repeat,
        "rows": summary.rows,
        "seed_seconds": round(seeded_s, 1),
        "target_ms": TARGET_MS,
        "worst": {k: worst[k] for k in ("range", "panel", "p95_ms")},
        "max_p95_ms_longest_range": max(r["p95_ms"] for r in long_range),
        "within_target": all(r["p95_ms"] <= TARGET_MS for r in results),
        "queries": results,
    }
