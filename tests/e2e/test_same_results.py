"""One database history, two topologies: one process and a local cluster of two.

Both pipelines read the same history from their own replication slots at the same time
and write to their own analytics databases and Redis key prefixes; afterwards the stores
must hold the same results (:mod:`triage.tools.compare` says what must be equal). What may
differ, and why:

* which agent got a ticket, and whether it waited in a holding list first: tickets of one
  queue reach it from several workers, so two changes committed close together may arrive
  in either order (each order is a valid history of the queue);
* the fields learned models decide (model-applied categories, intents and their
  confidences, KB rankings shaped by feedback): the learning copy publishes versions,
  and which version predicted a ticket depends on timing (the version is recorded);
* SLA breaches, which fire on the wall clock.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from pprint import pformat
from typing import Any

import pytest

from evaluation.workload import WorkloadConfig, WorkloadWriter
from triage.runtime import PipelineProcess, Stack, migrate
from triage.tools.assignments import AssignmentFollower
from triage.tools.compare import (
    caught_up,
    describe_difference,
    differing_parts,
    live_snapshot,
    store_snapshot,
)

pytestmark = pytest.mark.e2e


def test_one_and_two_processes_give_the_same_stores(
    postgres: Any, pg_dsn: str, redis_url: str, tmp_path: Path, unique: str
) -> None:
    runs = {}
    for processes in (1, 2):
        analytics = postgres.create_database(f"a{processes}_{unique}")
        stack = Stack(source_dsn=pg_dsn, analytics_dsn=analytics, redis_url=redis_url)
        migrate(stack)
        env = {
            "TRIAGE_SOURCE__SLOT_NAME": f"slot{processes}_{unique}",
            "TRIAGE_REDIS__KEY_PREFIX": f"p{processes}{unique}",
            "TRIAGE_CLUSTER__PROCESSES": str(processes),
            "TRIAGE_JOBS__ENABLED": "false",
            "TRIAGE_WAREHOUSE__ENABLED": "false",
        }
        runs[processes] = (stack, PipelineProcess(stack, tmp_path / f"p{processes}", env))
    writer = WorkloadWriter(
        pg_dsn,
        WorkloadConfig(
            seed=11,
            customers=40,
            agents=10,
            tickets=250,
            rate=60,
            time_compression=900,
            linger_seconds=8,
        ),
    )
    writer.seed_reference_data()
    # Agents work the tickets the one-process pipeline assigns (written back to the source),
    # so the history has replies, pauses and solves; both pipelines read that same history.
    follower = AssignmentFollower(redis_url, pg_dsn, key_prefix=f"p1{unique}")
    try:
        for _, pipeline in runs.values():
            pipeline.start()
        for processes, (_, pipeline) in runs.items():
            pipeline.wait_ready(f"slot{processes}_{unique}", timeout=180)
        follower.start()
        report = writer.run()
        assert len(report.created_ticket_ids) == 250
        deadline = time.monotonic() + 240
        while not all(caught_up(pg_dsn, s.analytics_dsn) for s, _ in runs.values()):
            assert time.monotonic() < deadline, [p.log_tail() for _, p in runs.values()]
            time.sleep(0.5)
        follower.stop()
        deadline = time.monotonic() + 120
        while not all(caught_up(pg_dsn, s.analytics_dsn) for s, _ in runs.values()):
            assert time.monotonic() < deadline, [p.log_tail() for _, p in runs.values()]
            time.sleep(0.5)
        # The minute windows of the last minutes close on event time; give them a moment.
        time.sleep(3)
    finally:
        follower.stop()
        for _, pipeline in runs.values():
            pipeline.stop()
    one, two = (
        store_snapshot(stack.analytics_dsn) | live_snapshot(redis_url, f"p{n}{unique}")
        for n, (stack, _) in runs.items()
    )
    assert len(one["facts"]) == 250 and len(one["live_tickets"]) == 250
    if differing_parts(one, two):
        pytest.fail(f"the stores differ:\n{pformat(describe_difference(one, two))}")
    # Exactly one current decision per ticket, in both.
    assert Counter(n for _, n in one["decided_tickets"]) == Counter({1: 250})
    assert one["dead_letters"] == [(0,)]
    kinds = Counter(kind for _, _, kind, *_ in one["sla_events"])
    assert kinds["apply"] >= 250 and kinds["fulfill"] > 0, kinds
