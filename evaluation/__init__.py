"""Evaluations of the models on real and generated data (``triage evaluate``).

* :mod:`evaluation.suite`: every evaluation in one table and one JSON document;
* :mod:`evaluation.text`: the online text classifiers on real ticket text, beside a
  cross-validated batch linear SVM;
* :mod:`evaluation.itsm`: a real ServiceNow event log replayed in order (resolving group,
  SLA breach risk);
* :mod:`evaluation.forecast`: hourly volume forecasts against seasonal baselines;
* :mod:`evaluation.anomaly`: the volume anomaly detector on labelled series;
* :mod:`evaluation.routing`: rankers on the synthetic workload with known skills;
* :mod:`evaluation.simulation`: a call history replayed through the router per policy
  (``triage simulate routing``);
* :mod:`evaluation.workload` (with its text templates, :mod:`evaluation.workload_text`):
  the synthetic workload generator, which writes helpdesk activity into the source
  database for ``triage generate``, the demo, the benchmarks and the routing evaluation.

Evaluations import the models; nothing in the pipeline imports them.
"""
