"""The production path end to end: PostgreSQL → Debezium → Kafka → the pipeline → stores.

The pipeline runs as ``triage pipeline`` in Kafka mode (``TRIAGE_CDC__MODE=kafka``) against
the session's real broker and reads the topics the production connector writes; the
workload generator writes helpdesk activity into the source database. Each test has its
own analytics database and Redis key prefix and reads the topics from the beginning, so
every ticket in the source database must end up in its stores.
"""

from __future__ import annotations

import threading

import psycopg
import pytest

from evaluation.workload import WorkloadConfig, WorkloadWriter
from tests.real_kafka.conftest import KafkaModeRun, wait_decisions
from triage.tools.report import dead_letter_count

pytestmark = pytest.mark.real_kafka


def test_pipeline_in_kafka_mode_routes_every_ticket_debezium_captured(
    kafka_mode: KafkaModeRun,
) -> None:
    writer = WorkloadWriter(
        kafka_mode.source_dsn, WorkloadConfig(seed=11, customers=15, agents=6, tickets=40, rate=40)
    )
    writer.seed_reference_data()
    created = writer.run().created_ticket_ids
    assert len(created) == 40

    kafka_mode.wait_routed(created)
    kafka_mode.assert_facts_equal_source()
    # Tombstones and the probe table's changes are skipped or ignored, never dead-lettered.
    assert dead_letter_count(kafka_mode.analytics_dsn) == 0, kafka_mode.pipeline.log_tail()


@pytest.mark.parametrize("kafka_mode", [2], indirect=True, ids=["2_processes"])
def test_pipeline_processes_killed_mid_stream_lose_and_duplicate_nothing(
    kafka_mode: KafkaModeRun,
) -> None:
    writer = WorkloadWriter(
        kafka_mode.source_dsn,
        WorkloadConfig(seed=23, customers=20, agents=8, tickets=100, rate=10),
    )
    writer.seed_reference_data()
    client, stream = kafka_mode.client, f"{kafka_mode.key_prefix}:decisions"
    # The topics already hold tickets (the snapshot's, earlier tests'): once those are
    # decided the cluster is up and has caught up.
    with psycopg.connect(kafka_mode.source_dsn) as conn:
        earlier = [row[0] for row in conn.execute("SELECT id FROM tickets")]
    kafka_mode.wait_routed(earlier)
    created: list[int] = []
    load = threading.Thread(target=lambda: created.extend(writer.run().created_ticket_ids))
    load.start()
    try:
        # Kill every pipeline process once this test's tickets are being decided, while
        # the rest are still being written (10 s of writing in all).
        wait_decisions(kafka_mode, client.xlen(stream) + 10, timeout=60)
        assert load.is_alive(), "the workload ended before the kill; the test proves less"
        kafka_mode.pipeline.kill()
        kafka_mode.pipeline.start()
    finally:
        load.join(timeout=120)
    assert len(created) == 100

    kafka_mode.wait_routed(created)
    kafka_mode.assert_facts_equal_source()
    kafka_mode.assert_no_duplicate_decisions(created)
    assert dead_letter_count(kafka_mode.analytics_dsn) == 0, kafka_mode.pipeline.log_tail()
