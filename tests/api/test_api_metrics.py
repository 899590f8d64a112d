"""The API's request metrics: route templates as labels, a fixed label for unknown paths."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from api.metrics import UNMATCHED, ApiMetrics, instrument


def make_app() -> tuple[FastAPI, ApiMetrics]:
    app = FastAPI()
    metrics = instrument(app)

    @app.get("/v1/tickets/{ticket_id}/routing")
    def routing(ticket_id: int) -> dict[str, int]:
        if ticket_id == 404:
            raise HTTPException(status_code=404, detail="no decision")
        return {"ticket_id": ticket_id}

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    return app, metrics


def sample(metrics: ApiMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_counts_by_route_template() -> None:
    app, metrics = make_app()
    client = TestClient(app)
    for tid in (1, 2, 3):
        assert client.get(f"/v1/tickets/{tid}/routing").status_code == 200
    assert client.get("/v1/tickets/404/routing").status_code == 404
    route = "/v1/tickets/{ticket_id}/routing"
    assert (
        sample(metrics, "triage_api_requests_total", method="GET", route=route, status="200") == 3
    )
    assert (
        sample(metrics, "triage_api_requests_total", method="GET", route=route, status="404") == 1
    )
    assert sample(metrics, "triage_api_request_duration_seconds_count", route=route) == 4
    assert sample(metrics, "triage_api_requests_in_flight") == 0


def test_unknown_paths_share_one_label() -> None:
    app, metrics = make_app()
    client = TestClient(app)
    for path in ("/nope", "/v1/tickets/abc/other", "/.env"):
        assert client.get(path).status_code == 404
    assert (
        sample(metrics, "triage_api_requests_total", method="GET", route=UNMATCHED, status="404")
        == 3
    )
    text = client.get("/metrics").text
    assert "/nope" not in text
    assert "/.env" not in text


def test_unhandled_error_counts_as_500() -> None:
    app, metrics = make_app()
    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/boom").status_code == 500
    assert (
        sample(metrics, "triage_api_requests_total", method="GET", route="/boom", status="500") == 1
    )
    assert sample(metrics, "triage_api_requests_in_flight") == 0


def test_odd_methods_are_bounded() -> None:
    app, metrics = make_app()
    client = TestClient(app)
    client.request("BREW", "/boom")
    assert (
        sample(metrics, "triage_api_requests_total", method="OTHER", route="/boom", status="405")
        == 1
    )


def test_metrics_endpoint_is_prometheus_text_and_not_in_schema() -> None:
    app, _ = make_app()
    client = TestClient(app)
    client.get("/v1/tickets/7/routing")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE triage_api_requests_total counter" in response.text
    assert 'route="/v1/tickets/{ticket_id}/routing"' in response.text
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_apps_have_their_own_registries() -> None:
    (app_a, metrics_a), (_, metrics_b) = make_app(), make_app()
    TestClient(app_a).get("/v1/tickets/1/routing")
    route = "/v1/tickets/{ticket_id}/routing"
    assert (
        sample(metrics_a, "triage_api_requests_total", method="GET", route=route, status="200") == 1
    )
    assert (
        sample(metrics_b, "triage_api_requests_total", method="GET", route=route, status="200") == 0
    )
