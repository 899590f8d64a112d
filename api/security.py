"""The request hooks that enforce API keys, scopes and rate limits.

Keys and scopes are defined in :mod:`api.keys`, rate-limit counting in
:mod:`api.rate_limit`; this module resolves a request's principal and applies both.

Keys are ``tri_`` followed by 32 random bytes (URL-safe base64), shown once by
``triage api-keys create`` and stored only as their SHA-256 in ``analytics.api_keys``.
A request sends its key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Scopes, applied per router where :mod:`api.app` includes it:

- ``read:routing``: ticket routing decisions, agent queues, holding lists;
- ``read:tickets``: ticket SLA clocks, search;
- ``read:analytics``: daily reports, dashboard panels;
- ``admin``: every scope. ``/health`` and the ``/dashboard`` page need no key.

Audited (one ``analytics.api_audit`` row per request, any status, see :mod:`api.audit`):
``/v1/tickets/{id}/routing``, ``/v1/tickets/{id}/sla``, ``/v1/agents/{id}/queue``,
``/v1/queues/{queue}/holding`` and search. Reports and dashboard panels are aggregates,
not customer data, and are not audited; neither are requests refused with 401.

A key's row is cached in-process for ``ApiSettings.auth_cache_ttl_s`` (5 s): a revoked key
is refused at most that long after ``triage api-keys revoke``. With
``ApiSettings.auth_required`` off (only ``triage demo`` turns it off, and says so) every
request passes as the anonymous principal with the read scopes, without rate limit, and
is still audited.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool
from redis import asyncio as aioredis
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.audit import AuditWriter, audit_entry
from api.keys import (
    ANONYMOUS_KEY_ID,
    READ_SCOPES,
    REALM,
    SCOPES,
    WRITE_OUTCOMES,
    ApiKey,
    find_api_key,
    grants,
    hash_api_key,
    is_well_formed_key,
)
from api.rate_limit import RateLimit, RateLimiter
from api.settings import ApiSettings

log = logging.getLogger(__name__)

_STATE_KEY = "triage_access"


@dataclass(frozen=True)
class Principal:
    """Who a request acts as.

    Attributes:
        key_id: The key's id, or ``anonymous`` when auth is off.
        scopes: Scopes held.
        rate_limit_per_minute: The key's limit; ``None`` for no limit (anonymous).
    """

    key_id: str
    scopes: frozenset[str]
    rate_limit_per_minute: int | None


# With keys off (a trusted network, ``triage demo``), callers may read and report outcomes.
ANONYMOUS = Principal(
    key_id=ANONYMOUS_KEY_ID,
    scopes=READ_SCOPES | {WRITE_OUTCOMES},
    rate_limit_per_minute=None,
)
"""Every request's principal while ``auth_required`` is off."""


class KeyCache:
    """Recently resolved keys by hash (unknown ones too), each kept for ``ttl_s``.

    Spares PostgreSQL a query per request; ``ttl_s`` bounds how long a revocation takes
    to be seen. ``ttl_s=0`` disables the cache.
    """

    def __init__(
        self,
        ttl_s: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}

    def peek(self, key_hash: str) -> tuple[bool, ApiKey | None]:
        """``(True, key)`` when ``key_hash`` is cached and fresh, else ``(False, None)``."""
        if self._ttl <= 0:
            return False, None
        with self._lock:
            hit = self._entries.get(key_hash)
        if hit is not None and hit[0] > self.clock():
            return True, hit[1]
        return False, None

    def lookup(self, key_hash: str, load: Callable[[], ApiKey | None]) -> ApiKey | None:
        """The cached key for ``key_hash``, else ``load()`` (cached for next time)."""
        if self._ttl <= 0:
            return load()
        now = self.clock()
        with self._lock:
            hit = self._entries.get(key_hash)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = load()
        with self._lock:
            if len(self._entries) >= self._max:
                # Unknown keys are cached too, so random keys must not grow it unbounded.
                self._entries = {h: e for h, e in self._entries.items() if e[0] > now}
                if len(self._entries) >= self._max:
                    self._entries.clear()
            self._entries[key_hash] = (now + self._ttl, value)
        return value


def _principal(found: ApiKey | None) -> Principal:
    if found is None:
        raise _unauthorized("unknown API key", invalid=True)
    if found.revoked_at is not None:
        raise _unauthorized("revoked API key", invalid=True)
    return Principal(
        key_id=found.key_id,
        scopes=frozenset(found.scopes),
        rate_limit_per_minute=found.rate_limit_per_minute,
    )


def _unauthorized(detail: str, *, invalid: bool) -> HTTPException:
    challenge = f'Bearer realm="{REALM}"' + (', error="invalid_token"' if invalid else "")
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": challenge})


class AccessControl:
    """Per-app security state: the key cache, the rate limiter and the audit writer."""

    def __init__(
        self,
        settings: ApiSettings,
        *,
        pool: ConnectionPool[Any],
        client: redis.Redis,
        aclient: aioredis.Redis | None = None,
    ) -> None:
        self.settings = settings
        self._pool = pool
        self.keys = KeyCache(settings.auth_cache_ttl_s)
        self.limiter = RateLimiter(client, prefix=settings.key_prefix, aclient=aclient)
        self.audit = AuditWriter(pool, schema=settings.analytics_schema)

    def start(self) -> AccessControl:
        """Start the audit writer; returns ``self``."""
        self.audit.start()
        return self

    def close(self) -> None:
        """Write the last audit rows and stop."""
        self.audit.close()

    def authenticate(self, key: str | None) -> Principal:
        """The principal of ``key``.

        Raises:
            HTTPException: 401 when the key is missing, unknown or revoked.
            psycopg.OperationalError: When the key is not cached and PostgreSQL is down
                (answered 503 by the app).
        """
        if not key:
            raise _unauthorized(
                "an API key is required (Authorization: Bearer or X-API-Key)", invalid=False
            )
        if not is_well_formed_key(key):
            raise _unauthorized("unknown API key", invalid=True)
        key_hash = hash_api_key(key)
        return _principal(self.keys.lookup(key_hash, lambda: self._load(key_hash)))

    async def authenticate_async(self, key: str | None) -> Principal:
        """:meth:`authenticate` from the event loop: a cached key costs no thread hop;
        only a cache miss (a database query) goes to the thread pool."""
        if key and is_well_formed_key(key):
            cached, found = self.keys.peek(hash_api_key(key))
            if cached:
                return _principal(found)
        return await run_in_threadpool(self.authenticate, key)

    def _load(self, key_hash: str) -> ApiKey | None:
        with self._pool.connection() as conn:
            return find_api_key(conn, schema=self.settings.analytics_schema, key_hash=key_hash)


class RequestAccess:
    """What the security dependency learnt about one request, for the middleware."""

    __slots__ = ("audit", "control", "principal", "rate")

    def __init__(self) -> None:
        self.control: AccessControl | None = None
        self.principal: Principal | None = None
        self.rate: RateLimit | None = None
        self.audit = False


def _request_access(request: Request) -> RequestAccess:
    seen = request.scope.setdefault("state", {}).get(_STATE_KEY)
    if not isinstance(seen, RequestAccess):
        seen = RequestAccess()
        request.scope["state"][_STATE_KEY] = seen
    return seen


_bearer = HTTPBearer(
    auto_error=False, description="An API key as a bearer token: `Authorization: Bearer tri_…`"
)
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key: `X-API-Key: tri_…`"
)


def require_scope(scope: str, *, audit: bool = False) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits requests holding ``scope``; ``audit`` records them.

    Answers 401 (with ``WWW-Authenticate``) for a missing, unknown or revoked key, 429
    (with ``Retry-After``) past the key's rate limit, and 403 without the scope. Several
    of these on one request count it once against the rate limit.

    Raises:
        ValueError: When ``scope`` is not one of :data:`SCOPES`.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; known: {', '.join(SCOPES)}")

    # Async: on the event loop a cached key and the rate-limit count (one Redis round
    # trip on the asyncio client) cost no thread hop; that hop was most of a cheap read.
    async def check_access(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key_header)],
    ) -> Principal:
        control: AccessControl = request.app.state.access
        seen = _request_access(request)
        seen.control = control
        seen.audit = seen.audit or audit
        if not control.settings.auth_required:
            seen.principal = ANONYMOUS
            return ANONYMOUS
        if seen.principal is None:
            seen.principal = await control.authenticate_async(
                bearer.credentials if bearer else api_key
            )
            limit = seen.principal.rate_limit_per_minute
            if limit is not None:
                seen.rate = await control.limiter.hit_async(seen.principal.key_id, limit)
        principal = seen.principal
        if seen.rate is not None and seen.rate.exceeded:
            raise HTTPException(
                status_code=429,
                detail=f"rate limit of {seen.rate.limit} requests per minute exceeded",
                headers={"Retry-After": str(seen.rate.reset_s), **seen.rate.headers()},
            )
        if not grants(principal.scopes, scope):
            raise HTTPException(
                status_code=403,
                detail=f"this API key lacks the scope {scope}",
                headers={
                    "WWW-Authenticate": (
                        f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'
                    )
                },
            )
        return principal

    return check_access


class AccessMiddleware:
    """Puts the rate-limit headers on every authenticated response and, once the status
    is known, queues the audit row and the key's last use.

    A pure ASGI middleware, so it also sees the error responses (401, 403, 404, 429, 503)
    that exception handlers build, and adds nothing but an in-memory append per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = RequestAccess()
        scope.setdefault("state", {})[_STATE_KEY] = seen
        at = datetime.now(UTC)
        status = 500  # unless a response starts: an unhandled error becomes a 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if seen.rate is not None:
                    headers = MutableHeaders(scope=message)
                    for name, value in seen.rate.headers().items():
                        headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            control, principal = seen.control, seen.principal
            if control is not None and principal is not None:
                if principal.key_id != ANONYMOUS_KEY_ID:
                    control.audit.note_use(principal.key_id, at)
                if seen.audit:
                    control.audit.record(
                        audit_entry(scope, key_id=principal.key_id, status_code=status, at=at)
                    )


def split_router(router: APIRouter, paths: Iterable[str]) -> tuple[APIRouter, APIRouter]:
    """The routes of ``router`` at ``paths`` apart from the others, to include the two
    with different dependencies (e.g. an open page beside protected data endpoints)."""
    wanted = set(paths)
    at_paths = APIRouter()
    others = APIRouter()
    for route in router.routes:
        (at_paths if getattr(route, "path", None) in wanted else others).routes.append(route)
    return at_paths, others
