"""Batch work on the stores of record, done beside the dataflow rather than in it.

* Scheduled jobs: :mod:`triage.jobs.scheduler` decides when a job is due, runs it as a
  child process and records the run; :mod:`triage.jobs.work` is what that child does
  (warehouse compaction and publication, the daily summary), with the forecast in
  :mod:`triage.jobs.forecast_job`.
* One-shot operator jobs, run by hand when a store needs repair or seeding:
  :mod:`triage.jobs.rebuild` (Redis and the search index again from the stores of
  record), :mod:`triage.jobs.dead_letters` (list dead letters, replay those from Kafka)
  and :mod:`triage.jobs.warm_start` (a history of handling times for the router).

The one-shot jobs live here rather than with the command line because they are the same
kind of work as the scheduled ones: a pass over the stores, given by their DSNs and URLs,
that reports what it did and prints nothing, so ``triage.cli`` stays a thin table of
commands over them. Modules here may import the composition at the top of ``triage``
(settings, stack) and each other; the command line, the tools and the runtime (which
starts the scheduler beside the pipeline) import them, never the other way round.
"""
