"""``triage evaluate``: every prequential evaluation in one table and one JSON document.

* routing on the synthetic workload (known agent skills): learned ranker against
  round-robin and least-loaded, over three seeds and two queue layouts;
* the Endava tickets (real ticket text): category and urgency, prequential;
* the ITSM incident log (a real ServiceNow event log, replayed in order): assignment
  group from the fields known at opening, and breach-risk ROC AUC against ``made_sla``;
* hourly volume forecasts on the ITSM opened-incident series (rolling origin, MASE
  against the weekly seasonal naive, interval coverage);
* anomaly detection on synthetic hourly volumes with injected incidents (known start
  and end): incident-level precision and recall, quiet on the normal weekly rhythm.

The shared data sets are optional: an evaluation whose files are missing is reported as
skipped with the path it looked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

ENDAVA = Path("endava_tickets/tickets_subset.csv.gz")
ITSM = Path("itsm_incident_log/incident_event_log.csv.gz")
ITSM_HOURLY = Path("itsm_incident_log/hourly_opened_incidents.csv")


def run_evaluations(
    data_dir: Path | None,
    *,
    only: set[str] | None = None,
    console: Console | None = None,
    warm_start: float = 0.2,
) -> dict[str, Any]:
    """Run the selected evaluations (``routing``, ``endava``, ``itsm``) and return results."""
    show = console.print if console is not None else (lambda *_: None)
    wanted = only or {"routing", "endava", "itsm", "forecast", "anomaly"}
    results: dict[str, Any] = {}
    if "routing" in wanted:
        from evaluation.routing import SCENARIOS, evaluate_seeds, render_seeds, render_table

        routing: dict[str, Any] = {}
        for name, scenario in SCENARIOS.items():
            summary = evaluate_seeds(**scenario)
            routing[name] = summary
            show(render_table(summary["runs"][0]))
            show(render_seeds(name, summary))
        results["routing"] = routing
    if "endava" in wanted:
        path = (data_dir or Path("..")) / ENDAVA
        if path.exists():
            from evaluation.text import evaluate_endava
            from evaluation.text import render_table as endava_table

            endava = {
                "replay": evaluate_endava(path),
                "warm_start": evaluate_endava(
                    path, warm_start_fraction=warm_start, svm_reference=False
                ),
            }
            for variant in endava.values():
                show(endava_table(variant))
            results["endava"] = endava
        else:
            results["endava"] = {"skipped": f"{path} not found (pass --data-dir)"}
            show(f"[yellow]endava skipped:[/] {path} not found")
    if "itsm" in wanted:
        path = (data_dir or Path("..")) / ITSM
        if path.exists():
            from evaluation.itsm import evaluate_itsm
            from evaluation.itsm import render_table as itsm_table

            itsm = evaluate_itsm(path)
            show(itsm_table(itsm))
            results["itsm"] = itsm
        else:
            results["itsm"] = {"skipped": f"{path} not found (pass --data-dir)"}
            show(f"[yellow]itsm skipped:[/] {path} not found")
    if "anomaly" in wanted:
        from evaluation.anomaly import evaluate_anomalies
        from evaluation.anomaly import render_table as anomaly_table

        runs = [evaluate_anomalies(seed=seed) for seed in (1, 2, 3)]
        for run in runs:
            show(anomaly_table(run))
        results["anomaly"] = {"seeds": [1, 2, 3], "runs": runs}
    if "forecast" in wanted:
        path = (data_dir or Path("..")) / ITSM_HOURLY
        if path.exists():
            from evaluation.forecast import evaluate_forecast
            from evaluation.forecast import render_table as forecast_table

            fc = evaluate_forecast(path)
            show(forecast_table(fc))
            results["forecast"] = fc
        else:
            results["forecast"] = {"skipped": f"{path} not found (pass --data-dir)"}
            show(f"[yellow]forecast skipped:[/] {path} not found")
    return results
