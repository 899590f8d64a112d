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
older version could then resurrect the document. Any other rejected document raises, which
fails the epoch; connection errors and unavailable clusters are retried with backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Any

import elasticsearch
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from elasticsearch import helpers

from models.telemetry import telemetry
from sinks.retry import backoff
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
        backoff_initial: float,
        backoff_max: float,
        max_retries: int | None,
    ) -> None:
        self._url = url
        self._prefix = prefix
        self._allow_pii = allow_pii
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._max_retries = max_retries
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
        """Index the batch; returns once Elasticsearch holds every document's newest version.

        Raises:
            SearchIndexError: When documents are refused for another reason than a
                version conflict (e.g. a mapping error); the epoch then fails.
        """
        docs = batch_to_documents(items, allow_pii=self._allow_pii)
        if not len(docs):
            return
        actions = bulk_actions(docs, self._prefix)
        delays = backoff(self._backoff_initial, self._backoff_max)
        attempt = 0
        while True:
            try:
                conflicts, errors = rejected(
                    helpers.streaming_bulk(
                        self._client,
                        actions,
                        raise_on_error=False,
                        raise_on_exception=True,
                        yield_ok=False,
                        # Rejections for back-pressure (429) are retried per document.
                        max_retries=5,
                        initial_backoff=self._backoff_initial,
                        max_backoff=self._backoff_max,
                    )
                )
                break
            except Exception as exc:
                if not _retryable(exc):
                    raise
                attempt += 1
                if self._max_retries is not None and attempt > self._max_retries:
                    raise _unreachable(self._url, exc) from exc
                telemetry().sink_retry("elasticsearch")
                delay = next(delays)
                log.warning(
                    "search index write of %d documents failed (attempt %d): %s; retrying in %.1fs",
                    len(actions),
                    attempt,
                    exc,
                    delay,
                )
                time.sleep(delay)
        self.conflicts += conflicts
        if errors:
            first = next(iter(errors[0].values()))
            raise SearchIndexError(
                f"Elasticsearch refused {len(errors)} of {len(actions)} search documents; "
                f"first: {first.get('_index')}/{first.get('_id')}: {first.get('error')}",
                errors,
            )
        telemetry().items_written(
            "elasticsearch", {"tickets": len(docs.tickets), "kb_articles": len(docs.articles)}
        )

    def close(self) -> None:
        """Close the client when the dataflow ends."""
        self._client.close()


class ElasticsearchSearchSink(DynamicSink[SearchItem]):
    """Index tickets and KB articles in Elasticsearch (``<prefix>-tickets``, ``<prefix>-kb``).

    Delivery guarantee: at-least-once from the flow, effectively-once in the index.
    Idempotency key: the document id (ticket id / article id) with the source LSN as its
    external version: only a strictly greater version replaces a document; conflicts from
    replays are ignored. PII is masked in the indexed text unless ``allow_pii``.

    Args:
        url: Elasticsearch URL (``TRIAGE_ELASTICSEARCH__URL``).
        api_key: API key, if the cluster requires one.
        index_prefix: Prefix of the index (and template) names.
        allow_pii: Index e-mail addresses and phone numbers unmasked.
        request_timeout: Seconds per request.
        backoff_initial: First retry delay after a connection error, in seconds.
        backoff_max: Longest retry delay, in seconds.
        max_retries: Give up after this many failed attempts of one batch; ``None``
            retries for as long as it takes (the flow stalls rather than drop documents).
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        index_prefix: str = "triage",
        allow_pii: bool = False,
        request_timeout: float = 30.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        max_retries: int | None = None,
    ) -> None:
        self._url = url
        self._api_key = api_key
        self._prefix = index_prefix
        self._allow_pii = allow_pii
        self._request_timeout = request_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._max_retries = max_retries

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ElasticsearchPartition:
        """Connect this worker, check the cluster and put the templates and indices."""
        return _ElasticsearchPartition(
            self._url,
            api_key=self._api_key,
            prefix=self._prefix,
            allow_pii=self._allow_pii,
            request_timeout=self._request_timeout,
            backoff_initial=self._backoff_initial,
            backoff_max=self._backoff_max,
            max_retries=self._max_retries,
        )
