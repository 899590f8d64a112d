"""Elasticsearch search sink: ticket and KB article documents with external versions.

Two indices, ``<prefix>-tickets`` (id: ticket id) and ``<prefix>-kb`` (id: article id),
hold the documents of :func:`sinks.search.batch_to_documents`. At start-up the sink puts an
index template per index (so an index recreated by a write gets the same mapping), creates
the indices when missing and adds new fields to existing ones.

Mapping: ids, version and the facets (status, priority, category, queue, language, ...) are
``keyword`` or numeric; times are ``date``; subject/description and title/body are ``text``
with the ``standard`` analyzer plus one subfield per supported language (``.en``, ``.de``,
``.fr``, ``.es`` with Elasticsearch's built-in language analyzers: stemming, stop words),
so a query matches inflected forms whatever the ticket's language; subject and title also
get a ``.keyword`` subfield for exact matches, sorting and aggregations.

Delivery guarantee: at-least-once from the flow, effectively-once in the index. Each
document is written with ``version=<source LSN>, version_type="external"``: Elasticsearch
applies it only when its version is greater than the stored one, so a replay or an older
change arriving late is refused with a version conflict (409), which the sink counts and
ignores. Deletes are indexed as tombstones (``deleted: true``, text emptied) rather than
deleted, since a real delete's version is forgotten after ``index.gc_deletes`` and a late
older version could then resurrect the document. A document Elasticsearch refuses for good
(a mapping or parsing error, 4xx) becomes a dead letter with Elasticsearch's reason
(:func:`refused_dead_letters`, stored in the analytics ``dead_letters`` table when a
dead-letter DSN is given) and the rest of the batch is written; documents refused for
back-pressure or a server error (429, 5xx), connection errors and unavailable clusters are
retried with backoff.

Kept as one module: the index templates, bulk actions and the handling of
rejected documents belong to one index protocol.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import elasticsearch
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from elasticsearch import helpers

from models.events import DeadLetter, SourcePosition
from models.telemetry import telemetry
from sinks.dead_letters import PAYLOAD_CHARS, printable
from sinks.postgres import RefusalStore
from sinks.retry import RetryPolicy
from sinks.search import (
    KbDocument,
    SearchDocuments,
    SearchItem,
    TicketDocument,
    batch_to_documents,
)

log = logging.getLogger(__name__)

URL_SETTING = "TRIAGE_ELASTICSEARCH__URL"

LANGUAGE_ANALYZERS: dict[str, str] = {
    "en": "english",
    "de": "german",
    "fr": "french",
    "es": "spanish",
}
"""Language subfields of every text field and Elasticsearch's built-in analyzer for each."""

_RETRYABLE_STATUS = frozenset({502, 503, 504})
_CONFLICT = 409
_TOO_MANY_REQUESTS = 429

REJECTED_STAGE = "write_search"
"""Stage of the dead letters for documents Elasticsearch refused."""

ELASTICSEARCH_RETRY = RetryPolicy(initial_delay=0.5)
"""The Elasticsearch sink's default retries: 0.5 s doubling up to 30 s, for as long as it
takes."""


class SearchIndexError(RuntimeError):
    """Elasticsearch refused documents for another reason than a version conflict.

    Attributes:
        errors: The refused bulk items as Elasticsearch reported them.
    """

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


def index_names(prefix: str) -> tuple[str, str]:
    """The ticket and KB index names for a prefix.

    Example:
        >>> index_names("triage")
        ('triage-tickets', 'triage-kb')
    """
    return f"{prefix}-tickets", f"{prefix}-kb"


def _text(*, keyword: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        lang: {"type": "text", "analyzer": analyzer}
        for lang, analyzer in LANGUAGE_ANALYZERS.items()
    }
    if keyword:
        fields["keyword"] = {"type": "keyword", "ignore_above": 256}
    return {"type": "text", "analyzer": "standard", "fields": fields}


_KEYWORD = {"type": "keyword"}
_LONG = {"type": "long"}
_DATE = {"type": "date"}
_BOOLEAN = {"type": "boolean"}


def ticket_mappings() -> dict[str, Any]:
    """Mapping of the ticket index; fields not listed are kept in ``_source`` only."""
    return {
        "dynamic": False,
        "properties": {
            "ticket_id": _LONG,
            "version": _LONG,
            "deleted": _BOOLEAN,
            "subject": _text(keyword=True),
            "description": _text(keyword=False),
            "status": _KEYWORD,
            "priority": _KEYWORD,
            "category": _KEYWORD,
            "intent": _KEYWORD,
            "queue": _KEYWORD,
            "channel": _KEYWORD,
            "language": _KEYWORD,
            "customer_id": _LONG,
            "customer_tier": _KEYWORD,
            "organization": _KEYWORD,
            "assigned_agent_id": _LONG,
            "created_at": _DATE,
            "updated_at": _DATE,
            "solved_at": _DATE,
        },
    }


def kb_mappings() -> dict[str, Any]:
    """Mapping of the KB index."""
    return {
        "dynamic": False,
        "properties": {
            "article_id": _LONG,
            "version": _LONG,
            "deleted": _BOOLEAN,
            "title": _text(keyword=True),
            "body": _text(keyword=False),
            "category": _KEYWORD,
            "language": _KEYWORD,
            "updated_at": _DATE,
        },
    }


def index_templates(prefix: str) -> dict[str, dict[str, Any]]:
    """Composable index templates by name (keyword arguments of ``put_index_template``)."""
    tickets, kb = index_names(prefix)
    return {
        name: {
            "index_patterns": [name],
            "priority": 200,
            "template": {"mappings": mappings},
            "meta": {"description": "Smart Triage search documents (sinks/search_es.py)"},
        }
        for name, mappings in ((tickets, ticket_mappings()), (kb, kb_mappings()))
    }


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def document_source(doc: TicketDocument | KbDocument) -> dict[str, Any]:
    """The document's ``_source``: every field, times as ISO-8601."""
    return {name: _json(value) for name, value in asdict(doc).items()}


def bulk_actions(docs: SearchDocuments, prefix: str) -> list[dict[str, Any]]:
    """Bulk ``index`` actions, one per document, versioned externally by the source LSN.

    Example:
        >>> from sinks.search import KbDocument, SearchDocuments
        >>> doc = KbDocument(7, 1042, False, "Refunds", "How to ...", "billing", "en", None)
        >>> action = bulk_actions(SearchDocuments([], [doc]), "triage")[0]
        >>> {k: v for k, v in action.items() if k != "_source"}
        {'_op_type': 'index', '_index': 'triage-kb', '_id': '7', 'version': 1042, 'version_type': 'external'}
    """  # noqa: E501
    tickets, kb = index_names(prefix)
    actions = [_action(tickets, str(d.ticket_id), d.version, d) for d in docs.tickets]
    actions += [_action(kb, str(d.article_id), d.version, d) for d in docs.articles]
    return actions


def _action(
    index: str, doc_id: str, version: int, doc: TicketDocument | KbDocument
) -> dict[str, Any]:
    return {
        "_op_type": "index",
        "_index": index,
        "_id": doc_id,
        "version": version,
        "version_type": "external",
        "_source": document_source(doc),
    }


def rejected(results: Iterable[tuple[bool, dict[str, Any]]]) -> tuple[int, list[dict[str, Any]]]:
    """Split failed bulk items into version conflicts (counted) and real errors (listed)."""
    conflicts = 0
    errors: list[dict[str, Any]] = []
    for ok, item in results:
        if ok:
            continue
        result = next(iter(item.values()))
        if result.get("status") == _CONFLICT:
            conflicts += 1
        else:
            errors.append(item)
    return conflicts, errors


@dataclass
class BulkOutcome:
    """Failed bulk items by what to do with them (pure result of :func:`classify_bulk`).

    Attributes:
        conflicts: Version conflicts: a newer or equal version is stored (replays); ignored.
        transient: Refused for back-pressure or a server error (429, 5xx): send again.
        refused: Refused for good (mapping, parsing, a too-large document): dead letters.
    """

    conflicts: int = 0
    transient: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)


def classify_bulk(results: Iterable[tuple[bool, dict[str, Any]]]) -> BulkOutcome:
    """Sort the failed items of a bulk response (``streaming_bulk`` results).

    Example:
        >>> out = classify_bulk([(True, {"index": {"status": 201}}),
        ...                      (False, {"index": {"status": 409, "_id": "1"}}),
        ...                      (False, {"index": {"status": 429, "_id": "2"}}),
        ...                      (False, {"index": {"status": 400, "_id": "3"}})])
        >>> out.conflicts, [i["index"]["_id"] for i in out.transient + out.refused]
        (1, ['2', '3'])
    """
    outcome = BulkOutcome()
    for ok, item in results:
        if ok:
            continue
        status = next(iter(item.values())).get("status", 500)
        if status == _CONFLICT:
            outcome.conflicts += 1
        elif status == _TOO_MANY_REQUESTS or status >= 500:
            outcome.transient.append(item)
        else:
            outcome.refused.append(item)
    return outcome


def _error_text(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    cause = error.get("caused_by")
    return f"{text} (caused by {_error_text(cause)})" if cause else text


def refused_dead_letters(
    refused: list[dict[str, Any]],
    actions: list[dict[str, Any]],
    *,
    now: datetime | None = None,
) -> list[DeadLetter]:
    """Dead letters for the documents Elasticsearch refused, with its reason (pure).

    Each refused bulk item is matched to the action that sent it by index and id, for the
    document (the payload, JSON with non-ASCII escaped, cut to a preview) and its version
    (the source LSN, the dead letter's position: a replayed refusal is the same dead
    letter). Topic is the index, key the document id.

    Example:
        >>> action = {"_index": "triage-tickets", "_id": "42", "version": 7,
        ...           "_source": {"ticket_id": 42, "created_at": "not a date"}}
        >>> item = {"index": {"_index": "triage-tickets", "_id": "42", "status": 400,
        ...         "error": {"type": "document_parsing_exception", "reason": "[1:20] bad date"}}}
        >>> letter, = refused_dead_letters([item], [action])
        >>> letter.reason
        'elasticsearch 400 document_parsing_exception: [1:20] bad date'
        >>> (letter.topic, letter.key, letter.position.lsn)
        ('triage-tickets', '42', 7)
    """
    by_id = {(a["_index"], a["_id"]): a for a in actions}
    failed_at = now or datetime.now(UTC)
    letters = []
    for item in refused:
        result = next(iter(item.values()))
        index, doc_id = str(result.get("_index", "")), str(result.get("_id", ""))
        action = by_id.get((index, doc_id), {})
        source = action.get("_source")
        payload = None
        if source is not None:
            payload = json.dumps(source, ensure_ascii=True, default=str)[:PAYLOAD_CHARS]
        reason = f"elasticsearch {result.get('status')} {_error_text(result.get('error'))}"
        version = action.get("version")
        letters.append(
            DeadLetter(
                stage=REJECTED_STAGE,
                reason=printable(reason, PAYLOAD_CHARS),
                topic=index,
                key=printable(doc_id),
                payload=payload,
                position=SourcePosition(lsn=version if isinstance(version, int) else None),
                failed_at=failed_at,
            )
        )
    return letters


def _unreachable(url: str, exc: Exception) -> RuntimeError:
    return RuntimeError(
        f"Elasticsearch at {url} is unavailable ({type(exc).__name__}: {exc}); set "
        f"{URL_SETTING} to a running cluster, or unset it to search with PostgreSQL "
        "full-text search"
    )


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, elasticsearch.ConnectionError | elasticsearch.ConnectionTimeout):
        return True
    return isinstance(exc, elasticsearch.ApiError) and exc.status_code in _RETRYABLE_STATUS


class _ElasticsearchPartition(StatelessSinkPartition[SearchItem]):
    """One worker's client; each batch goes out as bulk requests."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None,
        prefix: str,
        allow_pii: bool,
        request_timeout: float,
        retry: RetryPolicy,
        dead_letter_dsn: str | None,
    ) -> None:
        self._url = url
        self._refusals = RefusalStore(dead_letter_dsn, sink="elasticsearch")
        self._prefix = prefix
        self._allow_pii = allow_pii
        self._retry = retry
        self.conflicts = 0
        self._client = elasticsearch.Elasticsearch(
            url, api_key=api_key, request_timeout=request_timeout, max_retries=2
        )
        try:
            self._prepare()
        except BaseException:
            self._client.close()
            raise

    def _prepare(self) -> None:
        """Templates and indices; fails at start-up when the cluster is unreachable."""
        try:
            self._client.info()
        except (elasticsearch.ConnectionError, elasticsearch.ConnectionTimeout) as exc:
            raise _unreachable(self._url, exc) from exc
        except elasticsearch.AuthenticationException as exc:
            raise RuntimeError(
                f"Elasticsearch at {self._url} refused the credentials; check "
                "TRIAGE_ELASTICSEARCH__API_KEY"
            ) from exc
        templates = index_templates(self._prefix)
        for name, template in templates.items():
            self._client.indices.put_index_template(name=name, **template)
            mappings = template["template"]["mappings"]
            try:
                self._client.indices.create(index=name, mappings=mappings)
            except elasticsearch.BadRequestError as exc:
                if exc.error != "resource_already_exists_exception":
                    raise
                # An existing index (another worker, an earlier run) gets new fields only;
                # a changed analyzer is refused here and needs a new index prefix.
                self._client.indices.put_mapping(index=name, **mappings)

    def write_batch(self, items: list[SearchItem]) -> None:
        """Index the batch; returns once Elasticsearch holds every document's newest version
        or refused it for good (then the document is a dead letter, the rest is written).

        Raises:
            SearchIndexError: Documents were refused for back-pressure or a server error
                more than the retry policy's ``max_retries`` times in a row (the epoch
                then fails).
        """
        docs = batch_to_documents(items, allow_pii=self._allow_pii)
        if not len(docs):
            return
        actions = bulk_actions(docs, self._prefix)
        by_id = {(a["_index"], a["_id"]): a for a in actions}
        pending = actions
        refused: list[dict[str, Any]] = []
        delays = self._retry.delays()
        attempt = 0
        while pending:
            try:
                outcome = classify_bulk(
                    helpers.streaming_bulk(
                        self._client,
                        pending,
                        raise_on_error=False,
                        raise_on_exception=True,
                        yield_ok=False,
                        # Rejections for back-pressure (429) are retried per document.
                        max_retries=5,
                        initial_backoff=self._retry.initial_delay,
                        max_backoff=self._retry.max_delay,
                    )
                )
            except Exception as exc:
                if not _retryable(exc):
                    raise
                attempt += 1
                if self._retry.gives_up(attempt):
                    raise _unreachable(self._url, exc) from exc
                self._wait(next(delays), attempt, len(pending), exc)
                continue
            self.conflicts += outcome.conflicts
            refused += outcome.refused
            if not outcome.transient:
                break
            # Only the documents refused for back-pressure or a server error go again.
            pending = [
                by_id[(str(r.get("_index")), str(r.get("_id")))]
                for r in (next(iter(item.values())) for item in outcome.transient)
            ]
            attempt += 1
            first = next(iter(outcome.transient[0].values()))
            if self._retry.gives_up(attempt):
                raise SearchIndexError(
                    f"Elasticsearch kept refusing {len(pending)} of {len(actions)} search "
                    f"documents (first: {first.get('status')} {_error_text(first.get('error'))})",
                    outcome.transient,
                )
            self._wait(next(delays), attempt, len(pending), first.get("error"))
        if refused:
            self._dead_letter(refused_dead_letters(refused, actions))
        telemetry().items_written(
            "elasticsearch", {"tickets": len(docs.tickets), "kb_articles": len(docs.articles)}
        )

    def _wait(self, delay: float, attempt: int, documents: int, error: Any) -> None:
        telemetry().sink_retry("elasticsearch")
        log.warning(
            "search index write of %d documents failed (attempt %d): %s; retrying in %.1fs",
            documents,
            attempt,
            error,
            delay,
        )
        time.sleep(delay)

    def _dead_letter(self, letters: list[DeadLetter]) -> None:
        for letter in letters:
            log.error("Elasticsearch refused %s/%s: %s", letter.topic, letter.key, letter.reason)
        self._refusals.write(letters)

    def close(self) -> None:
        """Close the client (and the dead-letter connection) when the dataflow ends."""
        self._client.close()
        self._refusals.close()


class ElasticsearchSearchSink(DynamicSink[SearchItem]):
    """Index tickets and KB articles in Elasticsearch (``<prefix>-tickets``, ``<prefix>-kb``).

    Delivery guarantee: at-least-once from the flow, effectively-once in the index.
    Idempotency key: the document id (ticket id / article id) with the source LSN as its
    external version: only a strictly greater version replaces a document; conflicts from
    replays are ignored. A document refused for good becomes a dead letter (stage
    ``write_search``) and the rest of the batch is written. PII is masked in the indexed
    text unless ``allow_pii``.

    Args:
        url: Elasticsearch URL (``TRIAGE_ELASTICSEARCH__URL``).
        api_key: API key, if the cluster requires one.
        index_prefix: Prefix of the index (and template) names.
        allow_pii: Index e-mail addresses and phone numbers unmasked.
        request_timeout: Seconds per request.
        retry: Delays and limit of the retries after a connection or server error, and
            the delays of the bulk helper's per-document retries on back-pressure; by
            default (:data:`ELASTICSEARCH_RETRY`) it retries for as long as it takes (the
            flow stalls rather than drop documents).
        dead_letter_dsn: The analytics database, whose ``dead_letters`` table receives the
            documents Elasticsearch refuses; unset, they are logged and counted only.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        index_prefix: str = "triage",
        allow_pii: bool = False,
        request_timeout: float = 30.0,
        retry: RetryPolicy = ELASTICSEARCH_RETRY,
        dead_letter_dsn: str | None = None,
    ) -> None:
        self._url = url
        self._dead_letter_dsn = dead_letter_dsn
        self._api_key = api_key
        self._prefix = index_prefix
        self._allow_pii = allow_pii
        self._request_timeout = request_timeout
        self._retry = retry

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ElasticsearchPartition:
        """Connect this worker, check the cluster and put the templates and indices."""
        return _ElasticsearchPartition(
            self._url,
            api_key=self._api_key,
            prefix=self._prefix,
            allow_pii=self._allow_pii,
            request_timeout=self._request_timeout,
            retry=self._retry,
            dead_letter_dsn=self._dead_letter_dsn,
        )
