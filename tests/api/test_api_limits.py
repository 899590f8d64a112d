"""The API's input ranges and its bound on requests in progress (no stores needed)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient

from api.app import _pg_options, create_app
from api.params import Day, Instant, parse_day, parse_instant
from api.settings import ApiSettings
from api.shedding import LoadShedMiddleware

# ------------------------------------------------------------------------ dates and times


@pytest.fixture
def params_app() -> TestClient:
    app = FastAPI()

    @app.get("/day")
    def day_route(day: Annotated[Day | None, Query()] = None) -> dict[str, Any]:
        return {"day": None if day is None else day.isoformat()}

    @app.get("/end")
    def end_route(end: Annotated[Instant, Query()]) -> dict[str, Any]:
        return {"end": end.isoformat()}

    return TestClient(app)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0001-01-01", "years 2000..2099"),
        ("9999-12-31", "years 2000..2099"),
        ("1970-01-01", "years 2000..2099"),
        ("0", "YYYY-MM-DD"),  # pydantic alone reads it as the Unix epoch
        ("2026-02-30", "YYYY-MM-DD"),
        ("yesterday", "YYYY-MM-DD"),
    ],
)
def test_bad_days_are_422_with_a_reason(params_app: TestClient, value: str, reason: str) -> None:
    response = params_app.get("/day", params={"day": value})
    assert response.status_code == 422
    assert reason in response.text


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0001-01-01T00:00:00Z", "years 2000..2099"),
        ("9999-12-31T23:59:59Z", "years 2000..2099"),
        ("0.5", "ISO-8601"),  # pydantic alone reads it as half a second after the epoch
        ("1700000000", "ISO-8601"),
        ("noon", "ISO-8601"),
    ],
)
def test_bad_instants_are_422_with_a_reason(
    params_app: TestClient, value: str, reason: str
) -> None:
    response = params_app.get("/end", params={"end": value})
    assert response.status_code == 422
    assert reason in response.text


def test_good_days_and_instants_are_read_as_utc(params_app: TestClient) -> None:
    assert params_app.get("/day", params={"day": "2026-03-02"}).json() == {"day": "2026-03-02"}
    assert params_app.get("/day").json() == {"day": None}
    end = params_app.get("/end", params={"end": "2026-03-02T10:00:00+01:00"}).json()["end"]
    assert end == "2026-03-02T09:00:00+00:00"
    naive = params_app.get("/end", params={"end": "2026-03-02T10:00:00"}).json()["end"]
    assert naive == "2026-03-02T10:00:00+00:00"
    # RFC 3339 allows lower-case separators and a leap second.
    assert parse_instant("2026-06-30t23:59:60z") == datetime(2026, 6, 30, 23, 59, 59, tzinfo=UTC)
    assert parse_day(date(2030, 1, 1)) == date(2030, 1, 1)


def test_the_range_is_in_the_openapi_document(params_app: TestClient) -> None:
    spec = params_app.get("/openapi.json").json()
    day = spec["paths"]["/day"]["get"]["parameters"][0]["schema"]["anyOf"][0]
    assert day == {"type": "string", "format": "date", "pattern": "^20[0-9]{2}-"}
    end = spec["paths"]["/end"]["get"]["parameters"][0]["schema"]
    assert end["format"] == "date-time" and end["pattern"] == "^20[0-9]{2}-"


# ------------------------------------------------------------------------- load shedding


class _Blocking:
    """An ASGI app whose requests wait until released (to hold them in flight)."""

    def __init__(self) -> None:
        self.entered = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.entered += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _request(app: Any, path: str) -> tuple[int, dict[bytes, bytes]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "method": "GET", "headers": []}, receive, send)
    start = sent[0]
    return start["status"], dict(start["headers"])


def test_requests_beyond_the_limit_are_refused_with_retry_after() -> None:
    async def scenario() -> None:
        inner = _Blocking()
        shed = LoadShedMiddleware(inner, limit=3, retry_after_s=2)
        held = [asyncio.create_task(_request(shed, "/v1/tickets/1/routing")) for _ in range(3)]
        while inner.entered < 3:
            await asyncio.sleep(0)
        status, headers = await _request(shed, "/v1/tickets/2/routing")
        assert status == 503 and headers[b"retry-after"] == b"2"
        assert shed.shed == 1 and shed.in_flight == 3
        # Operator endpoints are answered even now.
        health = asyncio.create_task(_request(shed, "/health"))
        while inner.entered < 4:
            await asyncio.sleep(0)
        inner.release.set()
        assert [(await t)[0] for t in held] == [200, 200, 200]
        assert (await health)[0] == 200
        # Once the held requests are answered, new ones are admitted again.
        assert shed.in_flight == 0
        assert (await _request(shed, "/v1/tickets/3/routing"))[0] == 200

    asyncio.run(scenario())


def test_an_error_inside_still_frees_its_slot() -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def scenario() -> None:
        shed = LoadShedMiddleware(failing, limit=1, retry_after_s=1)
        for _ in range(3):
            with pytest.raises(RuntimeError):
                await _request(shed, "/v1/x")
        assert shed.in_flight == 0 and shed.shed == 0

    asyncio.run(scenario())


# ------------------------------------------------------------------- settings that bound work


def test_every_pooled_connection_gets_the_statement_timeout() -> None:
    settings = ApiSettings(
        redis_url="redis://x", analytics_dsn="dbname=x", statement_timeout_ms=750
    )
    assert _pg_options(settings) == "-c search_path=analytics,public -c statement_timeout=750"


def test_pool_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="pool_min_size"):
        ApiSettings(
            redis_url="redis://x", analytics_dsn="dbname=x", pool_min_size=5, pool_max_size=2
        )


def test_every_keyed_route_documents_overload_and_key_errors() -> None:
    app = create_app(ApiSettings(redis_url="redis://x", analytics_dsn="dbname=x"))
    paths = app.openapi()["paths"]
    for path, item in paths.items():
        if path == "/health":
            continue
        for method, operation in item.items():
            responses = operation["responses"]
            assert {"401", "403", "429", "503"} <= set(responses), (method, path)
    daily = paths["/v1/reports/daily"]["get"]["responses"]["200"]["content"]
    assert set(daily) == {"text/markdown", "application/json"}
