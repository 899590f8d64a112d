"""The model layer's deferred library imports: faster start-up, same behaviour."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json, sys
import pipelines.flow  # the whole model layer and the flow, as a pipeline process starts
heavy = sorted(m for m in ("sklearn", "pandas") if m in sys.modules)
stats_loaded = type(sys.modules["scipy.stats"]).__name__ == "module"
from river import drift, metrics
detector, drifts = drift.ADWIN(), 0
for i in range(2000):
    detector.update(0.0 if i < 1000 else 1.0)
    drifts += detector.drift_detected
f1 = metrics.WeightedF1()
f1.update("a", "a")
import models.forecast  # statsmodels and scipy.stats, in use
from scipy import stats
print(json.dumps({
    "heavy": heavy,
    "stats_before_use": stats_loaded,
    "drift": drifts > 0,
    "f1": f1.get(),
    "cdf": float(stats.norm.cdf(0.0)),
    "stats_now": type(sys.modules["scipy.stats"]).__name__,
}))
"""


def test_a_pipeline_process_imports_no_unused_library_and_the_deferred_ones_still_work() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["heavy"] == []  # scikit-learn and pandas came only with River's data sets
    assert probe["stats_before_use"] is False  # a stand-in until something uses it
    assert probe["drift"] is True and probe["f1"] == 1.0
    assert probe["cdf"] == 0.5 and probe["stats_now"] == "module"
