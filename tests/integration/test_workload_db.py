"""Workload generator against a real PostgreSQL: seeding, ticket creation, agent simulation."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from evaluation.workload import AgentSimulator, WorkloadConfig, WorkloadProgress, WorkloadWriter

pytestmark = pytest.mark.integration

SCHEMA = Path(__file__).resolve().parents[2] / "sql" / "source" / "001_helpdesk.sql"


@pytest.fixture
def helpdesk_dsn(pg_dsn: str) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA.read_text())
    return pg_dsn


def _scalar(conn: psycopg.Connection, query: str) -> object:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def test_seed_and_create_tickets_at_high_rate(helpdesk_dsn: str) -> None:
    cfg = WorkloadConfig(seed=21, customers=60, agents=8, tickets=50, rate=2000.0)
    cfg = cfg.model_copy(update={"simulate_agents": False})
    writer = WorkloadWriter(helpdesk_dsn, cfg)
    assert writer.seed_reference_data() == {"customers": 60, "agents": 8, "kb_articles": 50}
    assert writer.seed_reference_data() == {"customers": 0, "agents": 0, "kb_articles": 0}

    seen: list[WorkloadProgress] = []
    report = writer.run(progress=seen.append)

    assert report.tickets_created == 50
    assert len(set(report.created_ticket_ids)) == 50
    assert set(report.truth) == set(report.created_ticket_ids)
    assert report.events_written == 0
    assert seen and seen[-1].done and seen[-1].tickets_created == 50
    with psycopg.connect(helpdesk_dsn) as conn:
        assert _scalar(conn, "SELECT count(*) FROM customers") == 60
        assert _scalar(conn, "SELECT count(*) FROM agents") == 8
        assert _scalar(conn, "SELECT count(*) FROM tickets") == 50
        orphans = "SELECT count(*) FROM tickets t LEFT JOIN customers c ON c.id = t.customer_id"
        assert _scalar(conn, orphans + " WHERE c.id IS NULL") == 0
        assert _scalar(conn, "SELECT count(*) FROM tickets WHERE status <> 'new'") == 0
        unlabelled = _scalar(conn, "SELECT count(*) FROM tickets WHERE category IS NULL")
        assert isinstance(unlabelled, int) and 20 <= unlabelled < 50
        rows = conn.execute("SELECT id, category FROM tickets WHERE category IS NOT NULL")
        assert all(report.truth[tid] == cat for tid, cat in rows)
        languages = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT c.language FROM tickets t JOIN customers c ON c.id = t.customer_id"
            )
        }
        assert "en" in languages and len(languages) >= 2
        skills = conn.execute("SELECT skills, languages FROM agents").fetchall()
        assert all(isinstance(s, dict) and "billing" in s and "en" in ls for s, ls in skills)


def test_run_can_be_stopped_and_keeps_the_schedule(helpdesk_dsn: str) -> None:
    cfg = WorkloadConfig(seed=4, customers=20, agents=5, tickets=None, rate=200.0)
    cfg = cfg.model_copy(update={"simulate_agents": False, "rhythm": False})
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    report = WorkloadWriter(helpdesk_dsn, cfg).run(stop_event=stop)
    timer.cancel()
    assert report.stopped
    # Poisson arrivals at 200/s for about one second.
    assert 140 <= report.tickets_created <= 260
    assert report.max_lag_seconds < 0.5


def _assign(dsn: str, ticket_ids: list[int]) -> dict[int, int]:
    with psycopg.connect(dsn) as conn:
        agents = [r[0] for r in conn.execute("SELECT id FROM agents ORDER BY id")]
        assignment = {tid: agents[i % len(agents)] for i, tid in enumerate(ticket_ids)}
        for tid, aid in assignment.items():
            conn.execute("UPDATE tickets SET assigned_agent_id = %s WHERE id = %s", (aid, tid))
    return assignment


def test_agent_simulator_works_assigned_tickets(helpdesk_dsn: str) -> None:
    cfg = WorkloadConfig(seed=13, customers=30, agents=6, tickets=30, rate=1000.0)
    cfg = cfg.model_copy(
        update={"simulate_agents": False, "time_compression": 1e6, "poll_interval": 0.05}
    )
    report = WorkloadWriter(helpdesk_dsn, cfg).run()
    assigned = report.created_ticket_ids[:12]
    assignment = _assign(helpdesk_dsn, assigned)

    simulator = AgentSimulator(cfg, truth=report.truth)
    stop = threading.Event()
    timer = threading.Timer(30.0, stop.set)
    timer.start()
    stats = simulator.run(
        helpdesk_dsn, stop, until=lambda s: s.stats.tickets_started >= 12 and s.active == 0
    )
    timer.cancel()
    assert not stop.is_set(), "simulator did not finish in time"

    assert stats.tickets_started == 12
    assert stats.first_replies == 12
    assert stats.solved == 12 + stats.reopened
    with psycopg.connect(helpdesk_dsn) as conn:
        rows = conn.execute(
            "SELECT id, status, first_reply_at, solved_at, csat, created_at FROM tickets"
        ).fetchall()
        for tid, status, first_reply_at, solved_at, csat, created_at in rows:
            if tid in assignment:
                assert status == "solved"
                assert created_at <= first_reply_at <= solved_at
                assert 1 <= csat <= 5
            else:
                assert (status, first_reply_at, solved_at) == ("new", None, None)
        authors = conn.execute(
            "SELECT ticket_id, author_id FROM ticket_events"
            " WHERE kind = 'comment' AND author_type = 'agent'"
        ).fetchall()
        assert {tid for tid, _ in authors} == set(assignment)
        assert all(assignment[tid] == aid for tid, aid in authors)
        transitions = conn.execute(
            "SELECT old_status, new_status FROM ticket_events WHERE kind = 'status_change'"
        ).fetchall()
        assert transitions.count(("new", "open")) == 12
        assert sum(new == "solved" for _, new in transitions) == stats.solved


def test_reassignment_before_first_reply_hands_the_ticket_over(helpdesk_dsn: str) -> None:
    cfg = WorkloadConfig(seed=3, customers=10, agents=4, tickets=1, rate=1000.0)
    cfg = cfg.model_copy(update={"simulate_agents": False})
    report = WorkloadWriter(helpdesk_dsn, cfg).run()
    (ticket_id,) = report.created_ticket_ids
    now = [0.0]
    simulator = AgentSimulator(cfg, truth=report.truth, clock=lambda: now[0])
    with psycopg.connect(helpdesk_dsn) as conn:
        first, second = (r[0] for r in conn.execute("SELECT id FROM agents ORDER BY id LIMIT 2"))
        conn.execute("UPDATE tickets SET assigned_agent_id = %s WHERE id = %s", (first, ticket_id))
        conn.commit()
        assert simulator.poll(conn) == 1
        assert simulator.poll(conn) == 0  # already being worked
        conn.execute("UPDATE tickets SET assigned_agent_id = %s WHERE id = %s", (second, ticket_id))
        conn.commit()
        assert simulator.poll(conn) == 1
        now[0] = 1e9
        simulator.process_due(conn)
        assert simulator.active == 0
        authors = {
            r[0]
            for r in conn.execute("SELECT author_id FROM ticket_events WHERE author_type = 'agent'")
        }
        assert authors == {second}
        assert _scalar(conn, "SELECT status FROM tickets") == "solved"


def test_run_with_agents_and_a_router(helpdesk_dsn: str) -> None:
    """Tickets assigned while the run is going are worked by the built-in simulator."""
    cfg = WorkloadConfig(seed=17, customers=40, agents=6, tickets=40, rate=100.0)
    cfg = cfg.model_copy(
        update={"time_compression": 2e5, "poll_interval": 0.05, "linger_seconds": 2.0}
    )
    stop_router = threading.Event()

    def route() -> None:
        with psycopg.connect(helpdesk_dsn, autocommit=True) as conn:
            agents = [r[0] for r in conn.execute("SELECT id FROM agents ORDER BY id")]
            while not stop_router.wait(0.05):
                conn.execute(
                    "UPDATE tickets SET assigned_agent_id = %s"
                    " WHERE assigned_agent_id IS NULL AND id %% 2 = 0",
                    (agents[int(time.monotonic() * 10) % len(agents)],),
                )

    writer = WorkloadWriter(helpdesk_dsn, cfg)
    writer.seed_reference_data()
    router = threading.Thread(target=route, daemon=True)
    router.start()
    try:
        report = writer.run()
    finally:
        stop_router.set()
        router.join()
    assert report.tickets_created == 40
    assert report.first_replies > 0 and report.solved > 0
    assert report.events_written >= 2 * report.first_replies
    with psycopg.connect(helpdesk_dsn) as conn:
        odd_touched = _scalar(
            conn, "SELECT count(*) FROM tickets WHERE id % 2 = 1 AND status <> 'new'"
        )
        assert odd_touched == 0
