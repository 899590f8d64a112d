"""Load shedding: a bound on the requests the API works on at once.

Without it, requests beyond what the API can answer wait in the server's queue, and under
sustained overload every request waits longer (seconds, then tens of seconds) while the
client has long given up. Past ``ApiSettings.max_in_flight`` a request is refused at
once with 503 and ``Retry-After``, so clients back off and the requests that are
admitted keep their normal latency.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

EXEMPT_PATHS = frozenset({"/health", "/metrics"})
"""Operator endpoints, answered even under overload (cheap, and needed to see it)."""


class LoadShedMiddleware:
    """Refuses HTTP requests beyond ``limit`` in flight with 503 and ``Retry-After``.

    A pure ASGI middleware: the counter lives on the event loop, which runs every
    ``__call__`` on one thread, so it needs no lock. ``shed`` counts refusals.
    """

    def __init__(self, app: ASGIApp, *, limit: int, retry_after_s: int) -> None:
        self.app = app
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.in_flight = 0
        self.shed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.shed += 1
            await self._refuse(send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {"detail": f"overloaded: {self.limit} requests in progress; retry later"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(self.retry_after_s).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
