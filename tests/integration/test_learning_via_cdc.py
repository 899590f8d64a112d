"""Agents' labels flow through CDC into the models and change later predictions."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from bytewax.testing import TestingSink, run_main

from connectors.pg_cdc import PgCdcSettings, PgCdcSource, drop_slot
from pipelines.flow import build_flow
from pipelines.settings import PipelineSettings
from sinks.postgres import PostgresSink
from triage.runtime import Stack, migrate

pytestmark = pytest.mark.integration

BILLING = "I was charged twice for invoice {n}, please refund the duplicate payment"
SHIPPING = "My parcel {n} never arrived, the courier tracking has been stuck for days"


def _run_pipeline(dsn: str, slot: str) -> list[object]:
    live: list[object] = []
    flow = build_flow(
        PipelineSettings(min_examples=20),
        source=PgCdcSource(PgCdcSettings(dsn=dsn, slot_name=slot, stop_at_idle=True)),
        analytics_sink=PostgresSink(dsn),
        decision_sink=TestingSink(live),
    )
    run_main(flow)
    return live


def test_agent_corrections_through_cdc_change_later_predictions(
    pg_dsn: str, unique: str, tmp_path: Path
) -> None:
    migrate(Stack(source_dsn=pg_dsn, analytics_dsn=pg_dsn, redis_url="redis://unused"))
    slot = f"learn_{unique}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO customers (name, email, tier) VALUES ('Ann', 'a@x', 'standard')")
        # Tickets arrive unlabelled; agents then correct their categories in the helpdesk.
        # The team calls shipping problems "delivery", a label no keyword rule knows.
        for n in range(30):
            for text in (BILLING, SHIPPING):
                conn.execute(
                    "INSERT INTO tickets (customer_id, subject, description) VALUES (1, %s, '')",
                    (text.format(n=n),),
                )
    try:
        _run_pipeline(pg_dsn, slot)  # snapshot: nothing learned yet
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE tickets SET category = CASE WHEN subject LIKE 'I was charged%%'"
                " THEN 'billing' ELSE 'delivery' END"
            )
            conn.execute(
                "INSERT INTO tickets (customer_id, subject, description) VALUES "
                "(1, 'The courier tracking for parcel 991 has been stuck, it never arrived', '')"
            )
        _run_pipeline(pg_dsn, slot)  # streams the corrections, then the new ticket
        with psycopg.connect(pg_dsn) as conn:
            new = conn.execute(
                "SELECT category, category_source FROM analytics.ticket_facts"
                " ORDER BY ticket_id DESC LIMIT 1"
            ).fetchone()
            corrected = conn.execute(
                "SELECT count(*) FROM analytics.ticket_facts WHERE category_source = 'ticket'"
            ).fetchone()
    finally:
        drop_slot(pg_dsn, slot)
    assert corrected is not None and corrected[0] == 60
    # Before the corrections a keyword rule would say "shipping"; the model learned the
    # agents' own label from CDC and applies it.
    assert new == ("delivery", "model")
