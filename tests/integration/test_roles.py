"""Least-privilege database logins of the production stack (sql/roles), on real PostgreSQL.

In the same order as the compose stack: the roles first (the database's first start),
then the migrations as the owner. Then each login does what its service does, and is
refused what it must not do.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from sinks.migrations import apply_migrations
from sinks.postgres import PostgresSink
from sinks.retry import RetryPolicy
from tests.integration.test_postgres_sink import make_decision, make_enriched

pytestmark = pytest.mark.integration

SQL = Path(__file__).resolve().parents[2] / "sql"


def run_file(dsn: str, path: Path) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(path.read_bytes())


def as_role(dsn: str, role: str) -> str:
    # The private test cluster trusts local connections: no password needed here.
    return make_conninfo(dsn, user=role)


def refused(dsn: str, statement: str) -> bool:
    with psycopg.connect(dsn) as conn:
        try:
            conn.execute(statement.encode())
        except psycopg.errors.InsufficientPrivilege:
            return True
    return False


def run(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(statement.encode())


@pytest.fixture
def analytics(pg_dsn: str) -> str:
    run_file(pg_dsn, SQL / "roles" / "analytics_roles.sql")
    apply_migrations(pg_dsn, SQL / "analytics")
    return pg_dsn


def test_the_pipeline_login_writes_rows_but_changes_no_schema(analytics: str) -> None:
    dsn = as_role(analytics, "triage_pipeline")
    part = PostgresSink(dsn, retry=RetryPolicy(max_retries=0)).build("write_analytics", 0, 1)
    try:
        part.write_batch([make_enriched(1, 10), make_decision(1, 10)])
    finally:
        part.close()
    with psycopg.connect(analytics) as conn:
        assert conn.execute("SELECT count(*) FROM analytics.routing_decisions").fetchone() == (1,)
    assert refused(dsn, "CREATE TABLE analytics.extra (id int)")
    assert refused(dsn, "DROP TABLE analytics.ticket_facts")


def test_the_api_login_reads_and_writes_only_its_audit(analytics: str) -> None:
    dsn = as_role(analytics, "triage_api")
    with psycopg.connect(analytics) as conn:
        conn.execute(
            "INSERT INTO analytics.api_keys (key_id, name, key_hash, scopes) "
            "VALUES ('k1', 'ops', %s, '{admin}')",
            ("a" * 64,),
        )
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM analytics.ticket_facts").fetchone() == (0,)
    run(
        dsn,
        "INSERT INTO analytics.api_audit (at, key_id, method, path, status_code) "
        "VALUES (now(), 'k1', 'GET', '/v1/tickets/1', 200)",
    )
    run(dsn, "UPDATE analytics.api_keys SET last_used_at = now() WHERE key_id = 'k1'")
    assert refused(dsn, "UPDATE analytics.api_keys SET revoked_at = NULL WHERE key_id = 'k1'")
    assert refused(dsn, "INSERT INTO analytics.ticket_facts (ticket_id) VALUES (1)")
    assert refused(dsn, "DELETE FROM analytics.api_audit")
    assert refused(dsn, "CREATE TABLE analytics.extra (id int)")


def test_the_bi_login_only_reads_including_tables_added_later(analytics: str) -> None:
    dsn = as_role(analytics, "triage_bi")
    # A table a later migration adds, created by the owner: default privileges cover it.
    run(analytics, "CREATE TABLE analytics.added_later (id int)")
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM analytics.added_later").fetchone() == (0,)
    assert refused(dsn, "INSERT INTO analytics.added_later VALUES (1)")
    assert refused(
        dsn,
        "INSERT INTO analytics.api_audit (at, key_id, method, path, status_code) "
        "VALUES (now(), 'k', 'GET', '/', 200)",
    )
    run(as_role(analytics, "triage_pipeline"), "INSERT INTO analytics.added_later VALUES (1)")


def test_the_cdc_login_reads_only_the_published_tables(pg_dsn: str) -> None:
    apply_migrations(pg_dsn, SQL / "source", schema="public")
    run(pg_dsn, "CREATE TABLE public.payroll (id int)")
    run_file(pg_dsn, SQL / "roles" / "source_roles.sql")
    dsn = as_role(pg_dsn, "triage_cdc")
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM public.tickets").fetchone() == (0,)
        replication = conn.execute(
            "SELECT rolreplication FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert replication == (True,)
    assert refused(dsn, "SELECT * FROM public.payroll")
    assert refused(dsn, "INSERT INTO public.customers (name, email) VALUES ('a', 'a@b.c')")
    # What Debezium and the embedded reader do: a logical slot with pgoutput, peeked.
    slot = f"roles_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        try:
            conn.execute(
                "SELECT count(*) FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, "
                "'proto_version', '1', 'publication_names', 'triage_cdc')",
                (slot,),
            )
        finally:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        # The connector's heartbeat.action.query (infra/debezium/helpdesk-connector.json).
        conn.execute("SELECT pg_logical_emit_message(false, 'triage-heartbeat', now()::text)")


def test_the_outcome_login_only_adds_work_outcomes(pg_dsn: str) -> None:
    run_file(pg_dsn, SQL / "roles" / "source_roles.sql")  # first start: before the table
    apply_migrations(pg_dsn, SQL / "source", schema="public")
    dsn = as_role(pg_dsn, "triage_outcomes")
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO work_outcomes (ticket_id, agent_id, queue, handling_seconds)"
            " VALUES (1, 2, 'calls', 60) RETURNING id"
        ).fetchone()
    assert row is not None and row[0] >= 1
    assert refused(dsn, "SELECT handling_seconds FROM work_outcomes")
    assert refused(dsn, "SELECT * FROM tickets")
    assert refused(dsn, "DELETE FROM work_outcomes")


def _run_init_script(script: str, dsn: str, tmp_path: Path, **secrets: str) -> str:
    """Run an infra/postgres init script as the database image would on its first start
    (``/triage/roles`` mounted from sql/roles), against the test database."""
    import glob
    import os
    import subprocess

    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(dsn)
    text = (SQL.parent / "infra" / "postgres" / script).read_text()
    local = tmp_path / script
    local.write_text(text.replace("/triage/roles", str(SQL / "roles")))
    psql = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))
    path = os.path.dirname(psql[-1]) + os.pathsep + os.environ["PATH"] if psql else None
    env = {
        **os.environ,
        "POSTGRES_USER": str(info["user"]),
        "POSTGRES_DB": str(info["dbname"]),
        "PGHOST": str(info["host"]),
        "PGPORT": str(info["port"]),
        "PGDATA": str(tmp_path),
        **({"PATH": path} if path else {}),
        **secrets,
    }
    result = subprocess.run(["bash", str(local)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_init_scripts_create_the_logins_with_their_passwords(
    pg_dsn: str, postgres: Any, tmp_path: Path
) -> None:
    (tmp_path / "pg_hba.conf").write_text("")
    _run_init_script(
        "analytics-roles.sh",
        pg_dsn,
        tmp_path,
        ANALYTICS_PIPELINE_PASSWORD="it's-a-secret",
        ANALYTICS_API_PASSWORD="a",
        ANALYTICS_BI_PASSWORD="b",
    )
    source = postgres.create_database(f"src_{uuid.uuid4().hex[:8]}")
    apply_migrations(source, SQL / "source", schema="public")
    _run_init_script(
        "source-roles.sh",
        source,
        tmp_path,
        HELPDESK_CDC_PASSWORD="c",
        HELPDESK_OUTCOMES_PASSWORD="o",
    )
    with psycopg.connect(pg_dsn) as conn:
        found = conn.execute(
            "SELECT rolname FROM pg_authid WHERE rolname LIKE 'triage\\_%' AND rolpassword"
            " IS NOT NULL ORDER BY 1"
        ).fetchall()
    logins = {"triage_api", "triage_bi", "triage_cdc", "triage_outcomes", "triage_pipeline"}
    assert logins <= {r for (r,) in found}
    # Debezium connects for replication: the CDC login is admitted for that.
    hba = (tmp_path / "pg_hba.conf").read_text()
    assert "host replication triage_cdc all scram-sha-256" in hba
    # Missing secrets stop the first start instead of creating logins without a password.
    with pytest.raises(AssertionError, match="ANALYTICS_API_PASSWORD"):
        _run_init_script("analytics-roles.sh", pg_dsn, tmp_path, ANALYTICS_PIPELINE_PASSWORD="x")
