"""The daily summary says what the figures say."""

from __future__ import annotations

from datetime import date

from models.summary import DailyStats, render_daily_summary


def test_summary_reports_volume_trend_sla_anomalies_and_forecast() -> None:
    text = render_daily_summary(
        DailyStats(
            day=date(2026, 3, 2),
            created=120,
            solved=90,
            previous_created=100,
            by_category={"billing": 60, "technical": 40, "general": 20},
            sla_fulfilled=45,
            sla_breached=5,
            anomalies=[
                ("volume:category=billing", 40.0, 8.0, ["channel:chat"]),
                ("sla_breach_rate:all", 12.0, 2.5, ["metric:first_reply"]),
            ],
            forecast_next_day=130.4,
            forecast_peak_agents=7,
        )
    )
    assert text.startswith("# Helpdesk summary for 2026-03-02")
    assert "120 tickets created, +20% on the day before; 90 solved" in text
    assert "billing 60 (50%)" in text
    assert "90% of 50 targets met in time; 5 breached" in text
    assert (
        "`volume:category=billing`: 40 tickets against 8.0 expected. Drivers: channel:chat." in text
    )
    assert "`sla_breach_rate:all`: 12 SLA breaches against 2.5 expected." in text
    assert "about 130 tickets in the next 24 hours; up to 7 agents" in text


def test_quiet_day_says_so() -> None:
    text = render_daily_summary(DailyStats(day=date(2026, 3, 1), created=0, solved=0))
    assert "no target was completed" in text and "**Anomalies:** none." in text
