"""Audit log of reads of customer data, written beside the requests, never in their way.

The request path only appends to an in-memory batch; one thread writes the batch to
``analytics.api_audit`` every second (and notes when each key was last used). Which
endpoints are audited is decided where the routers are included (see :mod:`api.security`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import astuple, dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from psycopg import sql
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

_BIGINT_MAX = 2**63 - 1
SAFE_QUERY_PARAMS = frozenset(
    {"limit", "status", "category", "language", "format", "day", "range", "end"}
)
"""Query parameters stored as sent: bounded values that name no person. Every other one
(the search text ``q``, and anything unexpected) is stored as a hash of its value."""
_AUDIT_COLUMNS = (
    "at",
    "key_id",
    "method",
    "path",
    "query",
    "status_code",
    "ticket_id",
    "agent_id",
    "client_addr",
)


@dataclass(frozen=True)
class AuditEntry:
    """One request that read (or tried to read) customer data.

    Attributes:
        at: When the request arrived (UTC).
        key_id: The API key's id, or ``anonymous`` when the API runs without auth.
        method: HTTP method.
        path: URL path, e.g. ``/v1/tickets/123/routing``.
        query: The query string with free-text values hashed (see :func:`audit_query`),
            empty when there is none.
        status_code: Status of the response that was sent.
        ticket_id: The ``ticket_id`` path parameter, when there is a valid one.
        agent_id: The ``agent_id`` path parameter, when there is a valid one.
        client_addr: The peer's address as the server saw it.
    """

    at: datetime
    key_id: str
    method: str
    path: str
    query: str
    status_code: int
    ticket_id: int | None
    agent_id: int | None
    client_addr: str | None


def _id_param(path_params: Mapping[str, Any], name: str) -> int | None:
    value = str(path_params.get(name, ""))
    # Only ids the endpoint would accept; a malformed one is still visible in ``path``.
    if not value.isdigit() or len(value) > 19:
        return None
    number = int(value)
    return number if 0 < number <= _BIGINT_MAX else None


def audit_query(query_string: str) -> str:
    """The query string as the audit log keeps it: free text replaced by a hash.

    Search text may hold personal data (a name, an e-mail address), which the audit log
    must not collect. A truncated SHA-256 still lets an auditor check whether a given
    text was searched for, and tells repeated searches apart.

    Example:
        >>> audit_query("q=ana%40example.com&limit=5")
        'q=sha256:8e43ca37701228e7&limit=5'
    """
    if not query_string:
        return ""
    pairs = [
        (name, value if name in SAFE_QUERY_PARAMS else _digest(value))
        for name, value in parse_qsl(query_string, keep_blank_values=True)
    ]
    return urlencode(pairs, safe=":")


def _digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]


def audit_entry(
    scope: Mapping[str, Any], *, key_id: str, status_code: int, at: datetime
) -> AuditEntry:
    """The audit row of a finished HTTP request, from its ASGI scope (after routing).

    Example:
        >>> from datetime import UTC, datetime
        >>> scope = {"method": "GET", "path": "/v1/tickets/7/sla", "query_string": b"",
        ...          "path_params": {"ticket_id": "7"}, "client": ("10.0.0.5", 51000)}
        >>> e = audit_entry(scope, key_id="key_1", status_code=200, at=datetime.now(UTC))
        >>> (e.ticket_id, e.agent_id, e.client_addr)
        (7, None, '10.0.0.5')
    """
    path_params: Mapping[str, Any] = scope.get("path_params") or {}
    client = scope.get("client")
    return AuditEntry(
        at=at,
        key_id=key_id,
        method=str(scope.get("method", "")),
        path=str(scope.get("path", "")),
        query=audit_query(bytes(scope.get("query_string", b"")).decode("latin-1")),
        status_code=status_code,
        ticket_id=_id_param(path_params, "ticket_id"),
        agent_id=_id_param(path_params, "agent_id"),
        client_addr=str(client[0]) if client else None,
    )


class AuditWriter:
    """Writes audit rows and keys' ``last_used_at`` in batches from a background thread.

    Delivery: best effort, retried. A failed write (store down, table missing) logs a
    warning and keeps the rows for the next flush, so a request is never slowed or failed
    by its audit row. Rows are lost only when more than ``max_pending`` wait for the store
    (the newest are then dropped and counted in a warning) or when the process dies
    between two flushes; a batch whose commit fails ambiguously may be written twice.
    """

    def __init__(
        self,
        pool: ConnectionPool[Any],
        *,
        schema: str,
        flush_interval_s: float = 1.0,
        max_pending: int = 10_000,
    ) -> None:
        self._pool = pool
        self._insert = sql.SQL("INSERT INTO {table} ({cols}) VALUES ({values})").format(
            table=sql.Identifier(schema, "api_audit"),
            cols=sql.SQL(", ").join(map(sql.Identifier, _AUDIT_COLUMNS)),
            values=sql.SQL(", ").join(sql.Placeholder() * len(_AUDIT_COLUMNS)),
        )
        self._touch = sql.SQL(
            "UPDATE {table} SET last_used_at = greatest(last_used_at, %s) WHERE key_id = %s"
        ).format(table=sql.Identifier(schema, "api_keys"))
        self._interval = flush_interval_s
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._pending: list[AuditEntry] = []
        self._last_used: dict[str, datetime] = {}
        self._dropped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> AuditWriter:
        """Start the flushing thread; returns ``self``."""
        self._thread = threading.Thread(target=self._run, name="api-audit-writer", daemon=True)
        self._thread.start()
        return self

    def record(self, entry: AuditEntry) -> None:
        """Queue one audit row (never blocks on the store)."""
        with self._lock:
            if len(self._pending) >= self._max_pending:
                self._dropped += 1
                return
            self._pending.append(entry)

    def note_use(self, key_id: str, at: datetime) -> None:
        """Remember that ``key_id`` was used at ``at`` (written as ``last_used_at``)."""
        with self._lock:
            known = self._last_used.get(key_id)
            if known is None or at > known:
                self._last_used[key_id] = at

    def flush(self) -> int:
        """Write what is queued now; returns the number of audit rows written."""
        with self._lock:
            rows, self._pending = self._pending, []
            used, self._last_used = self._last_used, {}
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning("dropped %d audit row(s): more than %d waited", dropped, self._max_pending)
        if not rows and not used:
            return 0
        try:
            with self._pool.connection() as conn, conn.cursor() as cur:
                if rows:
                    cur.executemany(self._insert, [astuple(r) for r in rows])
                if used:
                    cur.executemany(self._touch, [(at, key_id) for key_id, at in used.items()])
        except Exception as exc:  # any store failure: keep the rows, never fail a request
            log.warning("audit write failed, retrying %d row(s) later: %s", len(rows), exc)
            with self._lock:
                room = max(0, self._max_pending - len(self._pending))
                self._dropped += max(0, len(rows) - room)
                self._pending[:0] = rows[:room]
                for key_id, at in used.items():
                    known = self._last_used.get(key_id)
                    self._last_used[key_id] = at if known is None else max(at, known)
            return 0
        return len(rows)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and write what is still queued (one last attempt)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()
