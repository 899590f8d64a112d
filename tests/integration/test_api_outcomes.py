"""POST /v1/outcomes stores work outcomes in the helpdesk database for CDC to deliver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import create_api_key
from api.settings import ApiSettings
from sinks.migrations import apply_migrations

pytestmark = pytest.mark.integration

SQL = Path(__file__).resolve().parents[2] / "sql"


@pytest.fixture
def settings(pg_dsn: str, redis_url: str, unique: str) -> ApiSettings:
    apply_migrations(pg_dsn, SQL / "analytics", schema="analytics")
    apply_migrations(pg_dsn, SQL / "source", schema="public")
    return ApiSettings(
        redis_url=redis_url,
        analytics_dsn=pg_dsn,
        key_prefix=f"t{unique}",
        auth_required=False,
        outcomes_dsn=pg_dsn,
    )


@pytest.fixture
def api(settings: ApiSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_an_outcome_is_stored_for_cdc_with_its_signals(api: TestClient, pg_dsn: str) -> None:
    response = api.post(
        "/v1/outcomes",
        json={
            "ticket_id": 12,
            "agent_id": 3,
            "queue": "billing",
            "handling_seconds": 245.5,
            "wait_seconds": 30,
            "quality": 0.9,
            "completed_at": "2026-03-02T09:15:00Z",
        },
    )
    assert response.status_code == 202, response.text
    body = response.json()
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(
            "SELECT ticket_id, agent_id, queue, work_type, handling_seconds, wait_seconds,"
            " quality, origin, completed_at = '2026-03-02T09:15:00Z'"
            " FROM work_outcomes WHERE id = %s",
            (body["id"],),
        ).fetchone()
    assert row == (12, 3, "billing", None, 245.5, 30.0, 0.9, "api", True)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"agent_id": 3, "queue": "calls", "handling_seconds": 60}, "needs a work_type"),
        ({"ticket_id": 1, "agent_id": 3, "queue": "calls", "handling_seconds": -1}, "greater"),
        ({"ticket_id": 1, "agent_id": 3, "queue": " ", "handling_seconds": 5}, "pattern"),
        ({"ticket_id": 1, "agent_id": 3, "queue": "q", "handling_seconds": 5, "x": 1}, "extra"),
        (
            {"ticket_id": 1, "agent_id": 3, "queue": "q", "handling_seconds": 5, "quality": 2},
            "less",
        ),
    ],
)
def test_invalid_outcomes_are_refused_and_not_stored(
    api: TestClient, pg_dsn: str, payload: dict[str, object], problem: str
) -> None:
    response = api.post("/v1/outcomes", json=payload)
    assert response.status_code == 422
    assert problem in response.text
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM work_outcomes").fetchone() == (0,)


def test_without_an_outcome_store_the_route_says_how_to_configure_it(
    settings: ApiSettings,
) -> None:
    app = create_app(settings.model_copy(update={"outcomes_dsn": None}))
    with TestClient(app, raise_server_exceptions=False) as api:
        response = api.post(
            "/v1/outcomes",
            json={"ticket_id": 1, "agent_id": 3, "queue": "q", "handling_seconds": 5},
        )
    assert response.status_code == 503
    assert "TRIAGE_API__OUTCOMES_DSN" in response.json()["detail"]


def test_reporting_outcomes_needs_the_write_scope(settings: ApiSettings, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        _, reader = create_api_key(conn, name="reader", scopes=["read:routing"])
        _, writer = create_api_key(conn, name="writer", scopes=["write:outcomes"])
    app = create_app(settings.model_copy(update={"auth_required": True}))
    payload = {"ticket_id": 1, "agent_id": 3, "queue": "q", "handling_seconds": 5}
    with TestClient(app, raise_server_exceptions=False) as api:
        denied = api.post("/v1/outcomes", json=payload, headers={"X-API-Key": reader})
        accepted = api.post("/v1/outcomes", json=payload, headers={"X-API-Key": writer})
        # The write scope reads nothing.
        read = api.get("/v1/tickets/1/routing", headers={"X-API-Key": writer})
    assert denied.status_code == 403
    assert accepted.status_code == 202
    assert read.status_code == 403
