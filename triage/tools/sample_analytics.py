"""A synthetic but realistic analytics history, for dashboards, notebooks and benchmarks.

The pipeline fills the analytics store as tickets flow; a fresh install has minutes of
data, and the dashboard benchmark needs 30 days. :func:`seed_analytics` writes a history
of ``days`` days ending at ``end`` straight into the analytics tables, shaped like what
the pipeline writes:

* tickets arrive as a Poisson process with a daily and a weekly rhythm (quiet nights and
  weekends), with a category, priority and channel each;
* first reply and resolution times are log-normal, longer for lower priorities; a target
  missed is an SLA breach at its deadline;
* ``metrics_minute`` holds, per minute and dimension (``all``, ``category=…``,
  ``priority=…``, ``channel=…``), the counts, backlog, percentiles and breaches of those
  tickets, as the windowed-metrics step computes them;
* ``agent_load`` samples every agent each minute, following the same rhythm;
* ``incidents`` (category, start, hours, factor) multiply a category's arrivals, and the
  project's own anomaly detector runs over the hourly counts to fill ``anomalies``;
* the forecast job runs ``forecast_lag`` before the end, so forecasts overlap actuals.

Rows are written with COPY; the whole history is deterministic for a given ``seed``.

Kept as one module: every table of the generated history is drawn from one
seeded set of tickets, so the tables agree with each other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import psycopg

from models.anomaly import VolumeAnomalyDetector
from sinks.postgres import AGENT_LOAD_COLUMNS, ANOMALY_COLUMNS

CATEGORIES: dict[str, float] = {
    "billing": 0.28,
    "technical": 0.30,
    "account": 0.17,
    "shipping": 0.12,
    "returns": 0.08,
    "general": 0.05,
}
PRIORITIES: dict[str, float] = {"low": 0.25, "normal": 0.5, "high": 0.2, "urgent": 0.05}
CHANNELS: dict[str, float] = {"email": 0.45, "web": 0.3, "chat": 0.2, "phone": 0.05}
TIERS: dict[str, float] = {"standard": 0.7, "premium": 0.25, "enterprise": 0.05}

# Median minutes to first reply and to resolution, and the SLA targets, per priority.
_FIRST_REPLY_MEDIAN = {"low": 240.0, "normal": 120.0, "high": 45.0, "urgent": 12.0}
_RESOLUTION_MEDIAN = {"low": 2880.0, "normal": 1440.0, "high": 480.0, "urgent": 150.0}
_FIRST_REPLY_TARGET = {"low": 720.0, "normal": 480.0, "high": 120.0, "urgent": 30.0}
_RESOLUTION_TARGET = {"low": 7200.0, "normal": 4320.0, "high": 1440.0, "urgent": 480.0}

# Relative arrival rate per hour of day (UTC) and per weekday (Monday first).
_HOUR_SHAPE = np.array(
    [0.15, 0.1, 0.1, 0.1, 0.15, 0.25, 0.5, 0.9, 1.4, 1.8, 1.9, 1.8,
     1.5, 1.6, 1.7, 1.6, 1.4, 1.1, 0.8, 0.6, 0.45, 0.35, 0.25, 0.2]
)  # fmt: skip
_DAY_SHAPE = np.array([1.3, 1.15, 1.05, 1.0, 0.9, 0.35, 0.3])


@dataclass(frozen=True)
class Incident:
    """A stretch during which one category receives ``factor`` times its usual tickets."""

    category: str
    start: datetime
    hours: int = 3
    factor: float = 4.0


@dataclass
class SeedSummary:
    """What :func:`seed_analytics` wrote, per table, and the span it covers."""

    start: datetime
    end: datetime
    rows: dict[str, int] = field(default_factory=dict)
    incidents: list[Incident] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "rows": dict(self.rows),
            "incidents": [
                {
                    "category": i.category,
                    "start": i.start.isoformat(),
                    "hours": i.hours,
                    "factor": i.factor,
                }
                for i in self.incidents
            ],
        }


def _pick(rng: np.random.Generator, shares: dict[str, float], n: int) -> np.ndarray:
    names = np.array(list(shares), dtype=object)
    p = np.array(list(shares.values()), dtype=float)
    return names[rng.choice(len(names), size=n, p=p / p.sum())]


def default_incidents(start: datetime, end: datetime) -> list[Incident]:
    """One weekday-morning incident per full week after the first two weeks of history."""
    out: list[Incident] = []
    categories = ["technical", "billing", "shipping", "account"]
    day = (start + timedelta(days=15)).replace(hour=0, minute=0, second=0, microsecond=0)
    while day + timedelta(days=1) < end:
        if day.weekday() == 2:  # Wednesdays, 10:00 UTC
            out.append(Incident(categories[len(out) % len(categories)], day + timedelta(hours=10)))
        day += timedelta(days=1)
    return out


def _tickets(
    rng: np.random.Generator,
    start: datetime,
    minutes: int,
    per_minute: float,
    incidents: Sequence[Incident],
) -> pl.DataFrame:
    offsets = np.arange(minutes)
    stamps = [start + timedelta(minutes=int(m)) for m in range(0, minutes, 60)]
    hour_rate = np.array([_HOUR_SHAPE[s.hour] * _DAY_SHAPE[s.weekday()] for s in stamps])
    rate = per_minute * np.repeat(hour_rate, 60)[:minutes]
    counts = rng.poisson(rate)
    minute_of = np.repeat(offsets, counts)
    n = len(minute_of)
    category = _pick(rng, CATEGORIES, n)
    # Incidents: extra tickets of one category, on top of the usual ones.
    extra_minutes: list[np.ndarray] = []
    extra_category: list[np.ndarray] = []
    for inc in incidents:
        first = int((inc.start - start).total_seconds() // 60)
        span = np.arange(max(0, first), min(minutes, first + inc.hours * 60))
        if len(span) == 0:
            continue
        usual = rate[span] * CATEGORIES.get(inc.category, 0.1)
        more = rng.poisson(usual * (inc.factor - 1.0))
        extra_minutes.append(np.repeat(span, more))
        extra_category.append(np.full(int(more.sum()), inc.category, dtype=object))
    if extra_minutes:
        minute_of = np.concatenate([minute_of, *extra_minutes])
        category = np.concatenate([category, *extra_category])
        n = len(minute_of)
    created_s = minute_of * 60.0 + rng.uniform(0, 60, n)
    priority = _pick(rng, PRIORITIES, n)
    fr_median = np.array([_FIRST_REPLY_MEDIAN[p] for p in priority])
    res_median = np.array([_RESOLUTION_MEDIAN[p] for p in priority])
    first_reply_min = fr_median * rng.lognormal(0.0, 0.8, n)
    resolution_min = np.maximum(first_reply_min + 1.0, res_median * rng.lognormal(0.0, 0.7, n))
    return pl.DataFrame(
        {
            "ticket_id": np.arange(1, n + 1, dtype=np.int64),
            "created_s": created_s,
            "category": category.astype(str),
            "priority": priority.astype(str),
            "channel": _pick(rng, CHANNELS, n).astype(str),
            "tier": _pick(rng, TIERS, n).astype(str),
            "customer_id": rng.integers(1, max(2, n // 4), n),
            "first_reply_s": created_s + first_reply_min * 60.0,
            "resolution_s": created_s + resolution_min * 60.0,
            "first_reply_target_s": created_s
            + np.array([_FIRST_REPLY_TARGET[p] for p in priority]) * 60.0,
            "resolution_target_s": created_s
            + np.array([_RESOLUTION_TARGET[p] for p in priority]) * 60.0,
        }
    ).sort("created_s")


def _metrics_minute(tickets: pl.DataFrame, start: datetime, horizon_s: float) -> pl.DataFrame:
    """The windowed-metrics rows of these tickets: per minute and dimension."""
    dims = ["category", "priority", "channel"]
    frames = []
    for dim in [None, *dims]:
        key = pl.lit("all") if dim is None else pl.format(f"{dim}={{}}", pl.col(dim))
        t = tickets.with_columns(dimension=key)
        events = pl.concat(
            [
                t.select("dimension", m=(pl.col("created_s") // 60), created=pl.lit(1)),
                t.filter(pl.col("resolution_s") < horizon_s).select(
                    "dimension",
                    m=(pl.col("resolution_s") // 60),
                    solved=pl.lit(1),
                    res=(pl.col("resolution_s") - pl.col("created_s")),
                ),
                t.filter(pl.col("first_reply_s") < horizon_s).select(
                    "dimension",
                    m=(pl.col("first_reply_s") // 60),
                    fr=(pl.col("first_reply_s") - pl.col("created_s")),
                ),
                t.filter(
                    (pl.col("first_reply_s") > pl.col("first_reply_target_s"))
                    & (pl.col("first_reply_target_s") < horizon_s)
                ).select("dimension", m=(pl.col("first_reply_target_s") // 60), breach=pl.lit(1)),
                t.filter(
                    (pl.col("resolution_s") > pl.col("resolution_target_s"))
                    & (pl.col("resolution_target_s") < horizon_s)
                ).select("dimension", m=(pl.col("resolution_target_s") // 60), breach=pl.lit(1)),
            ],
            how="diagonal",
        )
        frames.append(
            events.group_by("dimension", "m")
            .agg(
                created=pl.col("created").sum(),
                solved=pl.col("solved").sum(),
                first_reply_p50_seconds=pl.col("fr").quantile(0.5, "linear"),
                first_reply_p90_seconds=pl.col("fr").quantile(0.9, "linear"),
                resolution_p50_seconds=pl.col("res").quantile(0.5, "linear"),
                resolution_p90_seconds=pl.col("res").quantile(0.9, "linear"),
                breaches=pl.col("breach").sum(),
            )
            .sort("dimension", "m")
            .with_columns(
                backlog=(pl.col("created").cum_sum() - pl.col("solved").cum_sum()).over("dimension")
            )
        )
    base = start.replace(tzinfo=UTC) if start.tzinfo is None else start
    return (
        pl.concat(frames)
        .with_columns(
            bucket=pl.lit(base) + pl.duration(minutes=pl.col("m").cast(pl.Int64)),
            reopened=pl.lit(0),
            late_events=pl.lit(0),
        )
        .select(
            "bucket",
            "dimension",
            "created",
            "solved",
            "reopened",
            "backlog",
            "first_reply_p50_seconds",
            "first_reply_p90_seconds",
            "resolution_p50_seconds",
            "resolution_p90_seconds",
            "breaches",
            "late_events",
        )
    )


def _copy(conn: psycopg.Connection[Any], table: str, columns: Sequence[str], rows: Any) -> int:
    n = 0
    cols = ", ".join(columns)
    with conn.cursor() as cur, cur.copy(f"COPY analytics.{table} ({cols}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def seed_analytics(
    dsn: str,
    *,
    days: int = 30,
    end: datetime | None = None,
    tickets_per_minute: float = 1.5,
    agents: int = 20,
    incidents: Sequence[Incident] | None = None,
    forecast_lag: timedelta = timedelta(days=3),
    seed: int = 7,
    progress: Callable[[str], None] | None = None,
) -> SeedSummary:
    """Write ``days`` of synthetic history ending at ``end`` into the analytics tables.

    The tables must exist (run the migrations first); rows already there are kept, so
    seed an empty store. ``incidents=None`` injects :func:`default_incidents`.
    """
    say = progress or (lambda _: None)
    # Whole hours, so that hourly rollups and the detector's buckets line up with clocks.
    end = (end or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    minutes = days * 24 * 60
    incidents = list(default_incidents(start, end) if incidents is None else incidents)
    rng = np.random.default_rng(seed)
    summary = SeedSummary(start=start, end=end, incidents=incidents)
    horizon_s = float(minutes * 60)

    say("tickets")
    tickets = _tickets(rng, start, minutes, tickets_per_minute, incidents)
    say("minute metrics")
    metrics = _metrics_minute(tickets, start, horizon_s)

    def at(seconds: float) -> datetime:
        return start + timedelta(seconds=seconds)

    with psycopg.connect(dsn) as conn:
        say("ticket facts")
        fact_cols = (
            "ticket_id", "version", "customer_id", "customer_tier", "channel", "status",
            "priority", "category", "queue", "language", "language_confidence",
            "assigned_agent_id", "subject", "created_at", "updated_at", "first_reply_at",
            "solved_at", "sla_breached", "source_committed_at", "enriched_at",
        )  # fmt: skip
        facts = (
            (
                r["ticket_id"],
                r["ticket_id"],
                r["customer_id"],
                r["tier"],
                r["channel"],
                "solved" if r["resolution_s"] < horizon_s else "open",
                r["priority"],
                r["category"],
                r["category"],
                "en",
                0.99,
                1 + r["ticket_id"] % agents,
                f"{r['category']} question #{r['ticket_id']}",
                at(r["created_s"]),
                at(min(r["resolution_s"], horizon_s - 1)),
                at(r["first_reply_s"]) if r["first_reply_s"] < horizon_s else None,
                at(r["resolution_s"]) if r["resolution_s"] < horizon_s else None,
                bool(
                    r["first_reply_s"] > r["first_reply_target_s"]
                    or r["resolution_s"] > r["resolution_target_s"]
                ),
                at(r["created_s"]),
                at(r["created_s"] + 0.05),
            )
            for r in tickets.iter_rows(named=True)
        )
        summary.rows["ticket_facts"] = _copy(conn, "ticket_facts", fact_cols, facts)

        say("SLA events")
        sla_cols = (
            "ticket_id", "metric", "kind", "at", "deadline", "policy",
            "business_seconds_elapsed", "paused_seconds", "breached",
        )  # fmt: skip

        def sla_rows() -> Any:
            for r in tickets.iter_rows(named=True):
                policy = f"{r['tier']}-{r['priority']}"
                created = r["created_s"]
                for metric, done, due in (
                    ("first_reply", r["first_reply_s"], r["first_reply_target_s"]),
                    ("resolution", r["resolution_s"], r["resolution_target_s"]),
                ):
                    yield (
                        r["ticket_id"],
                        metric,
                        "apply",
                        at(created),
                        at(due),
                        policy,
                        0.0,
                        0.0,
                        False,
                    )
                    if due < min(done, horizon_s):
                        yield (
                            r["ticket_id"],
                            metric,
                            "breach",
                            at(due),
                            at(due),
                            policy,
                            due - created,
                            0.0,
                            True,
                        )
                    if done < horizon_s:
                        yield (
                            r["ticket_id"],
                            metric,
                            "fulfill",
                            at(done),
                            None,
                            policy,
                            done - created,
                            0.0,
                            done > due,
                        )

        summary.rows["sla_events"] = _copy(conn, "sla_events", sla_cols, sla_rows())

        say("minute metrics")
        summary.rows["metrics_minute"] = _copy(
            conn, "metrics_minute", metrics.columns, metrics.iter_rows()
        )

        say("agent load")
        summary.rows["agent_load"] = _copy(
            conn,
            "agent_load",
            AGENT_LOAD_COLUMNS,
            _agent_load(rng, start, minutes, agents),
        )

        say("anomalies")
        summary.rows["anomalies"] = _copy(
            conn,
            "anomalies",
            ANOMALY_COLUMNS,
            _anomalies(tickets, start, days),
        )
        say("hourly rollups")
        has_rollups = conn.execute(
            "SELECT to_regprocedure('analytics.refresh_rollups(timestamptz[])')"
        ).fetchone()
        if has_rollups is not None and has_rollups[0] is not None:
            conn.execute(
                "SELECT analytics.refresh_rollups(array(SELECT generate_series("
                "%s::timestamptz, %s::timestamptz, interval '1 hour')))",
                (start, end),
            )
        conn.commit()

    say("forecast")
    from triage.jobs.forecast_job import run_forecast

    run_forecast(dsn, now=end - forecast_lag, history_days=max(7, days - 3))
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM analytics.forecasts").fetchone()
        summary.rows["forecasts"] = int(row[0]) if row else 0
        conn.execute("ANALYZE")
    return summary


def _agent_load(rng: np.random.Generator, start: datetime, minutes: int, agents: int) -> Any:
    """Per-minute samples of every agent: load follows the arrival rhythm, and the burnout
    risk is a slowly smoothed utilisation, higher after hours."""
    queues = list(CATEGORIES)
    capacity = rng.integers(6, 12, agents)
    queue_of = [queues[a % len(queues)] for a in range(agents)]
    stamps = [start + timedelta(minutes=m) for m in range(minutes)]
    level = np.array([_HOUR_SHAPE[t.hour] * _DAY_SHAPE[t.weekday()] / 1.9 for t in stamps])
    after_hours = np.array([t.hour < 7 or t.hour >= 19 or t.weekday() >= 5 for t in stamps])
    assigned = np.minimum(capacity, rng.poisson(np.outer(level, capacity * 0.8)))
    utilisation = assigned / capacity
    # Exponential smoothing along time (alpha 0.02), one column per agent.
    smoothed = np.empty_like(utilisation)
    current = np.zeros(agents)
    for m in range(minutes):
        current += 0.02 * (utilisation[m] - current)
        smoothed[m] = current
    risk = np.minimum(100.0, 100.0 * smoothed * np.where(after_hours, 1.25, 1.0)[:, None])
    risk = np.round(risk, 1)
    for m, at in enumerate(stamps):
        for a in range(agents):
            reasons = ["sustained_load"] if smoothed[m, a] > 0.7 else []
            if after_hours[m] and assigned[m, a] > 0:
                reasons.append("after_hours")
            yield (
                at,
                a + 1,
                queue_of[a],
                int(assigned[m, a]),
                int(capacity[a]),
                float(risk[m, a]),
                reasons,
            )


def _anomalies(tickets: pl.DataFrame, start: datetime, days: int) -> Any:
    """Run the project's detector over the hourly counts, as the live-metrics step does."""
    hours = days * 24
    hourly = (
        tickets.with_columns(h=(pl.col("created_s") // 3600).cast(pl.Int64))
        .group_by("h", "category", "channel", "priority")
        .agg(n=pl.len())
    )
    by_hour: dict[int, list[dict[str, Any]]] = {}
    for row in hourly.iter_rows(named=True):
        by_hour.setdefault(row["h"], []).append(row)
    detector = VolumeAnomalyDetector()
    for h in range(hours):
        bucket = start + timedelta(hours=h)
        rows = by_hour.get(h, [])
        per_series: dict[str, dict[str, dict[str, float]]] = {}
        totals: dict[str, float] = {}
        for series_key in ["all", *CATEGORIES]:
            totals[f"volume:category={series_key}" if series_key != "all" else "volume:all"] = 0.0
        for row in rows:
            for series in ("volume:all", f"volume:category={row['category']}"):
                totals[series] = totals.get(series, 0.0) + row["n"]
                drivers = per_series.setdefault(series, {})
                for dim in ("category", "channel", "priority"):
                    values = drivers.setdefault(dim, {})
                    values[row[dim]] = values.get(row[dim], 0.0) + row["n"]
        for series, count in totals.items():
            score = detector.update(series, bucket, count, drivers=per_series.get(series))
            alert = score.alert
            if alert is not None:
                drivers_json = {f"{d.dimension}:{d.value}": round(d.lift, 3) for d in alert.drivers}
                yield (
                    bucket + timedelta(hours=1),
                    alert.series,
                    alert.start,
                    alert.observed,
                    alert.expected,
                    alert.score,
                    json.dumps(drivers_json),
                )
