"""Rolling-origin backtest of the hourly volume forecaster on a real incident log.

Data: hourly counts of opened incidents derived from the "Incident management process
enriched event log", UCI Machine Learning Repository (Amaral, Fantinato, Reijers, Peres,
2018), licence CC BY 4.0. The log is dense only from March to May 2016, so the backtest
stays inside that window (``start``..``end``, both inclusive days).

For each origin — midnight of every day from the fourth week of the window on — the
forecaster is fitted on the window's history up to the origin and forecasts the next
24 hours (day ahead) and the next 168 hours (week ahead). Each forecast is scored by
MASE (scaled by the history's in-sample weekly seasonal-naive error) against the actual
counts, beside three references scored the same way: the weekly seasonal naive, the
median of the same hour in the last four weeks, and statsmodels' MSTL (periods 24 and
168 on ``log1p`` volumes). The coverage of the model's prediction intervals and the fit
time per origin are reported too. Origins whose horizon runs past the window are skipped
for that horizon. When the CSV has a ``category`` column (long format: timestamp,
category, count) every category is evaluated as well as the total.

The forecaster learns without a calendar by default, so unlabelled holidays count as
surprises. ``--holidays CC`` passes the public (and optional, where the country has them)
holidays of country ``CC`` from the ``holidays`` package as known closures, to show what a
business calendar is worth.

Run::

    python -m evaluation.forecast ../shared/data/itsm_incident_log/hourly_opened_incidents.csv
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Collection
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.table import Table

from models.forecast import (
    HOURS_PER_DAY,
    HOURS_PER_WEEK,
    HourlyForecaster,
    mase,
    seasonal_median,
    seasonal_naive,
)

GOAL_DAY_AHEAD_MASE = 0.65
REFERENCES = ("seasonal_naive", "seasonal_median", "mstl")
"""Reference forecasts scored beside the model (MASE keys ``mase_<name>``)."""
HORIZONS = {"day_ahead": HOURS_PER_DAY, "week_ahead": HOURS_PER_WEEK}
TOTAL = "total"
_TIME_COLUMN = "timestamp"
_CATEGORY_COLUMN = "category"


def read_hourly(path: Path) -> pl.DataFrame:
    """Read an hourly counts CSV into (timestamp, series, count) rows.

    The first non-time, non-category column holds the counts (``opened`` in the ITSM file).
    """
    frame = pl.read_csv(path, try_parse_dates=True)
    if _TIME_COLUMN not in frame.columns:
        raise ValueError(f"{path} has no {_TIME_COLUMN!r} column (columns: {frame.columns})")
    values = [c for c in frame.columns if c not in (_TIME_COLUMN, _CATEGORY_COLUMN)]
    if not values:
        raise ValueError(f"{path} has no count column")
    series = (
        pl.col(_CATEGORY_COLUMN).cast(pl.String)
        if _CATEGORY_COLUMN in frame.columns
        else pl.lit(TOTAL)
    )
    return frame.select(
        pl.col(_TIME_COLUMN).cast(pl.Datetime("us")).alias("hour"),
        series.alias("series"),
        pl.col(values[0]).cast(pl.Float64).alias("count"),
    )


def _dense_series(frame: pl.DataFrame, first: datetime, last: datetime) -> dict[str, np.ndarray]:
    """One gap-free hourly array per series (missing hours are 0 arrivals)."""
    hours = pl.DataFrame(
        {"hour": pl.datetime_range(first, last, "1h", eager=True).cast(pl.Datetime("us"))}
    )
    window = frame.filter(pl.col("hour").is_between(first, last))
    out: dict[str, np.ndarray] = {}
    names = sorted(window["series"].unique().to_list())
    if len(names) > 1 or (names and names[0] != TOTAL):
        totals = window.group_by("hour").agg(pl.col("count").sum())
        out[TOTAL] = hours.join(totals, on="hour", how="left")["count"].fill_null(0).to_numpy()
    for name in names:
        counts = window.filter(pl.col("series") == name).group_by("hour").agg(pl.col("count").sum())
        out[name] = hours.join(counts, on="hour", how="left")["count"].fill_null(0).to_numpy()
    return out


def backtest_series(
    y: np.ndarray,
    first: datetime,
    *,
    first_origin_day: int = 21,
    step_days: int = 1,
    level: float = 0.9,
    make_model: Callable[[], HourlyForecaster] = HourlyForecaster,
    closures: Collection[date] = (),
    references: Collection[str] = REFERENCES,
) -> dict[str, Any]:
    """Rolling-origin backtest of one hourly series whose first value is the hour ``first``.

    Args:
        y: Hourly counts.
        first: The hour of ``y[0]``.
        first_origin_day: Days of history before the first origin.
        step_days: Days between origins.
        level: Nominal coverage of the intervals.
        make_model: Builds an unfitted forecaster per origin.
        closures: Known closure dates passed to the forecaster.
        references: Which of :data:`REFERENCES` to score beside the model.
    """
    names = ["model", *references]
    scores: dict[str, dict[str, list[float]]] = {
        horizon: {name: [] for name in [*names, "covered"]} for horizon in HORIZONS
    }
    fit_seconds: list[float] = []
    methods: dict[str, int] = {}
    for origin in range(first_origin_day * HOURS_PER_DAY, len(y), step_days * HOURS_PER_DAY):
        history = y[:origin]
        if float(np.abs(history[HOURS_PER_WEEK:] - history[:-HOURS_PER_WEEK]).sum()) == 0.0:
            continue  # a flat history has no MASE scale
        started = time.perf_counter()
        model = make_model().fit(history, first, closures=closures)
        fc = model.forecast(horizon=HOURS_PER_WEEK, level=level)
        fit_seconds.append(time.perf_counter() - started)
        methods[fc.method] = methods.get(fc.method, 0) + 1
        predicted = {"model": fc.values}
        if "seasonal_naive" in references:
            predicted["seasonal_naive"] = seasonal_naive(history, HOURS_PER_WEEK)
        if "seasonal_median" in references:
            predicted["seasonal_median"] = seasonal_median(history, HOURS_PER_WEEK)
        if "mstl" in references:
            mstl = HourlyForecaster("mstl").fit(history, first).forecast(HOURS_PER_WEEK, level)
            predicted["mstl"] = mstl.values
        for name, horizon in HORIZONS.items():
            if origin + horizon > len(y):
                continue
            actual = y[origin : origin + horizon]
            score = scores[name]
            for method, values in predicted.items():
                score[method].append(mase(actual, values[:horizon], history))
            inside = (actual >= fc.lower[:horizon]) & (actual <= fc.upper[:horizon])
            score["covered"].append(float(inside.mean()))
    result: dict[str, Any] = {}
    for name, score in scores.items():
        result[name] = {
            "origins": len(score["model"]),
            "mase": _mean(score["model"]),
            **{f"mase_{ref}": _mean(score[ref]) for ref in references},
            "coverage": _mean(score["covered"]),
        }
    result["fit_seconds_mean"] = _mean(fit_seconds, digits=4)
    result["fit_seconds_max"] = round(max(fit_seconds), 4) if fit_seconds else None
    result["methods"] = methods
    return result


def holiday_closures(country: str, first: date, last: date) -> set[date]:
    """Public and optional holidays of ``country`` between ``first`` and ``last`` (inclusive).

    Raises:
        ValueError: When the ``holidays`` package does not know the country.
    """
    import holidays

    years = range(first.year, last.year + 1)
    try:
        calendar = holidays.country_holidays(country, years=years)
    except NotImplementedError as error:
        raise ValueError(f"no holiday calendar for country {country!r}") from error
    days = set(calendar)
    if holidays.OPTIONAL in calendar.supported_categories:
        days |= set(holidays.country_holidays(country, years=years, categories=holidays.OPTIONAL))
    return {day for day in days if first <= day <= last}


def _mean(values: list[float], digits: int = 3) -> float | None:
    return round(float(np.mean(values)), digits) if values else None


def evaluate_forecast(
    hourly_csv: Path,
    *,
    start: str = "2016-03-01",
    end: str = "2016-05-31",
    method: str = "auto",
    level: float = 0.9,
    first_origin_day: int = 21,
    step_days: int = 1,
    holidays: str | None = None,
    references: Collection[str] = REFERENCES,
) -> dict[str, Any]:
    """Backtest the forecaster on every series of ``hourly_csv`` within ``start``..``end``.

    Args:
        hourly_csv: CSV with a ``timestamp`` column, a count column and optionally
            ``category``.
        start: First day of the window (inclusive).
        end: Last day of the window (inclusive).
        method: Forecaster method (``"auto"`` or one of ``models.forecast.METHODS``).
        level: Nominal coverage of the prediction intervals.
        first_origin_day: Days of history before the first origin (21 = fourth week).
        step_days: Days between origins.
        holidays: Country code whose holidays are passed as known closures (none when
            ``None``: holidays are then surprises to the model).
        references: Which of :data:`REFERENCES` to score beside the model.

    Returns:
        Per series: origins, mean MASE of the model and of each reference per horizon,
        interval coverage, fit seconds per origin, and which methods were chosen.
    """
    first = datetime.combine(date.fromisoformat(start), datetime.min.time())
    last = datetime.combine(date.fromisoformat(end), datetime.min.time()) + timedelta(hours=23)
    started = time.perf_counter()
    closures = holiday_closures(holidays, first.date(), last.date()) if holidays else set()
    series = _dense_series(read_hourly(hourly_csv), first, last)
    results: dict[str, Any] = {}
    for name, y in series.items():
        results[name] = backtest_series(
            y,
            first,
            first_origin_day=first_origin_day,
            step_days=step_days,
            level=level,
            make_model=lambda: HourlyForecaster(method),
            closures=closures,
            references=references,
        )
        results[name]["hours"] = len(y)
        results[name]["volume"] = int(y.sum())
    return {
        "dataset": "UCI Incident management process enriched event log "
        "(Amaral et al. 2018, CC BY 4.0)",
        "file": str(hourly_csv),
        "window": [start, end],
        "method": method,
        "level": level,
        "holidays": holidays,
        "closures": sorted(day.isoformat() for day in closures),
        "goal_day_ahead_mase": GOAL_DAY_AHEAD_MASE,
        "series": results,
        "seconds": round(time.perf_counter() - started, 1),
    }


def render_table(results: dict[str, Any]) -> Table:
    """Rich table: one row per series and horizon."""
    table = Table(
        title=(
            f"Hourly volume forecast backtest {results['window'][0]}..{results['window'][1]} "
            f"(method {results['method']}, {results['seconds']} s)"
        )
    )
    columns = ["series", "horizon", "origins", "MASE"]
    labels = {"seasonal_naive": "naive", "seasonal_median": "median 4 wk", "mstl": "MSTL"}
    references = [
        ref
        for ref in REFERENCES
        if any(
            f"mase_{ref}" in series[h] for series in results["series"].values() for h in HORIZONS
        )
    ]
    columns += [f"MASE {labels[ref]}" for ref in references] + ["coverage", "fit s"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("series", "horizon") else "right")

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for name, series in results["series"].items():
        for horizon in HORIZONS:
            row = series[horizon]
            table.add_row(
                name,
                horizon,
                str(row["origins"]),
                fmt(row["mase"], ".3f"),
                *(fmt(row.get(f"mase_{ref}"), ".3f") for ref in references),
                fmt(row["coverage"], ".1%"),
                fmt(series["fit_seconds_mean"], ".3f"),
            )
    calendar = (
        f"closures: {results['holidays']} holidays" if results.get("holidays") else ("no calendar")
    )
    table.caption = (
        f"goal: day-ahead MASE ≤ {results['goal_day_ahead_mase']} and never above the "
        f"four-week median; coverage of {results['level']:.0%} intervals; {calendar}"
    )
    return table


def main(argv: list[str] | None = None) -> None:
    """Command: backtest the CSV given as argument, print the table and the JSON result."""
    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path", type=Path, help="hourly_opened_incidents.csv")
    parser.add_argument("--start", default="2016-03-01", help="first day of the window")
    parser.add_argument("--end", default="2016-05-31", help="last day of the window")
    parser.add_argument("--method", default="auto", help="auto or a models.forecast method")
    parser.add_argument("--level", type=float, default=0.9, help="interval coverage")
    parser.add_argument(
        "--holidays", default=None, help="country code whose holidays are known closures"
    )
    parser.add_argument(
        "--references",
        nargs="*",
        default=list(REFERENCES),
        choices=REFERENCES,
        help="reference forecasts scored beside the model",
    )
    args = parser.parse_args(argv)
    results = evaluate_forecast(
        args.path,
        start=args.start,
        end=args.end,
        method=args.method,
        level=args.level,
        holidays=args.holidays,
        references=args.references,
    )
    console = Console()
    console.print(render_table(results))
    # Plain print: rich would wrap long lines and break the JSON for whoever parses it.
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
