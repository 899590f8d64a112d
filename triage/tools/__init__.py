"""Demos, benchmarks and generators: what a developer runs, never part of a deployed run.

* Demos: :mod:`triage.tools.demo` (``triage demo``: a local stack, the pipeline, the API
  and a workload, then a summary) and :mod:`triage.tools.demo_kafka` (the same over a
  local Kafka and Debezium), with :mod:`triage.tools.assignments` standing in for the
  helpdesk's agent tooling and :mod:`triage.tools.report` summarising a run.
* Benchmarks: :mod:`triage.tools.bench`, :mod:`triage.tools.bench_memory`,
  :mod:`triage.tools.api_bench` and :mod:`triage.tools.dashboard_bench`, and
  :mod:`triage.tools.compare` (what two runs of one history must share).
* Generators: :mod:`triage.tools.sample_analytics` (a synthetic analytics history) and
  :mod:`triage.tools.grafana` (the committed Grafana dashboard).

Modules here may import the composition at the top of ``triage`` (settings, stack,
services, kafka_local, runtime, signals), :mod:`triage.jobs` and each other. Only the
command line (:mod:`triage.cli`) and the tests import them: the runtime, the API and the
jobs never do, so nothing here is loaded by a deployed pipeline.
"""
