"""Search documents: what the ticket and knowledge-base search indexes hold, store-neutral.

Pure: a batch of the flow's enriched tickets and KB article changes becomes one document per
ticket and per article, the newest version of each. Both search sinks write these documents,
Elasticsearch (:mod:`sinks.search_es`) and PostgreSQL full-text search
(:mod:`sinks.search_pg`), so both indexes hold the same text under the same rules:

* ``version`` is the source LSN of the change; a store keeps a document only if no newer
  version of it is already stored.
* E-mail addresses and phone numbers in the indexed text are masked (:func:`mask_pii`)
  unless ``allow_pii`` is set. The rule covers KB articles too: the index cannot tell a
  customer's number from a published one.
* A deleted ticket, and a deleted or unpublished article, becomes a tombstone: the
  document stays with ``deleted`` set and its text emptied, so it is never found, and an
  older version replayed later still loses against the tombstone's version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from models.codecs import ticket_fields
from models.helpdesk import EnrichedTicket
from models.kb import KbArticle
from models.pii import mask_pii

SearchItem = EnrichedTicket | KbArticle
"""What the search sinks accept."""


@dataclass(frozen=True)
class TicketDocument:
    """A ticket as the search index holds it (text masked unless PII is allowed)."""

    ticket_id: int
    version: int
    deleted: bool
    subject: str
    description: str
    status: str
    priority: str
    category: str
    intent: str | None
    queue: str
    channel: str
    language: str
    customer_id: int
    customer_tier: str
    organization: str | None
    assigned_agent_id: int | None
    created_at: datetime
    updated_at: datetime | None
    solved_at: datetime | None


_TICKET_DOCUMENT_FIELDS = tuple(f.name for f in dataclasses.fields(TicketDocument))


@dataclass(frozen=True)
class KbDocument:
    """A knowledge-base article as the search index holds it."""

    article_id: int
    version: int
    deleted: bool
    title: str
    body: str
    category: str | None
    language: str
    updated_at: datetime | None


@dataclass(frozen=True)
class SearchDocuments:
    """One batch's documents, newest version per id, sorted by id."""

    tickets: list[TicketDocument]
    articles: list[KbDocument]

    def __len__(self) -> int:
        return len(self.tickets) + len(self.articles)


def _text(allow_pii: bool) -> Callable[[str], str]:
    return (lambda s: s) if allow_pii else mask_pii


def ticket_document(item: EnrichedTicket, *, allow_pii: bool = False) -> TicketDocument:
    """The search document of an enriched ticket; a delete gives a tombstone.

    Category, intent and priority are the flow's final values (a human label wins over the
    model's), the language is the detected one.
    """
    fields = ticket_fields(item, allow_pii=allow_pii)
    if fields["deleted"]:
        fields = {**fields, "subject": "", "description": ""}
    return TicketDocument(**{name: fields[name] for name in _TICKET_DOCUMENT_FIELDS})


def kb_document(article: KbArticle, *, allow_pii: bool = False) -> KbDocument:
    """The search document of a KB article; deleted or unpublished gives a tombstone."""
    hidden = article.deleted or not article.published
    text = _text(allow_pii)
    return KbDocument(
        article_id=article.id,
        version=article.version,
        deleted=hidden,
        title="" if hidden else text(article.title),
        body="" if hidden else text(article.body),
        category=article.category,
        language=article.language,
        updated_at=article.updated_at,
    )


def batch_to_documents(items: Iterable[SearchItem], *, allow_pii: bool = False) -> SearchDocuments:
    """Turn a batch into documents: the newest version per ticket and per article.

    Only the newest version is written because the stores would drop the older ones anyway
    (and PostgreSQL refuses to upsert one key twice in a statement); documents are sorted
    by id so that concurrent workers touch rows in the same order.

    Raises:
        TypeError: For an item that is neither an enriched ticket nor a KB article.
    """
    tickets: dict[int, EnrichedTicket] = {}
    articles: dict[int, KbArticle] = {}
    for item in items:
        if isinstance(item, EnrichedTicket):
            seen = tickets.get(item.ticket_id)
            if seen is None or item.version >= seen.version:
                tickets[item.ticket_id] = item
        elif isinstance(item, KbArticle):
            known = articles.get(item.id)
            if known is None or item.version >= known.version:
                articles[item.id] = item
        else:
            raise TypeError(f"search sinks cannot write {type(item).__name__}")
    return SearchDocuments(
        tickets=[ticket_document(tickets[k], allow_pii=allow_pii) for k in sorted(tickets)],
        articles=[kb_document(articles[k], allow_pii=allow_pii) for k in sorted(articles)],
    )
