"""Five kill -9 during a run change no result: the stores equal a clean run's.

A clean pipeline (one process) and a local cluster of two processes that is killed
(SIGKILL, every process of it) five times while the workload writes read the same
history from their own replication slots; after both caught up, their analytics stores
must hold the same results (:mod:`triage.tools.compare`, which also says what may legitimately
differ), SLA events included: a replay after a crash must not add a second ``fulfill``
or ``pause``; and so must their live stores (Redis: routed tickets, SLA deadlines, no
decision announced twice). Recovery time (restart → first new
decision) is measured and printed, not asserted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from pprint import pformat
from typing import Any

import psycopg
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


def _count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row else 0


def test_five_kills_of_a_cluster_leave_the_same_stores_as_a_clean_run(
    postgres: Any, pg_dsn: str, redis_url: str, tmp_path: Path, unique: str
) -> None:
    processes = 2  # the killed run is a local cluster; the clean run one process
    runs = {}
    for name in ("clean", "killed"):
        analytics = postgres.create_database(f"{name}_{unique}")
        stack = Stack(source_dsn=pg_dsn, analytics_dsn=analytics, redis_url=redis_url)
        migrate(stack)
        env = {
            "TRIAGE_SOURCE__SLOT_NAME": f"{name}_{unique}",
            "TRIAGE_REDIS__KEY_PREFIX": f"{name}{unique}",
            "TRIAGE_CLUSTER__PROCESSES": str(processes if name == "killed" else 1),
            "TRIAGE_JOBS__ENABLED": "false",
            "TRIAGE_WAREHOUSE__ENABLED": "false",
            # Short epochs: kills land between and within epochs alike.
            "TRIAGE_PIPELINE__EPOCH_INTERVAL": "PT2S",
        }
        runs[name] = (stack, PipelineProcess(stack, tmp_path / name, env))
    writer = WorkloadWriter(
        pg_dsn,
        WorkloadConfig(
            seed=5,
            customers=40,
            agents=10,
            tickets=400,
            rate=7,
            rhythm=False,
            time_compression=900,
            linger_seconds=8,
        ),
    )
    writer.seed_reference_data()
    follower = AssignmentFollower(redis_url, pg_dsn, key_prefix=f"clean{unique}")
    killed_stack, killed = runs["killed"]
    recoveries: list[float] = []
    try:
        for name, (_, pipeline) in runs.items():
            pipeline.start()
            pipeline.wait_ready(f"{name}_{unique}", timeout=180)
        follower.start()
        load = threading.Thread(target=writer.run)
        load.start()
        for _ in range(5):
            time.sleep(2.0)
            killed.kill()
            before = _count(
                killed_stack.analytics_dsn,
                "SELECT count(*) FROM analytics.routing_decision_history",
            )
            restarted = time.monotonic()
            killed.start()
            deadline = restarted + 120
            while (
                load.is_alive()
                and _count(
                    killed_stack.analytics_dsn,
                    "SELECT count(*) FROM analytics.routing_decision_history",
                )
                <= before
            ):
                assert time.monotonic() < deadline and killed.alive(), killed.log_tail()
                time.sleep(0.1)
            if load.is_alive():
                recoveries.append(round(time.monotonic() - restarted, 1))
        load.join(timeout=180)
        deadline = time.monotonic() + 240
        while not all(caught_up(pg_dsn, s.analytics_dsn) for s, _ in runs.values()):
            assert time.monotonic() < deadline, [p.log_tail() for _, p in runs.values()]
            time.sleep(0.5)
        follower.stop()
        deadline = time.monotonic() + 120
        while not all(caught_up(pg_dsn, s.analytics_dsn) for s, _ in runs.values()):
            assert time.monotonic() < deadline, [p.log_tail() for _, p in runs.values()]
            time.sleep(0.5)
        time.sleep(3)
    finally:
        follower.stop()
        for _, pipeline in runs.values():
            pipeline.stop()
    print(f"restart → first new decision, seconds: {recoveries}")
    assert recoveries, "at least one kill must fall while the workload writes"
    clean, crashed = (
        store_snapshot(stack.analytics_dsn) | live_snapshot(redis_url, f"{name}{unique}")
        for name, (stack, _) in runs.items()
    )
    if differing_parts(clean, crashed):
        pytest.fail(f"the stores differ:\n{pformat(describe_difference(clean, crashed))}")
    assert len(clean["live_tickets"]) == 400 and crashed["streamed_twice"] == []
    assert len(clean["facts"]) == 400
    assert Counter(n for _, n in clean["decided_tickets"]) == Counter({1: 400})
    kinds = Counter(kind for _, _, kind, *_ in clean["sla_events"])
    assert kinds["fulfill"] > 0 and kinds["pause"] > 0, kinds
