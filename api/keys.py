"""API keys and their scopes: generation, hashing, and the ``analytics.api_keys`` records.

Keys are ``tri_`` followed by 32 random bytes (URL-safe base64), shown once by
``triage api-keys create`` and stored only as their SHA-256. Enforcement per request is in
:mod:`api.security`, rate limits in :mod:`api.rate_limit`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from models.codecs import ANALYTICS_SCHEMA

log = logging.getLogger(__name__)

READ_TICKETS = "read:tickets"
READ_ROUTING = "read:routing"
READ_ANALYTICS = "read:analytics"
WRITE_OUTCOMES = "write:outcomes"
ADMIN = "admin"
SCOPES = (READ_TICKETS, READ_ROUTING, READ_ANALYTICS, WRITE_OUTCOMES, ADMIN)
"""Every scope a key can hold; ``admin`` implies the others."""
READ_SCOPES = frozenset({READ_TICKETS, READ_ROUTING, READ_ANALYTICS})

KEY_PREFIX = "tri_"
_KEY_BYTES = 32
# token_urlsafe(32) is 43 base64url characters without padding.
_KEY_FORMAT = re.compile(r"^tri_[A-Za-z0-9_-]{43}$")
ANONYMOUS_KEY_ID = "anonymous"
DEFAULT_RATE_LIMIT_PER_MINUTE = 600
RATE_WINDOW_S = 60
REALM = "triage"


def generate_api_key() -> str:
    """A new key: ``tri_`` and 256 random bits, URL-safe.

    Example:
        >>> key = generate_api_key()
        >>> key.startswith("tri_"), len(key)
        (True, 47)
    """
    return KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)


def generate_key_id() -> str:
    """A key's public id (in listings, the audit log and rate-limit counters)."""
    return "key_" + secrets.token_hex(6)


def hash_api_key(key: str) -> str:
    """The hex SHA-256 stored for ``key`` and looked up on each request.

    A fast unsalted hash is right here, unlike for passwords: a password has little
    entropy, so a slow salted hash (bcrypt, argon2) is what stops an attacker holding
    the hashes from trying every likely password. A key has 256 random bits; no amount
    of hashing speed makes searching that space feasible, and no precomputed table
    covers it. A deterministic hash also lets the database find the key by its hash
    (a unique index) instead of verifying every stored key.

    Example:
        >>> hash_api_key("tri_example")[:12]
        'a1a45a2b410c'
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def is_well_formed_key(key: str) -> bool:
    """Whether ``key`` has the shape of a key we issue (checked before any lookup)."""
    return bool(_KEY_FORMAT.match(key))


def grants(scopes: Iterable[str], needed: str) -> bool:
    """Whether holding ``scopes`` allows what ``needed`` protects (``admin`` allows all).

    Example:
        >>> grants(["read:routing"], "read:tickets"), grants(["admin"], "read:tickets")
        (False, True)
    """
    held = set(scopes)
    return needed in held or ADMIN in held


def parse_scopes(values: Iterable[str]) -> tuple[str, ...]:
    """Validated scopes without duplicates, in :data:`SCOPES` order.

    Raises:
        ValueError: When a value is not a known scope, or there is none.
    """
    wanted = {v.strip() for v in values}
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    if not wanted:
        raise ValueError(f"at least one scope is needed; known: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in wanted)


@dataclass(frozen=True)
class ApiKey:
    """A stored key (without its secret).

    Attributes:
        key_id: Public id, e.g. ``key_3f9a0c21b4de``.
        name: Who or what the key is for.
        scopes: Scopes the key holds.
        rate_limit_per_minute: Requests the key may make per clock minute.
        created_at: When the key was created.
        revoked_at: When it was revoked; ``None`` while it is valid.
        last_used_at: The newest request made with it, as the audit writer last noted it.
    """

    key_id: str
    name: str
    scopes: tuple[str, ...]
    rate_limit_per_minute: int
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


_KEY_COLUMNS = (
    "key_id",
    "name",
    "scopes",
    "rate_limit_per_minute",
    "created_at",
    "revoked_at",
    "last_used_at",
)


def _api_key(row: dict[str, Any]) -> ApiKey:
    return ApiKey(**{**row, "scopes": tuple(row["scopes"])})


def _select(schema: str) -> sql.Composed:
    return sql.SQL("SELECT {cols} FROM {table}").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, _KEY_COLUMNS)),
        table=sql.Identifier(schema, "api_keys"),
    )


def create_api_key(
    conn: psycopg.Connection[Any],
    *,
    schema: str = ANALYTICS_SCHEMA,
    name: str,
    scopes: Iterable[str],
    rate_limit_per_minute: int = DEFAULT_RATE_LIMIT_PER_MINUTE,
) -> tuple[ApiKey, str]:
    """Store a new key; returns its row and the key itself, which is not kept anywhere.

    Raises:
        ValueError: On an unknown scope, an empty name or a rate limit below 1.
    """
    granted = parse_scopes(scopes)
    if not name.strip():
        raise ValueError("a key needs a name")
    if rate_limit_per_minute < 1:
        raise ValueError("rate_limit_per_minute must be at least 1")
    key = generate_api_key()
    query = sql.SQL(
        "INSERT INTO {table} (key_id, name, key_hash, scopes, rate_limit_per_minute)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING {cols}"
    ).format(
        table=sql.Identifier(schema, "api_keys"),
        cols=sql.SQL(", ").join(map(sql.Identifier, _KEY_COLUMNS)),
    )
    params = (generate_key_id(), name.strip(), hash_api_key(key), list(granted))
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, (*params, rate_limit_per_minute)).fetchone()
    assert row is not None  # INSERT ... RETURNING returns the row or raises
    return _api_key(row), key


def list_api_keys(conn: psycopg.Connection[Any], *, schema: str = ANALYTICS_SCHEMA) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    query = _select(schema) + sql.SQL(" ORDER BY created_at, key_id")
    with conn.cursor(row_factory=dict_row) as cur:
        return [_api_key(row) for row in cur.execute(query).fetchall()]


def find_api_key(
    conn: psycopg.Connection[Any], *, schema: str = ANALYTICS_SCHEMA, key_hash: str
) -> ApiKey | None:
    """The key whose hash is ``key_hash``, revoked or not."""
    with conn.cursor(row_factory=dict_row) as cur:
        query = _select(schema) + sql.SQL(" WHERE key_hash = %s")
        row = cur.execute(query, (key_hash,)).fetchone()
    return None if row is None else _api_key(row)


def revoke_api_key(
    conn: psycopg.Connection[Any], *, schema: str = ANALYTICS_SCHEMA, key_id: str
) -> ApiKey | None:
    """Revoke ``key_id`` (idempotent: a revoked key keeps its first ``revoked_at``).

    Returns:
        The key's row, or ``None`` when there is no such key.
    """
    query = sql.SQL(
        "UPDATE {table} SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = %s"
        " RETURNING {cols}"
    ).format(
        table=sql.Identifier(schema, "api_keys"),
        cols=sql.SQL(", ").join(map(sql.Identifier, _KEY_COLUMNS)),
    )
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, (key_id,)).fetchone()
    return None if row is None else _api_key(row)
