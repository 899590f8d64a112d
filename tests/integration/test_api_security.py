"""API keys, scopes, rate limits and the audit log over real PostgreSQL and Redis."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.keys import ApiKey, create_api_key, revoke_api_key
from api.settings import ApiSettings
from sinks.migrations import apply_migrations
from tests.integration.test_api import make_decision, write
from triage.cli import app as cli

pytestmark = pytest.mark.integration

ANALYTICS_SQL = Path(__file__).resolve().parents[2] / "sql" / "analytics"
# A fixed instant 10 s into a rate-limit window, so a test never straddles two windows.
WINDOW_START = 1_800_000_000.0 - 1_800_000_000.0 % 60
NOW = WINDOW_START + 10

# One endpoint per protected group and the scope it needs.
ENDPOINTS = [
    ("/v1/tickets/1/routing", "read:routing"),
    ("/v1/agents/3/queue", "read:routing"),
    ("/v1/queues/billing/holding", "read:routing"),
    ("/v1/tickets/1/sla", "read:tickets"),
    ("/v1/search/tickets?q=refund", "read:tickets"),
    ("/v1/search/kb?q=refund", "read:tickets"),
    ("/v1/reports/daily?format=json", "read:analytics"),
    ("/v1/dashboard/panels", "read:analytics"),
]


@pytest.fixture
def analytics_dsn(pg_dsn: str) -> str:
    apply_migrations(pg_dsn, ANALYTICS_SQL)
    return pg_dsn


@pytest.fixture
def settings(redis_url: str, analytics_dsn: str, unique: str) -> ApiSettings:
    return ApiSettings(
        redis_url=redis_url,
        analytics_dsn=analytics_dsn,
        key_prefix=f"t{unique}",
        auth_required=True,
        auth_cache_ttl_s=0,
    )


@pytest.fixture
def api(settings: ApiSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.app.state.access.limiter.clock = lambda: NOW  # type: ignore[attr-defined]
        yield client


def new_key(
    dsn: str, *scopes: str, rate_limit: int = 600, name: str = "test"
) -> tuple[ApiKey, str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return create_api_key(conn, name=name, scopes=scopes, rate_limit_per_minute=rate_limit)


def revoke(dsn: str, key_id: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert revoke_api_key(conn, key_id=key_id) is not None


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


_Q_REFUND = "q=sha256:" + hashlib.sha256(b"refund").hexdigest()[:16]


def audit_rows(api: TestClient, dsn: str) -> list[tuple[object, ...]]:
    api.app.state.access.audit.flush()  # type: ignore[attr-defined]
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT key_id, method, path, query, status_code, ticket_id, agent_id, client_addr"
            " FROM analytics.api_audit ORDER BY id"
        ).fetchall()


class TestAuthentication:
    @pytest.mark.parametrize(("path", "scope"), ENDPOINTS)
    def test_no_key_is_401_with_a_challenge(self, api: TestClient, path: str, scope: str) -> None:
        response = api.get(path)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="triage"'
        assert "X-RateLimit-Limit" not in response.headers

    @pytest.mark.parametrize(
        "key", ["tri_" + "A" * 43, "not-a-key", "tri_" + "A" * 43 + "'; DROP TABLE x; --"]
    )
    def test_unknown_key_is_401(self, api: TestClient, key: str) -> None:
        response = api.get("/v1/queues/billing/holding", headers=bearer(key))
        assert response.status_code == 401
        assert response.json() == {"detail": "unknown API key"}
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]

    def test_bearer_or_x_api_key(self, api: TestClient, analytics_dsn: str) -> None:
        _, key = new_key(analytics_dsn, "read:routing")
        assert api.get("/v1/queues/billing/holding", headers=bearer(key)).status_code == 200
        assert api.get("/v1/queues/billing/holding", headers={"X-API-Key": key}).status_code == 200
        basic = {"Authorization": f"Basic {key}"}
        assert api.get("/v1/queues/billing/holding", headers=basic).status_code == 401

    def test_revoked_key_is_401(self, api: TestClient, analytics_dsn: str) -> None:
        record, key = new_key(analytics_dsn, "admin")
        assert api.get("/v1/queues/billing/holding", headers=bearer(key)).status_code == 200
        revoke(analytics_dsn, record.key_id)
        response = api.get("/v1/queues/billing/holding", headers=bearer(key))
        assert response.status_code == 401
        assert response.json() == {"detail": "revoked API key"}

    def test_revocation_takes_effect_after_the_cache_ttl(
        self, settings: ApiSettings, analytics_dsn: str
    ) -> None:
        record, key = new_key(analytics_dsn, "read:routing")
        cached = settings.model_copy(update={"auth_cache_ttl_s": 5.0})
        with TestClient(create_app(cached)) as client:
            now = [1000.0]
            client.app.state.access.keys.clock = lambda: now[0]  # type: ignore[attr-defined]
            assert client.get("/v1/queues/q/holding", headers=bearer(key)).status_code == 200
            revoke(analytics_dsn, record.key_id)
            now[0] += 4.0
            assert client.get("/v1/queues/q/holding", headers=bearer(key)).status_code == 200
            now[0] += 1.5
            assert client.get("/v1/queues/q/holding", headers=bearer(key)).status_code == 401

    def test_open_endpoints_need_no_key(self, api: TestClient) -> None:
        assert api.get("/health").status_code == 200
        page = api.get("/dashboard")
        assert page.status_code == 200
        assert "X-API-Key" in page.text
        assert api.get("/openapi.json").status_code == 200


class TestScopes:
    @pytest.mark.parametrize(("path", "scope"), ENDPOINTS)
    def test_own_scope_passes_others_are_403(
        self, api: TestClient, analytics_dsn: str, path: str, scope: str
    ) -> None:
        _, allowed = new_key(analytics_dsn, scope)
        assert api.get(path, headers=bearer(allowed)).status_code in (200, 404)
        others = [s for s in ("read:routing", "read:tickets", "read:analytics") if s != scope]
        _, denied = new_key(analytics_dsn, *others)
        response = api.get(path, headers=bearer(denied))
        assert response.status_code == 403
        assert response.json() == {"detail": f"this API key lacks the scope {scope}"}
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
        assert response.headers["X-RateLimit-Limit"] == "600"

    def test_with_scope_reads_data(self, api: TestClient, settings: ApiSettings) -> None:
        write(settings, [make_decision(123, 10)])
        _, key = new_key(settings.analytics_dsn, "read:routing")
        response = api.get("/v1/tickets/123/routing", headers=bearer(key))
        assert response.status_code == 200
        assert response.json()["agent_id"] == 3

    def test_admin_works_everywhere(self, api: TestClient, analytics_dsn: str) -> None:
        _, key = new_key(analytics_dsn, "admin")
        for path, _scope in ENDPOINTS:
            assert api.get(path, headers=bearer(key)).status_code in (200, 404), path
        assert api.get("/v1/dashboard/panels", headers=bearer(key)).status_code == 200


class TestRateLimit:
    def test_429_after_the_limit_with_headers(self, api: TestClient, analytics_dsn: str) -> None:
        _, key = new_key(analytics_dsn, "read:routing", rate_limit=3)
        for remaining in (2, 1, 0):
            response = api.get("/v1/queues/billing/holding", headers=bearer(key))
            assert response.status_code == 200
            assert response.headers["X-RateLimit-Limit"] == "3"
            assert response.headers["X-RateLimit-Remaining"] == str(remaining)
            assert response.headers["X-RateLimit-Reset"] == "50"
        response = api.get("/v1/queues/billing/holding", headers=bearer(key))
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "50"
        assert response.headers["X-RateLimit-Remaining"] == "0"
        assert response.json() == {"detail": "rate limit of 3 requests per minute exceeded"}
        # The next window starts a new count.
        api.app.state.access.limiter.clock = lambda: NOW + 60  # type: ignore[attr-defined]
        response = api.get("/v1/queues/billing/holding", headers=bearer(key))
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Remaining"] == "2"

    def test_every_authenticated_response_has_the_headers(
        self, api: TestClient, analytics_dsn: str
    ) -> None:
        _, key = new_key(analytics_dsn, "read:routing", rate_limit=10)
        for path, status in [("/v1/tickets/9/routing", 404), ("/v1/tickets/abc/routing", 422)]:
            response = api.get(path, headers=bearer(key))
            assert response.status_code == status
            assert response.headers["X-RateLimit-Limit"] == "10"
        assert api.get("/health", headers=bearer(key)).headers.get("X-RateLimit-Limit") is None

    def test_each_key_has_its_own_budget(self, api: TestClient, analytics_dsn: str) -> None:
        _, first = new_key(analytics_dsn, "read:routing", rate_limit=1)
        _, second = new_key(analytics_dsn, "read:routing", rate_limit=1)
        assert api.get("/v1/queues/q/holding", headers=bearer(first)).status_code == 200
        assert api.get("/v1/queues/q/holding", headers=bearer(first)).status_code == 429
        assert api.get("/v1/queues/q/holding", headers=bearer(second)).status_code == 200

    def test_shared_by_api_processes(self, settings: ApiSettings, analytics_dsn: str) -> None:
        _, key = new_key(analytics_dsn, "read:routing", rate_limit=2)
        with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
            for client in (a, b):
                client.app.state.access.limiter.clock = lambda: NOW  # type: ignore[attr-defined]
            assert a.get("/v1/queues/q/holding", headers=bearer(key)).status_code == 200
            assert b.get("/v1/queues/q/holding", headers=bearer(key)).status_code == 200
            assert a.get("/v1/queues/q/holding", headers=bearer(key)).status_code == 429


class TestAudit:
    def test_reads_of_customer_data_are_recorded(
        self, api: TestClient, settings: ApiSettings
    ) -> None:
        write(settings, [make_decision(123, 10)])
        dsn = settings.analytics_dsn
        record, key = new_key(dsn, "read:routing")
        auth = bearer(key)
        assert api.get("/v1/tickets/123/routing", headers=auth).status_code == 200
        assert api.get("/v1/agents/3/queue?limit=5", headers=auth).status_code == 200
        assert api.get("/v1/queues/billing/holding", headers=auth).status_code == 200
        assert api.get("/v1/tickets/123/sla", headers=auth).status_code == 403
        assert api.get("/v1/search/tickets?q=refund", headers=auth).status_code == 403
        # Not audited: aggregates, health, and requests without a valid key.
        api.get("/v1/dashboard/panels", headers=auth)
        api.get("/health", headers=auth)
        api.get("/v1/tickets/123/routing")
        k = record.key_id
        assert audit_rows(api, dsn) == [
            (k, "GET", "/v1/tickets/123/routing", "", 200, 123, None, "testclient"),
            (k, "GET", "/v1/agents/3/queue", "limit=5", 200, None, 3, "testclient"),
            (k, "GET", "/v1/queues/billing/holding", "", 200, None, None, "testclient"),
            (k, "GET", "/v1/tickets/123/sla", "", 403, 123, None, "testclient"),
            # Search text may name a person: the log keeps a hash of it.
            (k, "GET", "/v1/search/tickets", _Q_REFUND, 403, None, None, "testclient"),
        ]
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT last_used_at IS NOT NULL FROM analytics.api_keys WHERE key_id = %s", (k,)
            ).fetchone()
        assert row == (True,)

    def test_a_failed_audit_write_fails_no_request(
        self, api: TestClient, analytics_dsn: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        record, key = new_key(analytics_dsn, "read:routing")
        with psycopg.connect(analytics_dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE analytics.api_audit RENAME TO api_audit_away")
        assert api.get("/v1/tickets/5/routing", headers=bearer(key)).status_code == 404
        with caplog.at_level(logging.WARNING, logger="api.audit"):
            assert api.app.state.access.audit.flush() == 0  # type: ignore[attr-defined]
        assert "audit write failed" in caplog.text
        with psycopg.connect(analytics_dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE analytics.api_audit_away RENAME TO api_audit")
        rows = audit_rows(api, analytics_dsn)
        assert [(r[0], r[2], r[4]) for r in rows] == [(record.key_id, "/v1/tickets/5/routing", 404)]


class TestAuthOff:
    @pytest.fixture
    def open_api(self, settings: ApiSettings) -> Iterator[TestClient]:
        with TestClient(create_app(settings.model_copy(update={"auth_required": False}))) as c:
            yield c

    @pytest.mark.parametrize(("path", "scope"), ENDPOINTS)
    def test_no_key_needed_and_no_limit_headers(
        self, open_api: TestClient, path: str, scope: str
    ) -> None:
        response = open_api.get(path, headers={"X-API-Key": "ignored"})
        assert response.status_code not in (401, 403, 429)
        assert "X-RateLimit-Limit" not in response.headers

    def test_reads_are_audited_as_anonymous(self, open_api: TestClient, analytics_dsn: str) -> None:
        open_api.get("/v1/tickets/77/sla")
        assert audit_rows(open_api, analytics_dsn) == [
            ("anonymous", "GET", "/v1/tickets/77/sla", "", 404, 77, None, "testclient")
        ]


class TestCli:
    @pytest.fixture
    def runner(
        self, analytics_dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> CliRunner:
        monkeypatch.setenv("TRIAGE_SOURCE__DSN", analytics_dsn)
        monkeypatch.setenv("TRIAGE_ANALYTICS__DSN", analytics_dsn)
        monkeypatch.setenv("TRIAGE_REDIS__URL", redis_url)
        return CliRunner()

    def test_create_list_revoke(self, runner: CliRunner, api: TestClient) -> None:
        created = runner.invoke(
            cli,
            [
                "api-keys",
                "create",
                "--name",
                "support bot",
                "--scope",
                "read:routing",
                "--scope",
                "read:tickets",
                "--rate-limit",
                "60",
            ],
        )
        assert created.exit_code == 0, created.output
        key = created.stdout.strip()
        assert key.startswith("tri_")
        assert "not shown again" in created.stderr
        assert api.get("/v1/tickets/1/sla", headers=bearer(key)).status_code == 404

        listed = runner.invoke(cli, ["api-keys", "list", "--json"])
        assert listed.exit_code == 0, listed.output
        [entry] = json.loads(listed.stdout)
        assert entry["name"] == "support bot"
        assert entry["scopes"] == ["read:tickets", "read:routing"]
        assert entry["rate_limit_per_minute"] == 60
        assert entry["revoked_at"] is None
        assert key not in listed.stdout
        assert runner.invoke(cli, ["api-keys", "list"]).exit_code == 0

        revoked = runner.invoke(cli, ["api-keys", "revoke", entry["key_id"]])
        assert revoked.exit_code == 0, revoked.output
        assert api.get("/v1/tickets/1/sla", headers=bearer(key)).status_code == 401
        [after] = json.loads(runner.invoke(cli, ["api-keys", "list", "--json"]).stdout)
        assert after["revoked_at"] is not None

    def test_refuses_unknown_scope_and_key(self, runner: CliRunner) -> None:
        bad = runner.invoke(cli, ["api-keys", "create", "--name", "x", "--scope", "write:all"])
        assert bad.exit_code == 2
        assert "unknown scope" in bad.stderr
        missing = runner.invoke(cli, ["api-keys", "revoke", "key_000000000000"])
        assert missing.exit_code == 1
        assert "no API key" in missing.stderr
