"""The read API over real Redis and PostgreSQL, fed through the sinks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from models.helpdesk import RoutingDecision
from models.signals import BreachRiskScore
from models.sla import SlaEvent
from sinks.migrations import apply_migrations
from sinks.postgres import PostgresSink
from sinks.redis import RedisItem, RedisSink
from tests.factories import breach_risk, routing_decision, sla_event
from triage.services import free_port

pytestmark = pytest.mark.integration

ANALYTICS_SQL = Path(__file__).resolve().parents[2] / "sql" / "analytics"
T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def make_decision(
    ticket_id: int,
    version: int,
    *,
    agent_id: int | None = 3,
    status: str = "assigned",
    priority: str = "high",
    decided_offset_s: float = 0.0,
) -> RoutingDecision:
    return routing_decision(
        ticket_id,
        version,
        at=T0 - timedelta(milliseconds=40),
        agent_id=agent_id,
        status=status,
        priority=priority,
        sla_deadline=T0 + timedelta(hours=4),
        decided_at=T0 + timedelta(seconds=decided_offset_s),
    )


def make_sla_event(
    ticket_id: int, kind: str, at_s: float, *, metric: str = "first_reply", breached: bool = False
) -> SlaEvent:
    return sla_event(
        ticket_id,
        kind,
        at=T0 + timedelta(seconds=at_s),
        metric=metric,
        breached=breached,
        deadline=None if kind in ("pause", "fulfill") else T0 + timedelta(hours=1),
        business_seconds_elapsed=at_s,
    )


def make_risk(ticket_id: int, version: int, risk: float) -> BreachRiskScore:
    return breach_risk(ticket_id, version, risk, at=T0 + timedelta(minutes=version))


@pytest.fixture
def analytics_dsn(pg_dsn: str) -> str:
    apply_migrations(pg_dsn, ANALYTICS_SQL)
    return pg_dsn


@pytest.fixture
def settings(redis_url: str, analytics_dsn: str, unique: str) -> ApiSettings:
    # Keys are tested in test_api_security.py; here every read is open.
    return ApiSettings(
        redis_url=redis_url,
        analytics_dsn=analytics_dsn,
        key_prefix=f"t{unique}",
        auth_required=False,
    )


@pytest.fixture
def api(settings: ApiSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def write(settings: ApiSettings, items: Sequence[RedisItem], *, redis: bool = True) -> None:
    pg = PostgresSink(settings.analytics_dsn).build("out", 0, 1)
    pg.write_batch(list(items))
    pg.close()
    if redis:
        rd = RedisSink(settings.redis_url, prefix=settings.key_prefix).build("out", 0, 1)
        rd.write_batch(list(items))
        rd.close()


class TestTicketRouting:
    def test_served_from_redis(self, api: TestClient, settings: ApiSettings) -> None:
        write(settings, [make_decision(123, 10)])
        response = api.get("/v1/tickets/123/routing")
        assert response.status_code == 200
        body = response.json()
        assert body["source"] == "redis"
        assert body["agent_id"] == 3
        assert body["reasons"] == ["skills:billing", "capacity"]
        assert body["version"] == 10
        assert datetime.fromisoformat(body["source_committed_at"]) == T0 - timedelta(
            milliseconds=40
        )

    def test_falls_back_to_analytics(self, api: TestClient, settings: ApiSettings) -> None:
        write(settings, [make_decision(5, 10, agent_id=None, status="queued")], redis=False)
        body = api.get("/v1/tickets/5/routing").json()
        assert body["source"] == "analytics"
        assert body["status"] == "queued"
        assert body["agent_id"] is None

    def test_unknown_ticket_is_404(self, api: TestClient) -> None:
        response = api.get("/v1/tickets/123/routing")
        assert response.status_code == 404
        assert response.json() == {"detail": "no routing decision for ticket 123"}

    @pytest.mark.parametrize("bad", ["abc", "0", "-4", "1.5", str(2**63), "%00"])
    def test_malformed_ids_are_422(self, api: TestClient, bad: str) -> None:
        assert api.get(f"/v1/tickets/{bad}/routing").status_code == 422


class TestAgentQueue:
    def test_ordered_from_redis(self, api: TestClient, settings: ApiSettings) -> None:
        write(
            settings,
            [
                make_decision(1, 10, priority="low"),
                make_decision(2, 11, priority="urgent", decided_offset_s=60),
                make_decision(3, 12, priority="urgent", decided_offset_s=30),
            ],
        )
        body = api.get("/v1/agents/3/queue").json()
        assert body["source"] == "redis"
        assert body["count"] == 3
        assert [(t["ticket_id"], t["priority"]) for t in body["tickets"]] == [
            (3, "urgent"),
            (2, "urgent"),
            (1, "low"),
        ]
        assert datetime.fromisoformat(body["tickets"][0]["queued_at"]) == T0 + timedelta(seconds=30)
        assert len(api.get("/v1/agents/3/queue", params={"limit": 1}).json()["tickets"]) == 1

    def test_known_agent_with_empty_queue(self, api: TestClient, settings: ApiSettings) -> None:
        write(settings, [make_decision(1, 10), make_decision(1, 20, agent_id=4)])
        body = api.get("/v1/agents/3/queue").json()
        assert body == {"agent_id": 3, "count": 0, "tickets": [], "source": "redis"}

    def test_falls_back_to_analytics(self, api: TestClient, settings: ApiSettings) -> None:
        write(
            settings,
            [make_decision(1, 10, priority="normal"), make_decision(2, 11, priority="urgent")],
            redis=False,
        )
        body = api.get("/v1/agents/3/queue").json()
        assert body["source"] == "analytics"
        assert [t["ticket_id"] for t in body["tickets"]] == [2, 1]

    def test_unknown_agent_is_404(self, api: TestClient) -> None:
        response = api.get("/v1/agents/77/queue")
        assert response.status_code == 404
        assert response.json() == {"detail": "unknown agent 77"}

    @pytest.mark.parametrize("query", ["limit=0", "limit=5000", "limit=x"])
    def test_bad_limit_is_422(self, api: TestClient, query: str) -> None:
        assert api.get(f"/v1/agents/3/queue?{query}").status_code == 422


class TestHoldingQueue:
    def test_lists_waiting_tickets(self, api: TestClient, settings: ApiSettings) -> None:
        write(
            settings,
            [
                make_decision(1, 10, agent_id=None, status="queued"),
                make_decision(2, 11, agent_id=None, status="queued", priority="urgent"),
            ],
        )
        body = api.get("/v1/queues/billing/holding").json()
        assert body["source"] == "redis"
        assert [t["ticket_id"] for t in body["tickets"]] == [2, 1]

    def test_unknown_queue_is_empty(self, api: TestClient) -> None:
        body = api.get("/v1/queues/nobody/holding").json()
        assert body["count"] == 0
        assert body["tickets"] == []

    @pytest.mark.parametrize("bad", ["a:b", "x" * 65, "sp ace"])
    def test_bad_queue_name_is_422(self, api: TestClient, bad: str) -> None:
        assert api.get(f"/v1/queues/{bad}/holding").status_code == 422


class TestTicketSla:
    ITEMS: list[RedisItem] = [
        make_sla_event(42, "apply", 0, metric="resolution"),
        make_sla_event(42, "apply", 0),
        make_sla_event(42, "breach", 3600, breached=True),
        make_risk(42, 2, 0.9),
        make_risk(42, 1, 0.2),
    ]

    def check(self, body: dict[str, object], source: str) -> None:
        assert body["source"] == source
        assert body["ticket_id"] == 42
        metrics = body["metrics"]
        assert isinstance(metrics, list)
        assert [(m["metric"], m["state"], m["last_event"], m["breached"]) for m in metrics] == [
            ("first_reply", "running", "breach", True),
            ("resolution", "running", "apply", False),
        ]
        assert datetime.fromisoformat(metrics[0]["deadline"]) == T0 + timedelta(hours=1)
        assert datetime.fromisoformat(metrics[0]["updated_at"]) == T0 + timedelta(hours=1)
        risk = body["risk"]
        assert isinstance(risk, dict)
        assert (risk["risk"], risk["version"], risk["metric"]) == (0.9, 2, "first_reply")

    def test_served_from_redis(self, api: TestClient, settings: ApiSettings) -> None:
        write(settings, self.ITEMS)
        response = api.get("/v1/tickets/42/sla")
        assert response.status_code == 200
        self.check(response.json(), "redis")

    def test_falls_back_to_analytics(self, api: TestClient, settings: ApiSettings) -> None:
        write(settings, self.ITEMS, redis=False)
        response = api.get("/v1/tickets/42/sla")
        assert response.status_code == 200
        self.check(response.json(), "analytics")

    def test_risk_only_ticket(self, api: TestClient, settings: ApiSettings) -> None:
        write(settings, [make_risk(7, 1, 0.3)], redis=False)
        body = api.get("/v1/tickets/7/sla").json()
        assert body["metrics"] == []
        assert body["risk"]["risk"] == 0.3

    def test_unknown_ticket_is_404(self, api: TestClient) -> None:
        response = api.get("/v1/tickets/42/sla")
        assert response.status_code == 404
        assert response.json() == {"detail": "no SLA data for ticket 42"}

    @pytest.mark.parametrize("bad", ["abc", "0", "-4", str(2**63)])
    def test_malformed_ids_are_422(self, api: TestClient, bad: str) -> None:
        assert api.get(f"/v1/tickets/{bad}/sla").status_code == 422


class TestHealth:
    def test_ok(self, api: TestClient) -> None:
        response = api.get("/health")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        assert {name: c["status"] for name, c in body["checks"].items()} == {
            "redis": "ok",
            "postgres": "ok",
        }

    def test_dead_redis_is_503(self, analytics_dsn: str) -> None:
        settings = ApiSettings(
            redis_url=f"redis://127.0.0.1:{free_port()}/0",
            analytics_dsn=analytics_dsn,
            store_timeout_s=1.0,
            auth_required=False,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            response = client.get("/health")
            assert response.status_code == 503
            body = response.json()
            assert body["status"] == "unavailable"
            assert body["checks"]["redis"]["status"] == "error"
            assert body["checks"]["postgres"]["status"] == "ok"
            # Reads still work from the analytics store while Redis is down.
            assert client.get("/v1/tickets/9/routing").status_code == 404

    def test_dead_postgres_is_503(self, redis_url: str) -> None:
        settings = ApiSettings(
            redis_url=redis_url,
            analytics_dsn=f"postgresql://nobody@127.0.0.1:{free_port()}/none",
            store_timeout_s=1.0,
            auth_required=False,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            response = client.get("/health")
            assert response.status_code == 503
            assert response.json()["checks"]["postgres"]["status"] == "error"
            # Neither store can answer: a 503, not a 500.
            assert client.get("/v1/tickets/9/routing").status_code == 503


def test_openapi_documents_the_routes(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    assert spec["info"]["title"] == "Smart Triage API"
    assert {
        "/health",
        "/v1/tickets/{ticket_id}/routing",
        "/v1/agents/{agent_id}/queue",
        "/v1/tickets/{ticket_id}/sla",
    } <= set(spec["paths"])
    assert {"RoutingDecisionPublic", "TicketSlaPublic"} <= set(spec["components"]["schemas"])
    assert api.get("/docs").status_code == 200


class TestInputRanges:
    """Dates and numbers outside what the stores can hold are 422s, never 500s."""

    @pytest.mark.parametrize(
        "url",
        [
            "/v1/reports/daily?day=0001-01-01",
            "/v1/reports/daily?day=9999-12-31",
            "/v1/reports/daily?day=0",
            "/v1/dashboard/panels/volume?end=0001-01-01T00:00:00Z",
            "/v1/dashboard/panels/volume?end=9999-12-31T23:59:59Z",
            "/v1/dashboard/panels/volume?end=0.5",
            "/v1/dashboard/panels/volume?range=0m",
            "/v1/dashboard/panels/volume?range=9999w",
            "/v1/dashboard/panels/volume?range=%D9%A1h",  # an Arabic-Indic digit
        ],
    )
    def test_out_of_range_is_422(self, api: TestClient, url: str) -> None:
        response = api.get(url)
        assert response.status_code == 422, response.text
        assert response.json()["detail"]

    def test_edges_of_the_range_are_answered(self, api: TestClient) -> None:
        for day in ("2000-01-01", "2099-12-31"):
            response = api.get("/v1/reports/daily", params={"day": day, "format": "json"})
            assert response.status_code == 200 and response.json()["day"] == day
        panel = api.get("/v1/dashboard/panels/volume", params={"end": "2000-01-01T00:00:00Z"})
        assert panel.status_code == 200 and panel.json()["rows"] == []
        report = api.get("/v1/reports/daily", params={"day": "2099-12-31"})
        assert report.headers["content-type"].startswith("text/markdown")


def test_queries_run_under_the_statement_timeout(settings: ApiSettings) -> None:
    app = create_app(settings.model_copy(update={"statement_timeout_ms": 300}))
    with TestClient(app, raise_server_exceptions=False) as client:
        with app.state.pg_pool.connection() as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == ("300ms",)
        # A query stuck behind a lock is cancelled at the limit and answered 503.
        with psycopg.connect(settings.analytics_dsn) as locker:
            locker.execute("LOCK TABLE analytics.ticket_facts IN ACCESS EXCLUSIVE MODE")
            response = client.get("/v1/reports/daily", params={"day": "2026-03-02"})
            locker.rollback()
        assert response.status_code == 503
        assert response.json() == {"detail": "analytics store unavailable"}
        assert client.get("/v1/reports/daily", params={"day": "2026-03-02"}).status_code == 200
