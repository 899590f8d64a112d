"""Agent tooling stand-in: applies routing decisions back to the helpdesk.

An omnichannel router assigns tickets; the helpdesk records the assignee. This follower
reads the decision stream in Redis and sets ``tickets.assigned_agent_id`` (and moves a new
ticket to ``open``) in the source database. The resulting CDC update carries the same
agent, which the router recognises, so no second decision follows.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg
import redis

log = logging.getLogger(__name__)

_ASSIGN = """
UPDATE tickets
   SET assigned_agent_id = %(agent)s,
       status = CASE WHEN status = 'new' THEN 'open' ELSE status END,
       updated_at = now()
 WHERE id = %(ticket)s
   AND status IN ('new', 'open')
   AND assigned_agent_id IS DISTINCT FROM %(agent)s
"""


class AssignmentFollower:
    """Follows ``<prefix>:decisions`` and writes assignments to the source database."""

    def __init__(self, redis_url: str, source_dsn: str, *, key_prefix: str = "triage") -> None:
        self.redis_url = redis_url
        self.source_dsn = source_dsn
        self.stream = f"{key_prefix}:decisions"
        self.applied = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="assignments", daemon=True)

    def start(self) -> AssignmentFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        client = redis.Redis.from_url(self.redis_url)
        last_id = "0-0"
        with psycopg.connect(self.source_dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                try:
                    batch: Any = client.xread({self.stream: last_id}, count=500, block=200)
                except redis.ConnectionError as exc:
                    log.warning("decision stream unavailable: %s", exc)
                    self._stop.wait(1.0)
                    continue
                for _, entries in batch or []:
                    params = []
                    for entry_id, raw in entries:
                        last_id = entry_id.decode()
                        if raw.get(b"status") == b"assigned" and raw.get(b"agent_id"):
                            params.append(
                                {"agent": int(raw[b"agent_id"]), "ticket": int(raw[b"ticket_id"])}
                            )
                    if params:
                        with conn.transaction(), conn.cursor() as cur:
                            cur.executemany(_ASSIGN, params)
                        self.applied += len(params)
