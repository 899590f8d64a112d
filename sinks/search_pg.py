"""PostgreSQL full-text search sink: ticket and KB search without Elasticsearch.

The embedded default. Documents (:mod:`sinks.search`) go to ``analytics.ticket_search``
and ``analytics.kb_search`` (``sql/analytics/009_search.sql``), whose generated
``document`` tsvector is built with the text search configuration of each row's language
(see :func:`text_search_config` and the migration for why); the API queries them with
``websearch_to_tsquery`` and ranks with ``ts_rank_cd``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from psycopg import sql

from models.codecs import ANALYTICS_SCHEMA
from models.telemetry import telemetry
from sinks.dead_letters import rejected_dead_letter, store_reason, write_isolating
from sinks.postgres import DeadLetterWriter
from sinks.retry import DEFAULT_RETRY, RetryPolicy
from sinks.search import (
    KbDocument,
    SearchDocuments,
    SearchItem,
    TicketDocument,
    batch_to_documents,
)
from sinks.staged import StagedTable, StagedWriter

log = logging.getLogger(__name__)

REJECTED_STAGE = "write_search"
"""Stage of the dead letters for documents a search store rejected."""

TICKET_SEARCH = "ticket_search"
KB_SEARCH = "kb_search"

TEXT_SEARCH_CONFIGS: dict[str, str] = {
    "en": "english",
    "de": "german",
    "fr": "french",
    "es": "spanish",
}
"""PostgreSQL text search configuration per detected language; others get ``simple``."""

TICKET_SEARCH_COLUMNS: tuple[str, ...] = (
    "ticket_id",
    "version",
    "deleted",
    "subject",
    "description",
    "status",
    "priority",
    "category",
    "intent",
    "queue",
    "channel",
    "language",
    "search_config",
    "customer_id",
    "customer_tier",
    "organization",
    "assigned_agent_id",
    "created_at",
    "updated_at",
    "solved_at",
)
KB_SEARCH_COLUMNS: tuple[str, ...] = (
    "article_id",
    "version",
    "deleted",
    "title",
    "body",
    "category",
    "language",
    "search_config",
    "updated_at",
)


def text_search_config(language: str | None) -> str:
    """The text search configuration for a language code (``simple`` when unsupported).

    Example:
        >>> text_search_config("de"), text_search_config("pt"), text_search_config(None)
        ('german', 'simple', 'simple')
    """
    return TEXT_SEARCH_CONFIGS.get((language or "").casefold(), "simple")


def ticket_search_row(doc: TicketDocument) -> tuple[Any, ...]:
    """One ``ticket_search`` row in :data:`TICKET_SEARCH_COLUMNS` order."""
    return (
        doc.ticket_id,
        doc.version,
        doc.deleted,
        doc.subject,
        doc.description,
        doc.status,
        doc.priority,
        doc.category,
        doc.intent,
        doc.queue,
        doc.channel,
        doc.language,
        text_search_config(doc.language),
        doc.customer_id,
        doc.customer_tier,
        doc.organization,
        doc.assigned_agent_id,
        doc.created_at,
        doc.updated_at,
        doc.solved_at,
    )


def kb_search_row(doc: KbDocument) -> tuple[Any, ...]:
    """One ``kb_search`` row in :data:`KB_SEARCH_COLUMNS` order."""
    return (
        doc.article_id,
        doc.version,
        doc.deleted,
        doc.title,
        doc.body,
        doc.category,
        doc.language,
        text_search_config(doc.language),
        doc.updated_at,
    )


def documents_to_rows(docs: SearchDocuments) -> dict[str, list[tuple[Any, ...]]]:
    """Rows per table, in id order (the documents' order)."""
    return {
        TICKET_SEARCH: [ticket_search_row(d) for d in docs.tickets],
        KB_SEARCH: [kb_search_row(d) for d in docs.articles],
    }


def _statements(schema: str, table: str, columns: tuple[str, ...]) -> StagedTable:
    target = sql.Identifier(schema, table)
    staging = sql.Identifier(f"staging_{table}")
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    updates = sql.SQL(", ").join(
        [sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in columns[1:]]
        + [sql.SQL("indexed_at = now()")]
    )
    return StagedTable(
        # Staging holds the written columns only (no generated document); the writer empties
        # it after each merge. COPY into it then one merge is about twice as fast as row
        # inserts.
        create_staging=sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {staging} AS SELECT {cols} FROM {target} WITH NO DATA"
        ).format(staging=staging, cols=cols, target=target),
        copy=sql.SQL("COPY {staging} ({cols}) FROM STDIN").format(staging=staging, cols=cols),
        # A replay of the same version changes nothing; only a strictly newer one replaces.
        merge=sql.SQL(
            "INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {staging} "
            "ON CONFLICT ({key}) DO UPDATE SET {updates} WHERE t.version < EXCLUDED.version"
        ).format(
            target=target,
            cols=cols,
            staging=staging,
            key=sql.Identifier(columns[0]),
            updates=updates,
        ),
        staging=staging,
    )


class _PostgresSearchPartition(StatelessSinkPartition[SearchItem]):
    """One worker's connection; each batch is one transaction."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str,
        allow_pii: bool,
        connect_timeout: int,
        retry: RetryPolicy,
    ) -> None:
        self._allow_pii = allow_pii
        self._dsn = dsn
        self._schema = schema
        self._connect_timeout = connect_timeout
        self._retry = retry
        # Opened at the first rejected document only.
        self._dead_letters: DeadLetterWriter | None = None
        self._writer = StagedWriter(
            dsn,
            schema=schema,
            tables={
                TICKET_SEARCH: _statements(schema, TICKET_SEARCH, TICKET_SEARCH_COLUMNS),
                KB_SEARCH: _statements(schema, KB_SEARCH, KB_SEARCH_COLUMNS),
            },
            sink="search_pg",
            connect_timeout=connect_timeout,
            retry=retry,
        )

    def write_batch(self, items: list[SearchItem]) -> None:
        """Upsert the batch's documents; returns only once they are committed.

        Connection loss is retried with exponential backoff on a fresh connection (the flow
        slows down instead of dropping documents). Items whose documents PostgreSQL rejects
        are isolated and stored in ``dead_letters`` (stage ``write_search``) with its
        reason; the rest is written. Other errors propagate.
        """
        rejected = write_isolating(items, self._write)
        if not rejected:
            return
        letters = []
        for item, exc in rejected:
            reason = store_reason(exc)
            log.error("search index rejected %s: %s", type(item).__name__, reason)
            letters.append(rejected_dead_letter(item, stage=REJECTED_STAGE, reason=reason))
        if self._dead_letters is None:
            self._dead_letters = DeadLetterWriter(
                self._dsn,
                schema=self._schema,
                sink="search_pg",
                connect_timeout=self._connect_timeout,
                retry=self._retry,
            )
        self._dead_letters.write(letters)

    def _write(self, items: Sequence[SearchItem]) -> None:
        rows = documents_to_rows(batch_to_documents(items, allow_pii=self._allow_pii))
        if not any(rows.values()):
            return
        self._writer.write(rows, describe=f"search index write of {len(items)} items")
        telemetry().items_written("search_pg", {t: len(r) for t, r in rows.items()})

    def close(self) -> None:
        """Close the connection(s) when the dataflow ends."""
        self._writer.close()
        if self._dead_letters is not None:
            self._dead_letters.close()


class PostgresSearchSink(DynamicSink[SearchItem]):
    """Index tickets and KB articles for PostgreSQL full-text search.

    Enriched tickets go to ``ticket_search``, KB article changes to ``kb_search``, as the
    documents of :func:`sinks.search.batch_to_documents` (PII masked unless allowed,
    deletes as tombstones).

    Delivery guarantee: at-least-once from the flow, effectively-once in the tables.
    Idempotency key: ``ticket_id`` / ``article_id``; only a strictly greater ``version``
    (source LSN) replaces a row, so replays and out-of-order redelivery never regress it.
    Each batch is one transaction. A document PostgreSQL rejects goes to ``dead_letters``
    (stage ``write_search``) with its reason, and the rest of the batch is written.

    Args:
        dsn: libpq connection string of the analytics database.
        schema: Schema holding the tables of ``sql/analytics``.
        allow_pii: Index e-mail addresses and phone numbers unmasked.
        connect_timeout: Seconds to wait for each connection attempt.
        retry: Delays and limit of the retries after a connection loss; by default
            it retries for as long as it takes.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = ANALYTICS_SCHEMA,
        allow_pii: bool = False,
        connect_timeout: int = 10,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._dsn = dsn
        self._schema = schema
        self._allow_pii = allow_pii
        self._connect_timeout = connect_timeout
        self._retry = retry

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PostgresSearchPartition:
        """Open this worker's connection and check that the search tables exist."""
        return _PostgresSearchPartition(
            self._dsn,
            schema=self._schema,
            allow_pii=self._allow_pii,
            connect_timeout=self._connect_timeout,
            retry=self._retry,
        )
