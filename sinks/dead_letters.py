"""Rows a store refuses become dead letters, so one bad record never stops the flow.

The flow's steps dead-letter what they cannot process; the sinks do the same for what a
store rejects (a constraint violation or a value PostgreSQL refuses, a document
Elasticsearch cannot index). A rejected batch is split until the rejected items are
isolated (:func:`write_isolating`); each becomes a :class:`~models.events.DeadLetter`
with the store's own reason (:func:`rejected_dead_letter`), written to the analytics
store's ``dead_letters`` table, and the rest of the batch is written as usual. A store that
is down is not a rejection: that is still retried (:mod:`sinks.retry`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg

from models.events import DeadLetter, SourcePosition

log = logging.getLogger(__name__)

T = TypeVar("T")

PAYLOAD_CHARS = 4096
"""A dead letter keeps at most this much of the rejected record, enough to diagnose."""

REJECTED_WRITES: tuple[type[Exception], ...] = (
    psycopg.errors.DataError,  # a value the column cannot hold (range, encoding, NUL, format)
    psycopg.errors.IntegrityError,  # NOT NULL, CHECK, foreign key, exclusion
)
"""PostgreSQL errors that blame the rows written, not the connection or the schema."""


def is_rejected_write(exc: BaseException) -> bool:
    """Whether the store refused the rows themselves (rather than being down or broken)."""
    return isinstance(exc, REJECTED_WRITES)


def write_isolating(
    items: Sequence[T],
    write: Callable[[Sequence[T]], None],
    *,
    rejected: Callable[[BaseException], bool] = is_rejected_write,
) -> list[tuple[T, BaseException]]:
    """Write ``items``; when the store rejects them, bisect down to the rejected ones.

    ``write`` is one complete, transactional write of a sub-batch (it retries lost
    connections itself). A rejection of a sub-batch rolls it back and splits it in two, so
    ``k`` bad items among ``n`` cost about ``2 k log2(n)`` extra writes, and the good items
    are written in their original order. Errors for which ``rejected`` is false propagate.

    Returns:
        The rejected items, each with the store's error, in batch order.

    Example:
        >>> def write(part):
        ...     if any(x < 0 for x in part):
        ...         raise ValueError("negative")
        ...     written.extend(part)
        >>> written = []
        >>> bad = write_isolating([1, -2, 3, 4], write, rejected=lambda e: True)
        >>> [item for item, _ in bad], written
        ([-2], [1, 3, 4])
    """
    failures: list[tuple[T, BaseException]] = []

    def attempt(part: Sequence[T]) -> None:
        if not part:
            return
        try:
            write(part)
        except Exception as exc:
            if not rejected(exc):
                raise
            if len(part) == 1:
                failures.append((part[0], exc))
                return
            middle = len(part) // 2
            attempt(part[:middle])
            attempt(part[middle:])

    attempt(items)
    return failures


def store_reason(exc: BaseException) -> str:
    """The store's reason for a rejection, as an operator reads it.

    For PostgreSQL: SQLSTATE, message, detail and the constraint, table and column named by
    the server (e.g. ``23514 check_violation: new row for relation ... violates check
    constraint ...``); otherwise the exception's type and text.
    """
    diag: Any = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if diag is None or not primary:
        return f"{type(exc).__name__}: {exc}"
    parts = [f"{diag.sqlstate} {type(exc).__name__}: {primary}"]
    if diag.message_detail:
        parts.append(f"detail: {diag.message_detail}")
    for label, value in (
        ("table", diag.table_name),
        ("column", diag.column_name),
        ("constraint", diag.constraint_name),
    ):
        if value:
            parts.append(f"{label}: {value}")
    return "; ".join(parts)


def printable(text: str, limit: int | None = None) -> str:
    """Text any store accepts: NUL and lone surrogates escaped, cut to ``limit``."""
    safe = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return safe if limit is None else safe[:limit]


def _key(item: Any) -> str | None:
    """The item's entity (its first id field) and version, e.g. ``ticket_id=2 version=20``."""
    parts = [
        f"{name}={value}"
        for name in ("ticket_id", "article_id", "agent_id", "series", "model")
        if (value := getattr(item, name, None)) is not None
    ][:1]
    if (version := getattr(item, "version", None)) is not None:
        parts.append(f"version={version}")
    return printable(" ".join(parts)) if parts else None


def rejected_dead_letter(
    item: Any, *, stage: str, reason: str, now: datetime | None = None
) -> DeadLetter:
    """Describe an item a store rejected as a dead letter (pure).

    ``topic`` names the item's type (``RoutingDecision``, ``EnrichedTicket``, ...), the key
    its entity and version (the source LSN) when it has them. The position stays empty, so
    ``dead_letters`` identifies the record by a digest of key and payload: a replay of the
    same rejected item is the same dead letter. The payload is the item's ``repr``, escaped
    and cut.

    Args:
        item: The rejected item.
        stage: The sink step, e.g. ``write_analytics``.
        reason: The store's reason (:func:`store_reason`).
        now: Failure time; defaults to the current UTC time.
    """
    if isinstance(item, DeadLetter):
        # A dead letter the store refused (its text held a NUL, say): keep its origin.
        return DeadLetter(
            stage=printable(item.stage),
            reason=printable(f"{item.reason} [stored escaped: {reason}]", PAYLOAD_CHARS),
            topic=printable(item.topic),
            key=None if item.key is None else printable(item.key, PAYLOAD_CHARS),
            payload=None if item.payload is None else printable(item.payload, PAYLOAD_CHARS),
            position=item.position,
            failed_at=item.failed_at,
        )
    return DeadLetter(
        stage=stage,
        reason=printable(reason, PAYLOAD_CHARS),
        topic=type(item).__name__,
        key=_key(item),
        payload=printable(repr(item), PAYLOAD_CHARS),
        position=SourcePosition(),
        failed_at=now or datetime.now(UTC),
    )
