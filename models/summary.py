"""Plain-language daily summary of the helpdesk, rendered as Markdown from the numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class DailyStats:
    """What the summary speaks of; every figure comes from the analytics store."""

    day: date
    created: int
    solved: int
    by_category: Mapping[str, int] = field(default_factory=dict)
    previous_created: int | None = None
    sla_fulfilled: int = 0
    sla_breached: int = 0
    anomalies: Sequence[tuple[str, float, float, Sequence[str]]] = ()
    forecast_next_day: float | None = None
    forecast_peak_agents: int | None = None


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.0f}%" if whole else "n/a"


def render_daily_summary(stats: DailyStats) -> str:
    """A short Markdown report: volumes, SLA, anomalies with drivers, and the forecast.

    Example:
        >>> print(render_daily_summary(DailyStats(date(2026, 3, 2), created=120, solved=90)))
        ... # doctest: +ELLIPSIS
        # Helpdesk summary for 2026-03-02
        ...
    """
    lines = [f"# Helpdesk summary for {stats.day.isoformat()}", ""]
    trend = ""
    if stats.previous_created:
        change = (stats.created - stats.previous_created) / stats.previous_created
        trend = f", {change:+.0%} on the day before"
    lines.append(f"- **Volume:** {stats.created} tickets created{trend}; {stats.solved} solved.")
    if stats.by_category:
        top = sorted(stats.by_category.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        parts = ", ".join(f"{name} {n} ({_pct(n, stats.created)})" for name, n in top)
        lines.append(f"- **Largest categories:** {parts}.")
    total = stats.sla_fulfilled + stats.sla_breached
    if total:
        lines.append(
            f"- **SLA:** {_pct(stats.sla_fulfilled, total)} of {total} targets met in time; "
            f"{stats.sla_breached} breached."
        )
    else:
        lines.append("- **SLA:** no target was completed this day.")
    if stats.anomalies:
        lines.append(f"- **Anomalies:** {len(stats.anomalies)}.")
        for series, observed, expected, drivers in stats.anomalies[:5]:
            why = f" Drivers: {', '.join(drivers)}." if drivers else ""
            # Volume series count new tickets; breach-rate series count breached targets.
            what = "SLA breaches" if series.startswith("sla_breach_rate") else "tickets"
            lines.append(
                f"  - `{series}`: {observed:.0f} {what} against {expected:.1f} expected.{why}"
            )
    else:
        lines.append("- **Anomalies:** none.")
    if stats.forecast_next_day is not None:
        staffing = (
            f"; up to {stats.forecast_peak_agents} agents needed in the busiest hour"
            if stats.forecast_peak_agents is not None
            else ""
        )
        lines.append(
            f"- **Forecast:** about {stats.forecast_next_day:.0f} tickets in the next 24 hours"
            f"{staffing}."
        )
    return "\n".join(lines) + "\n"
