"""Prometheus metrics of the read API: requests, latency and in-flight requests per route.

Requests are labelled by the matched route's path template (``/v1/tickets/{ticket_id}``),
never the raw path, so the number of series stays bounded; a path that matches no route
is labelled :data:`UNMATCHED`. Each app has its own registry, so several apps in one
process (tests) do not collide.
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "<unmatched>"
"""The route label of requests that match no route (404s for unknown paths)."""

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Method labels kept as sent; any other method is labelled ``OTHER``."""

# API reads are a few milliseconds when healthy; the store timeout bounds the tail.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    """The API's metrics, on a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "triage_api_requests",
            "HTTP requests answered, per method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "triage_api_request_duration_seconds",
            "Time to answer an HTTP request, per route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "triage_api_requests_in_flight",
            "HTTP requests being answered.",
            registry=self.registry,
        )

    def exposition(self) -> Response:
        """The metrics in the Prometheus text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def route_template(routes: list[BaseRoute], scope: Scope) -> str:
    """The path template of the route ``scope`` matched, or :data:`UNMATCHED`.

    FastAPI records the matched route in the scope; requests answered before routing (an
    outer middleware refused them) are matched here against the app's routes.
    """
    route = scope.get("route")
    if route is None:
        for candidate in routes:
            match, _ = candidate.matches(scope)
            if match == Match.FULL:
                route = candidate
                break
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class MetricsMiddleware:
    """Counts and times every HTTP request (a pure ASGI middleware: it sees error answers
    too, and an unhandled error counts as a 500)."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics, routes: list[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            route = route_template(self.routes, scope)
            self.metrics.latency.labels(route=route).observe(time.perf_counter() - started)
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            self.metrics.requests.labels(method=method, route=route, status=str(status)).inc()


def instrument(app: FastAPI, *, expose: bool = True) -> ApiMetrics:
    """Measure ``app``'s requests and, with ``expose``, serve them at ``GET /metrics``
    (open, not in the schema)."""
    metrics = ApiMetrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)
    if expose:
        app.add_api_route("/metrics", metrics.exposition, methods=["GET"], include_in_schema=False)
    app.state.metrics = metrics
    return metrics
