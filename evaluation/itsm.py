"""Prequential replay of a real ServiceNow incident log: assignment groups and SLA breach risk.

Data: "Incident management process enriched event log", UCI Machine Learning Repository
(Amaral, Fantinato, Reijers, Peres, 2018), licence CC BY 4.0 — 141,712 audit events of
24,918 incidents, one row per change to an incident. The file is replayed row by row in
file order, as a change stream; every prediction is made before the model learns anything
about that incident (prequential evaluation).

Two tasks:

* **Assignment group** at opening: on an incident's first event, predict the group that
  will finally own it from what is known then (category, subcategory, symptom, location,
  contact type, impact, urgency, priority, caller, opener). A multinomial naive Bayes
  (River) learns the final group (the last one seen) when the incident closes. Compared
  with the majority baseline (most frequent final group so far).
* **Breach risk**: at every event while the incident is open (New, Active, Awaiting …),
  :class:`models.breach_risk.BreachRiskModel` predicts whether the incident will miss its
  SLA (``made_sla`` = false on closing). It learns every open-time snapshot of an
  incident when the incident closes. Only fields known at each event are used — never
  ``made_sla`` itself, nor the resolution/closing fields, which the log repeats on every
  row with their final values. Elapsed time is measured in calendar hours (the log has
  no time zone or business calendar) against nominal ITIL-style resolution targets per
  priority, which are assumptions, not fitted to this data.

Caveat: the log is grouped by incident (each incident's events are contiguous, incidents
in number order, which follows opening time), so the replay is prequential per incident
but not a faithful interleaving in wall-clock time. To avoid learning outcomes that were
not known yet, by default an incident's outcome is learned only once the replay reaches
an incident opened after it closed (``learn_at="close_time"``).

Run: ``python -m evaluation.itsm ../shared/data/itsm_incident_log/incident_event_log.csv.gz``

Kept as one module: both tasks replay the same event log with the same rule for
when an outcome becomes known.
"""

from __future__ import annotations

import argparse
import functools
import heapq
import itertools
import json
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl
from rich.table import Table
from river import naive_bayes

from models.breach_risk import BreachRiskFeatures, BreachRiskModel, exact_roc_auc
from models.group_router import GroupRouter

GOAL_AUC = 0.80
GOAL_AUC_OPENING = 0.75
DATE_FORMAT = "%d/%m/%Y %H:%M"
OPEN_STATES = frozenset(
    {
        "New",
        "Active",
        "Awaiting User Info",
        "Awaiting Vendor",
        "Awaiting Problem",
        "Awaiting Evidence",
    }
)
NOMINAL_TARGET_HOURS = {
    "1 - Critical": 4.0,
    "2 - High": 8.0,
    "3 - Moderate": 48.0,
    "4 - Low": 120.0,
}
"""Assumed resolution targets per priority (typical ITIL values; the log does not say)."""

_DEFAULT_TARGET_HOURS = 48.0
GOAL_GROUP_ACCURACY = 0.60
"""Goal for the resolving group predicted at opening (prequential top-1 accuracy)."""

_OPENING_FIELDS = (
    "category", "subcategory", "u_symptom", "location", "contact_type", "impact", "urgency",
    "priority", "caller_id", "opened_by", "sys_created_by",
)  # fmt: skip
_BREACH_EXTRA_FIELDS = (
    "impact", "urgency", "contact_type", "location", "subcategory", "u_symptom", "knowledge",
    "u_priority_confirmation",
)  # fmt: skip
# Closed incidents remembered so that later edits of a closed incident are not mistaken for
# a new one; the log has a few such rows. Bounded like any keyed state.
_CLOSED_MEMORY = 50_000
# Open-time snapshots kept per incident for learning at close (most recent win).
_MAX_SNAPSHOTS = 64


@dataclass
class _Incident:
    opening: dict[str, float]
    predicted_top3: list[str]
    baseline_top3: list[str]
    last_group: str | None
    fields: dict[str, str | None] = field(default_factory=dict)
    initial_group: str | None = None
    routed_top3: list[str] = field(default_factory=list)
    snapshots: list[BreachRiskFeatures] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    fractions: list[float] = field(default_factory=list)
    score_rows: list[int] = field(default_factory=list)
    opening_score: float | None = None
    breach_known: bool = False


def read_log(path: Path, *, limit: int | None = None) -> pl.DataFrame:
    """The event log in file order, '?' as null, the two replay timestamps parsed."""
    frame = pl.read_csv(path, infer_schema_length=0, null_values="?", n_rows=limit)
    return frame.with_columns(
        pl.col("opened_at").str.strptime(pl.Datetime, DATE_FORMAT, strict=False),
        pl.col("sys_updated_at").str.strptime(pl.Datetime, DATE_FORMAT, strict=False),
    )


def _int(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def breach_features(row: dict[str, Any]) -> BreachRiskFeatures:
    """Breach-risk features of one event from the fields known at that event."""
    opened: datetime | None = row["opened_at"]
    updated: datetime | None = row["sys_updated_at"]
    elapsed_hours = 0.0
    if opened is not None and updated is not None:
        elapsed_hours = max((updated - opened).total_seconds() / 3600.0, 0.0)
    target = NOMINAL_TARGET_HOURS.get(row["priority"] or "", _DEFAULT_TARGET_HOURS)
    at = updated or opened
    return BreachRiskFeatures(
        fraction_elapsed=elapsed_hours / target,
        remaining_business_minutes=(target - elapsed_hours) * 60.0,
        elapsed_hours=elapsed_hours,
        priority=row["priority"],
        category=row["category"],
        queue=row["assignment_group"],
        status=row["incident_state"],
        reassignments=_int(row["reassignment_count"]),
        reopens=_int(row["reopen_count"]),
        updates=_int(row["sys_mod_count"]),
        hour_of_week=at.weekday() * 24 + at.hour if at is not None else None,
        extra={k: row[k] for k in _BREACH_EXTRA_FIELDS if row[k] is not None},
    )


def calibration_table(
    scores: list[float], labels: list[bool], bins: int = 10
) -> list[dict[str, float | int]]:
    """Predicted against observed breach rate in equal-width score bins (empty bins left out).

    Example:
        >>> low, high = calibration_table([0.05, 0.15, 0.12, 0.95], [0, 1, 0, 1], bins=2)
        >>> low
        {'from': 0.0, 'to': 0.5, 'predictions': 3, 'mean_predicted': 0.1067, 'observed': 0.3333}
        >>> high["observed"]
        1.0
    """
    rows = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [
            (s, y)
            for s, y in zip(scores, labels, strict=True)
            if lo <= s < hi or (b == bins - 1 and s == 1.0)
        ]
        if members:
            rows.append(
                {
                    "from": round(lo, 2),
                    "to": round(hi, 2),
                    "predictions": len(members),
                    "mean_predicted": round(sum(s for s, _ in members) / len(members), 4),
                    "observed": round(sum(y for _, y in members) / len(members), 4),
                }
            )
    return rows


def _top(counts: Counter[str], k: int = 3) -> list[str]:
    return [label for label, _ in counts.most_common(k)]


def evaluate_itsm(
    path: Path,
    *,
    limit: int | None = None,
    learn_at: Literal["close_time", "file_order"] = "close_time",
    group_min_support: int = 20,
    risk_model: BreachRiskModel | None = None,
) -> dict[str, Any]:
    """Replay the incident log and score both tasks; the result is JSON-serialisable.

    Args:
        path: ``incident_event_log.csv.gz`` (or a CSV with the same columns).
        limit: Replay only the first ``limit`` rows.
        learn_at: ``close_time`` (default) holds each closed incident's outcome back until
            an incident opened after its closing time is reached, as a live system would
            know it; ``file_order`` learns it at once, which lets the models learn
            outcomes of incidents that in reality closed after later ones opened.
        group_min_support: Closed incidents a context of opening fields needs before the
            group router trusts it (:class:`models.group_router.GroupRouter`).
        risk_model: The breach-risk model to replay (default: a fresh one with its
            default settings).
    """
    started = time.perf_counter()
    frame = read_log(path, limit=limit)
    read_seconds = time.perf_counter() - started

    group_model = naive_bayes.MultinomialNB(alpha=0.1)
    group_router = GroupRouter(min_support=group_min_support)
    group_counts: Counter[str] = Counter()
    risk = risk_model if risk_model is not None else BreachRiskModel()
    live: dict[str, _Incident] = {}
    closed: OrderedDict[str, None] = OrderedDict()

    group_total = group_hits = group_hits3 = base_hits = base_hits3 = 0
    routed_hits = routed_hits3 = initial_hits = 0
    open_scores: list[float] = []
    open_labels: list[bool] = []
    prior_scores: list[float] = []
    opening_scores: list[float] = []
    opening_labels: list[bool] = []
    open_rows: list[int] = []  # row of the log each open prediction was made at
    opening_rows: list[int] = []
    post_close_rows = 0
    # Outcomes wait here until the replay reaches the moment they became known.
    pending: list[tuple[datetime, int, Callable[[], None]]] = []
    sequence = itertools.count()

    def when_known(at: datetime | None, learn: Callable[[], None]) -> None:
        if learn_at == "file_order" or at is None:
            learn()
        else:
            heapq.heappush(pending, (at, next(sequence), learn))

    def learn_risk(snapshots: list[BreachRiskFeatures], breached: bool) -> None:
        for snapshot in snapshots:
            risk.learn_one(snapshot, breached)

    def learn_group(incident: _Incident, final_group: str) -> None:
        group_model.learn_one(incident.opening, final_group)
        group_router.learn_one(incident.fields, incident.initial_group, final_group)
        group_counts[final_group] += 1

    def label_snapshots(incident: _Incident, breached: bool, at: datetime | None) -> None:
        # Snapshots taken so far get their label as soon as it is known: a breach when
        # the SLA flag turns (in this log that happens at or after resolution), no
        # breach when the incident closes with the flag still set.
        if incident.snapshots:
            when_known(at, functools.partial(learn_risk, incident.snapshots, breached))
            incident.snapshots = []

    for row_number, row in enumerate(frame.iter_rows(named=True)):
        number = row["number"]
        if number in closed:
            post_close_rows += 1
            continue
        incident = live.get(number)
        first_event = incident is None
        if incident is None:
            opened: datetime | None = row["opened_at"]
            if learn_at == "close_time" and opened is not None:
                # Labels of incidents closed before this one opened are known by now.
                while pending and pending[0][0] <= opened:
                    heapq.heappop(pending)[2]()
            opening = {f"{k}={row[k]}": 1.0 for k in _OPENING_FIELDS if row[k] is not None}
            proba = group_model.predict_proba_one(opening) if group_counts else {}
            ranked = sorted(proba, key=lambda g: -proba[g])[:3]
            incident = _Incident(opening, ranked, _top(group_counts), row["assignment_group"])
            # The group the ticket was first given (by the desk or a rule) is known at
            # opening; the router predicts where it will be resolved, which is where
            # routing should send it.
            incident.initial_group = row["assignment_group"]
            incident.fields = {k: row[k] for k in _OPENING_FIELDS}
            incident.routed_top3 = (
                group_router.predict_one(incident.fields, incident.initial_group)
                if incident.initial_group is not None
                else ranked
            )
            live[number] = incident
        if row["assignment_group"] is not None:
            incident.last_group = row["assignment_group"]

        state = row["incident_state"]
        if state in OPEN_STATES:
            features = breach_features(row)
            score = risk.predict_one(features)
            if first_event:
                incident.opening_score = score
            incident.scores.append(score)
            incident.score_rows.append(row_number)
            incident.fractions.append(features.fraction_elapsed)
            incident.snapshots.append(features)
            del incident.snapshots[:-_MAX_SNAPSHOTS]
        updated_at: datetime | None = row["sys_updated_at"]
        if row["made_sla"] == "false":
            incident.breach_known = True
        if incident.breach_known:
            label_snapshots(incident, True, updated_at)

        if state != "Closed":
            continue
        del live[number]
        closed[number] = None
        if len(closed) > _CLOSED_MEMORY:
            closed.popitem(last=False)

        breached = row["made_sla"] == "false"
        open_scores.extend(incident.scores)
        open_rows.extend(incident.score_rows)
        open_labels.extend([breached] * len(incident.scores))
        prior_scores.extend(incident.fractions)
        if incident.opening_score is not None:
            opening_scores.append(incident.opening_score)
            opening_labels.append(breached)
            opening_rows.append(incident.score_rows[0])
        final_group = incident.last_group
        if final_group is not None:
            group_total += 1
            group_hits += bool(incident.predicted_top3[:1] == [final_group])
            group_hits3 += final_group in incident.predicted_top3
            base_hits += bool(incident.baseline_top3[:1] == [final_group])
            base_hits3 += final_group in incident.baseline_top3
            routed_hits += bool(incident.routed_top3[:1] == [final_group])
            routed_hits3 += final_group in incident.routed_top3
            initial_hits += incident.initial_group == final_group
        label_snapshots(incident, breached, updated_at)
        if final_group is not None:
            when_known(updated_at, functools.partial(learn_group, incident, final_group))

    # The raw fraction of target used, scored alone: what the model adds beyond it.
    prior_auc = exact_roc_auc(prior_scores, open_labels)
    auc_open = exact_roc_auc(open_scores, open_labels)
    elapsed = time.perf_counter() - started

    def second_half(scores: list[float], labels: list[bool], rows: list[int]) -> float | None:
        half = frame.height // 2
        late = [(s, y) for s, y, r in zip(scores, labels, rows, strict=True) if r >= half]
        return exact_roc_auc([s for s, _ in late], [y for _, y in late]) if late else None

    def ratio(hits: int) -> float | None:
        return round(hits / group_total, 4) if group_total else None

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return {
        "dataset": path.name,
        "rows": frame.height,
        "incidents_closed": len(closed),
        "incidents_still_open": len(live),
        "rows_after_close": post_close_rows,
        "learn_at": learn_at,
        "seconds": round(elapsed, 2),
        "read_seconds": round(read_seconds, 2),
        "assignment_group": {
            "model": "models.group_router.GroupRouter (initial group + opening fields, "
            "back-off counts of resolving groups); MultinomialNB when no initial group",
            "incidents": group_total,
            "groups_seen": len(group_counts),
            "accuracy": ratio(routed_hits),
            "top3_accuracy": ratio(routed_hits3),
            "initial_group_accuracy": ratio(initial_hits),
            "opening_fields_only_accuracy": ratio(group_hits),
            "opening_fields_only_top3_accuracy": ratio(group_hits3),
            "baseline_accuracy": ratio(base_hits),
            "baseline_top3_accuracy": ratio(base_hits3),
            "goal_accuracy": GOAL_GROUP_ACCURACY,
        },
        "breach_risk": {
            "model_version": risk.version,
            "predictions_open": len(open_scores),
            "breach_rate_open": rounded(sum(open_labels) / len(open_labels))
            if open_labels
            else None,
            "auc_open": rounded(auc_open),
            "auc_opening": rounded(exact_roc_auc(opening_scores, opening_labels)),
            # The first months of a log are a cold start with a biased sample of outcomes
            # (incidents that closed quickly, mostly in time): the same AUCs over the
            # predictions made in the second half of the replay show the warmed-up model.
            "auc_open_second_half": rounded(second_half(open_scores, open_labels, open_rows)),
            "auc_opening_second_half": rounded(
                second_half(opening_scores, opening_labels, opening_rows)
            ),
            "incidents_with_opening_prediction": len(opening_scores),
            "auc_fraction_elapsed_only": rounded(prior_auc),
            "auc_recent_window_learning": rounded(risk.auc),
            "goal_auc": GOAL_AUC,
            "goal_auc_opening": GOAL_AUC_OPENING,
            "calibration": calibration_table(open_scores, open_labels),
            "nominal_target_hours": NOMINAL_TARGET_HOURS,
        },
    }


def render_table(results: dict[str, Any]) -> Table:
    """A rich table of one :func:`evaluate_itsm` result."""
    table = Table(
        title=(
            f"ITSM replay: {results['rows']:,} events, {results['incidents_closed']:,} closed "
            f"incidents in {results['seconds']} s"
        )
    )
    table.add_column("task")
    table.add_column("metric")
    table.add_column("value", justify="right")
    group = results["assignment_group"]
    for key in (
        "accuracy",
        "top3_accuracy",
        "initial_group_accuracy",
        "opening_fields_only_accuracy",
        "baseline_accuracy",
        "baseline_top3_accuracy",
    ):
        value = group[key]
        table.add_row("assignment group", key, "-" if value is None else f"{value:.1%}")
    risk = results["breach_risk"]
    for key in (
        "auc_open",
        "auc_opening",
        "auc_open_second_half",
        "auc_opening_second_half",
        "auc_fraction_elapsed_only",
    ):
        value = risk[key]
        table.add_row("breach risk", key, "-" if value is None else f"{value:.3f}")
    table.add_row("breach risk", "predictions_open", f"{risk['predictions_open']:,}")
    table.caption = (
        f"goals: assignment group ≥ {group['goal_accuracy']:.0%} (accuracy), "
        f"breach-risk AUC ≥ {risk['goal_auc']:.2f} (auc_open), "
        f"≥ {risk['goal_auc_opening']:.2f} (auc_opening)"
    )
    return table


def main(argv: list[str] | None = None) -> None:
    """Command: replay the log given as argument, print the table and the JSON result."""
    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path", type=Path, help="incident_event_log.csv.gz")
    parser.add_argument("--limit", type=int, default=None, help="replay only the first rows")
    parser.add_argument(
        "--learn-at",
        choices=("close_time", "file_order"),
        default="close_time",
        help="when a closed incident's outcome becomes learnable",
    )
    args = parser.parse_args(argv)
    results = evaluate_itsm(args.path, limit=args.limit, learn_at=args.learn_at)
    console = Console()
    console.print(render_table(results))
    console.print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
