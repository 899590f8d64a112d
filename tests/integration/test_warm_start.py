"""``triage routing warm-start``: a history file reaches the router through CDC."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from bytewax.recovery import RecoveryConfig
from bytewax.testing import TestingSink, run_main
from typer.testing import CliRunner

from connectors.pg_cdc import PgCdcSettings, PgCdcSource, drop_slot
from models.helpdesk import RoutingDecision
from pipelines.flow import build_flow
from pipelines.recovery import ensure_recovery_dir
from pipelines.settings import PipelineSettings
from sinks.postgres import PostgresSink
from triage.cli import app
from triage.runtime import Stack, migrate

pytestmark = pytest.mark.integration


@pytest.fixture
def env(pg_dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    migrate(Stack(source_dsn=pg_dsn, analytics_dsn=pg_dsn, redis_url=redis_url))
    for name, value in {
        "TRIAGE_SOURCE__DSN": pg_dsn,
        "TRIAGE_ANALYTICS__DSN": pg_dsn,
        "TRIAGE_REDIS__URL": redis_url,
    }.items():
        monkeypatch.setenv(name, value)
    return pg_dsn


def test_a_warm_started_router_sends_the_first_ticket_to_the_faster_agent(
    env: str, unique: str, tmp_path: Path
) -> None:
    history = tmp_path / "history.csv"
    rows = ["agent,type,handling_seconds,completed_at"]
    for i in range(5):
        rows += [
            f"1,billing,900,2026-02-0{i + 1}T10:00:00Z",
            f"2,billing,120,2026-02-0{i + 1}T11:00:00",
        ]
    history.write_text("\n".join(rows) + "\n")
    result = CliRunner().invoke(
        app,
        [
            "routing",
            "warm-start",
            "--outcomes",
            str(history),
            "--queue",
            "billing",
            "--state-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "added 10 outcome(s) for 2 agent(s) in queue(s) billing" in result.output
    with psycopg.connect(env, autocommit=True) as conn:
        stored = conn.execute(
            "SELECT count(*), count(ticket_id), min(origin) FROM work_outcomes"
        ).fetchone()
        conn.execute("INSERT INTO customers (name, email, tier) VALUES ('Ann', 'a@x', 'standard')")
        for name in ("Slow", "Fast"):
            conn.execute(
                "INSERT INTO agents (name, email, team, skills, capacity)"
                " VALUES (%s, 'x@x', 'billing', '{\"billing\": 1.0}', 3)",
                (name,),
            )
    assert stored == (10, 0, "warm-start")
    live: list[object] = []
    slot = f"warm_{unique}"
    recovery = ensure_recovery_dir(tmp_path / "recovery")

    def run() -> None:
        flow = build_flow(
            PipelineSettings(ranker="expected_time"),
            source=PgCdcSource(PgCdcSettings(dsn=env, slot_name=slot, stop_at_idle=True)),
            analytics_sink=PostgresSink(env),
            decision_sink=TestingSink(live),
        )
        run_main(flow, recovery_config=RecoveryConfig(str(recovery)))

    try:
        run()  # the agents and the history, as a running pipeline would have them
        with psycopg.connect(env, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO tickets (customer_id, subject, description, category)"
                " VALUES (1, 'Refund the duplicate charge on my invoice', '', 'billing')"
            )
        run()  # resumes its state from recovery and routes the new ticket
    finally:
        drop_slot(env, slot)
    [decision] = [x for x in live if isinstance(x, RoutingDecision) and x.status == "assigned"]
    assert decision.agent_id == 2
    assert decision.model_version == "expected-time-10"
    assert "expected billing: 1" in decision.reasons[0]  # ~120-some seconds, 5 outcomes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("agent,type\n1,billing\n", "lacks column(s) handling_seconds"),
        ("agent,type,handling_seconds\nAnn,billing,60\n", "line 2: agent_id 'Ann'"),
        ("agent,type,handling_seconds\n1,billing,-5\n", "line 2: handling_seconds '-5'"),
        ("agent,type,handling_seconds,queue\n1,billing,5,\n", "line 2: queue is empty"),
    ],
)
def test_a_bad_history_file_is_refused_whole_with_the_line(
    env: str, tmp_path: Path, text: str, message: str
) -> None:
    history = tmp_path / "history.csv"
    history.write_text(text)
    args = ["routing", "warm-start", "--outcomes", str(history), "--state-dir", str(tmp_path)]
    if "queue" not in text:
        args += ["--queue", "billing"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    with psycopg.connect(env) as conn:
        assert conn.execute("SELECT count(*) FROM work_outcomes").fetchone() == (0,)
