"""API keys, scopes, rate-limit arithmetic, the key cache and audit rows, without stores."""

from __future__ import annotations

import hashlib
import logging
import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import APIRouter

from api.audit import AuditEntry, AuditWriter, audit_entry
from api.keys import (
    ADMIN,
    READ_ANALYTICS,
    READ_ROUTING,
    READ_SCOPES,
    READ_TICKETS,
    SCOPES,
    ApiKey,
    generate_api_key,
    generate_key_id,
    grants,
    hash_api_key,
    is_well_formed_key,
    parse_scopes,
)
from api.rate_limit import RateLimit, fixed_window
from api.security import ANONYMOUS, KeyCache, require_scope, split_router

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


class TestKeys:
    def test_format_and_entropy(self) -> None:
        keys = {generate_api_key() for _ in range(200)}
        assert len(keys) == 200
        for key in keys:
            assert re.fullmatch(r"tri_[A-Za-z0-9_-]{43}", key)
            assert is_well_formed_key(key)

    @pytest.mark.parametrize(
        "bad",
        [
            "",
            "tri_",
            "tri_short",
            "sk_" + "a" * 43,
            "tri_" + "a" * 42,
            "tri_" + "a" * 44,
            "tri_" + "a" * 42 + "=",
            "tri_" + "a" * 42 + "\n",
            " tri_" + "a" * 43,
        ],
    )
    def test_malformed_keys_are_refused_before_lookup(self, bad: str) -> None:
        assert not is_well_formed_key(bad)

    def test_hash_is_hex_sha256_of_the_whole_key(self) -> None:
        key = generate_api_key()
        assert hash_api_key(key) == hashlib.sha256(key.encode()).hexdigest()
        assert re.fullmatch(r"[0-9a-f]{64}", hash_api_key(key))
        assert hash_api_key(key) == hash_api_key(key)
        assert hash_api_key(key) != hash_api_key(generate_api_key())
        assert key not in hash_api_key(key)

    def test_key_ids_are_public_and_distinct(self) -> None:
        ids = {generate_key_id() for _ in range(200)}
        assert len(ids) == 200
        assert all(re.fullmatch(r"key_[0-9a-f]{12}", i) for i in ids)


class TestScopes:
    @pytest.mark.parametrize("needed", [READ_TICKETS, READ_ROUTING, READ_ANALYTICS])
    def test_a_scope_grants_only_itself(self, needed: str) -> None:
        assert grants([needed], needed)
        others = [s for s in READ_SCOPES if s != needed]
        assert not grants(others, needed)

    @pytest.mark.parametrize("needed", SCOPES)
    def test_admin_implies_every_scope(self, needed: str) -> None:
        assert grants([ADMIN], needed)

    def test_no_scope_grants_nothing(self) -> None:
        assert not any(grants([], s) for s in SCOPES)

    def test_anonymous_reads_everything_but_is_not_admin(self) -> None:
        assert all(grants(ANONYMOUS.scopes, s) for s in READ_SCOPES)
        assert not grants(ANONYMOUS.scopes, ADMIN)
        assert ANONYMOUS.rate_limit_per_minute is None

    def test_parse_orders_and_deduplicates(self) -> None:
        assert parse_scopes(["admin", "read:routing", " read:routing"]) == ("read:routing", "admin")

    @pytest.mark.parametrize("bad", [[], ["read:everything"], ["read:routing", "write:tickets"]])
    def test_parse_refuses_unknown_or_none(self, bad: list[str]) -> None:
        with pytest.raises(ValueError, match="scope"):
            parse_scopes(bad)

    def test_require_scope_refuses_unknown_names(self) -> None:
        with pytest.raises(ValueError, match="unknown scope"):
            require_scope("read:everything")


class TestRateLimit:
    @pytest.mark.parametrize(
        ("now", "window", "reset"),
        [(0.0, 0, 60), (59.0, 0, 1), (59.9, 0, 1), (60.0, 1, 60), (125.5, 2, 55)],
    )
    def test_fixed_window(self, now: float, window: int, reset: int) -> None:
        assert fixed_window(now) == (window, reset)

    def test_headers_count_down_and_stop_at_zero(self) -> None:
        assert RateLimit(limit=3, used=1, reset_s=42).headers() == {
            "X-RateLimit-Limit": "3",
            "X-RateLimit-Remaining": "2",
            "X-RateLimit-Reset": "42",
        }
        last = RateLimit(limit=3, used=3, reset_s=5)
        assert (last.remaining, last.exceeded) == (0, False)
        over = RateLimit(limit=3, used=9, reset_s=5)
        assert (over.remaining, over.exceeded) == (0, True)
        assert over.headers()["X-RateLimit-Remaining"] == "0"


def _key(key_id: str = "key_1", revoked: bool = False) -> ApiKey:
    return ApiKey(
        key_id=key_id,
        name="test",
        scopes=(READ_ROUTING,),
        rate_limit_per_minute=10,
        created_at=AT,
        revoked_at=AT if revoked else None,
    )


class TestKeyCache:
    def test_serves_from_cache_until_ttl(self) -> None:
        now = [100.0]
        cache = KeyCache(5.0, clock=lambda: now[0])
        loads: list[str] = []

        def load(value: ApiKey | None) -> Any:
            return lambda: loads.append("x") or value

        assert cache.lookup("h", load(_key())) == _key()
        now[0] += 4.9
        assert cache.lookup("h", load(_key(revoked=True))) == _key()
        now[0] += 0.2
        assert cache.lookup("h", load(_key(revoked=True))) == _key(revoked=True)
        assert len(loads) == 2

    def test_caches_unknown_keys_too(self) -> None:
        cache = KeyCache(5.0, clock=lambda: 0.0)
        loads: list[str] = []
        for _ in range(3):
            assert cache.lookup("h", lambda: loads.append("x") or None) is None  # type: ignore[func-returns-value]
        assert loads == ["x"]

    def test_ttl_zero_looks_up_every_time(self) -> None:
        cache = KeyCache(0.0)
        loads: list[str] = []
        for _ in range(3):
            cache.lookup("h", lambda: loads.append("x") or _key())  # type: ignore[func-returns-value]
        assert len(loads) == 3

    def test_size_is_bounded(self) -> None:
        cache = KeyCache(60.0, max_entries=10, clock=lambda: 0.0)
        for i in range(25):
            cache.lookup(f"h{i}", lambda: None)
        assert len(cache._entries) <= 10


class TestAuditEntry:
    def scope(self, **extra: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "method": "GET",
            "path": "/v1/tickets/123/routing",
            "query_string": b"limit=5",
            "client": ("10.1.2.3", 5555),
            "path_params": {"ticket_id": "123"},
            **extra,
        }

    def test_fields(self) -> None:
        entry = audit_entry(self.scope(), key_id="key_1", status_code=200, at=AT)
        assert entry == AuditEntry(
            at=AT,
            key_id="key_1",
            method="GET",
            path="/v1/tickets/123/routing",
            query="limit=5",
            status_code=200,
            ticket_id=123,
            agent_id=None,
            client_addr="10.1.2.3",
        )

    def test_agent_id(self) -> None:
        scope = self.scope(path="/v1/agents/7/queue", path_params={"agent_id": "7"})
        entry = audit_entry(scope, key_id="anonymous", status_code=404, at=AT)
        assert (entry.ticket_id, entry.agent_id) == (None, 7)

    @pytest.mark.parametrize("bad", ["abc", "0", "-4", "1.5", str(2**63), ""])
    def test_malformed_ids_are_left_out(self, bad: str) -> None:
        scope = self.scope(path_params={"ticket_id": bad}, client=None)
        entry = audit_entry(scope, key_id="key_1", status_code=422, at=AT)
        assert (entry.ticket_id, entry.client_addr) == (None, None)

    def test_free_text_is_stored_as_a_hash(self) -> None:
        scope = self.scope(query_string=b"q=ana%40example.com+refund&limit=5&note=call+me")
        entry = audit_entry(scope, key_id="key_1", status_code=200, at=AT)
        assert "ana" not in entry.query and "call" not in entry.query
        digest = hashlib.sha256(b"ana@example.com refund").hexdigest()[:16]
        note = hashlib.sha256(b"call me").hexdigest()[:16]
        assert entry.query == f"q=sha256:{digest}&limit=5&note=sha256:{note}"

    def test_bounded_parameters_are_kept(self) -> None:
        query = b"status=open&category=billing&limit=20&day=2026-03-02&format=json"
        entry = audit_entry(self.scope(query_string=query), key_id="k", status_code=200, at=AT)
        assert entry.query == query.decode()


class _FailingPool:
    def __init__(self) -> None:
        self.calls = 0

    @contextmanager
    def connection(self) -> Any:
        self.calls += 1
        raise OSError("store down")
        yield


class TestAuditWriter:
    def entry(self, n: int) -> AuditEntry:
        return AuditEntry(AT + timedelta(seconds=n), "key_1", "GET", "/", "", 200, n, None, None)

    def test_failed_write_keeps_rows_and_warns(self, caplog: pytest.LogCaptureFixture) -> None:
        pool = _FailingPool()
        writer = AuditWriter(pool, schema="analytics", max_pending=3)  # type: ignore[arg-type]
        for n in range(2):
            writer.record(self.entry(n))
        writer.note_use("key_1", AT)
        with caplog.at_level(logging.WARNING, logger="api.audit"):
            assert writer.flush() == 0
        assert "retrying 2 row(s)" in caplog.text
        assert [e.ticket_id for e in writer._pending] == [0, 1]
        assert writer._last_used == {"key_1": AT}
        # Beyond max_pending new rows are dropped and counted, not blocking anyone.
        for n in range(2, 5):
            writer.record(self.entry(n))
        assert [e.ticket_id for e in writer._pending] == [0, 1, 2]
        with caplog.at_level(logging.WARNING, logger="api.audit"):
            writer.flush()
        assert "dropped 2 audit row(s)" in caplog.text

    def test_nothing_queued_touches_no_store(self) -> None:
        pool = _FailingPool()
        assert AuditWriter(pool, schema="analytics").flush() == 0  # type: ignore[arg-type]
        assert pool.calls == 0

    def test_last_use_keeps_the_newest(self) -> None:
        writer = AuditWriter(_FailingPool(), schema="analytics")  # type: ignore[arg-type]
        writer.note_use("k", AT + timedelta(seconds=5))
        writer.note_use("k", AT)
        assert writer._last_used == {"k": AT + timedelta(seconds=5)}


def test_split_router_keeps_paths_apart() -> None:
    router = APIRouter(tags=["dashboard"])

    @router.get("/dashboard")
    def page() -> str:
        return "page"

    @router.get("/v1/dashboard/panels")
    def panels() -> list[str]:
        return []

    opened, protected = split_router(router, ["/dashboard"])
    assert [r.path for r in opened.routes] == ["/dashboard"]  # type: ignore[attr-defined]
    assert [r.path for r in protected.routes] == ["/v1/dashboard/panels"]  # type: ignore[attr-defined]
