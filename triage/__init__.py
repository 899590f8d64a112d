"""The application: the components composed into a run, its command line, jobs and tools.

At the top, what composes a run: :mod:`triage.settings` (the only reader of the
environment), :mod:`triage.stack` (where a run's stores live), :mod:`triage.services` and
:mod:`triage.kafka_local` (private PostgreSQL and Redis; a local Kafka broker and Connect,
and the CDC topics a Kafka-mode pipeline needs), :mod:`triage.runtime` (the composition
root), :mod:`triage.cluster` (a local Bytewax cluster), :mod:`triage.api_server` (the read
API's server) and :mod:`triage.signals` (how a long-running command stops).

Sub-packages, by job: :mod:`triage.cli` (the command line), :mod:`triage.jobs` (batch work
on the stores: scheduled and one-shot jobs) and :mod:`triage.tools` (demos, benchmarks,
generators). ``tests/test_architecture.py`` checks which of them may import which.
"""
