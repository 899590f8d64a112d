"""Ticket and knowledge-base search: Elasticsearch when configured, else PostgreSQL FTS.

Both stores hold the documents the pipeline's search sink writes (PII masked unless the
pipeline allows it; deleted tickets and deleted or unpublished articles as tombstones that
are never returned). Index names, table names and the language list mirror the sinks'
(``sinks/search_es.py``, ``sinks/search_pg.py``), which the API may not import.

Queries use web-search syntax on both stores: words are ANDed, ``"quoted phrases"``,
``-excluded`` words and ``or`` between alternatives. Snippets are HTML-escaped text with the
matches in ``<mark>`` tags.

PostgreSQL: each row is matched and ranked (``ts_rank_cd``, subject/title words weighing
more than the body's) with the query parsed in the row's own text search configuration,
the one its language was indexed with. The GIN index is used through a constant prefilter:
the query parsed with every configuration and ORed, a superset of the exact matches.

Kept as one module: the Elasticsearch and PostgreSQL paths serve the same routes
and response models and must rank and highlight alike.
"""

from __future__ import annotations

import html
import logging
import re
import unicodedata
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

import elasticsearch
import psycopg
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, Field

from api.deps import PgPoolDep, SettingsDep
from api.schemas import ErrorPublic
from api.settings import ApiSettings

log = logging.getLogger(__name__)

TEXT_SEARCH_CONFIGS = ("english", "german", "french", "spanish", "simple")
"""Every configuration ``sinks/search_pg.py`` indexes rows with."""
ES_LANGUAGES = ("en", "de", "fr", "es")
"""Language subfields of the Elasticsearch text fields (``sinks/search_es.py``)."""
TicketStatus = Literal["new", "open", "pending", "on_hold", "solved", "closed"]

# Private-use characters mark matches inside ts_headline's output; the snippet is then
# HTML-escaped and they become <mark> tags, so ticket text can never inject markup.
_START, _STOP = "\ue000", "\ue001"
_SUBJECT_HEADLINE = f"StartSel={_START}, StopSel={_STOP}, HighlightAll=true"
# One passage of 12 to 30 words around the best match: a short description whole.
_BODY_HEADLINE = f"StartSel={_START}, StopSel={_STOP}, MaxWords=30, MinWords=12"
_FRAGMENT_SIZE = 150
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# At least one character that is neither white space nor a control character: what
# clean_query leaves must not be empty.
_HAS_TEXT = r"[^\s\x00-\x1f\x7f]"
SearchText = Annotated[
    str,
    Query(
        min_length=1,
        max_length=256,
        pattern=_HAS_TEXT,
        description=(
            'Web-search syntax: words (all must match), "a phrase", -exclude, or. '
            "Control characters are ignored."
        ),
        examples=["refund double charge"],
    ),
]
Limit = Annotated[int, Query(ge=1, le=100, description="Most hits to return")]
Category = Annotated[
    str | None,
    Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="e.g. billing"),
]
Language = Annotated[
    str | None, Query(pattern=r"^[a-z]{2,3}$", description="ISO 639-1 code, e.g. de")
]
SearchSource = Literal["elasticsearch", "analytics"]


class TicketHitPublic(BaseModel):
    """A ticket matching the query."""

    ticket_id: int
    score: float = Field(description="Relevance; comparable only within one response")
    subject: str = Field(description="HTML-escaped subject, matches in <mark>")
    snippet: str = Field(description="HTML-escaped best passages of the description")
    status: str
    priority: str
    category: str
    intent: str | None
    queue: str
    language: str
    customer_tier: str
    assigned_agent_id: int | None
    created_at: datetime
    updated_at: datetime | None


class TicketSearchPublic(BaseModel):
    """Tickets matching a query, best first."""

    query: str
    count: int = Field(description="Hits in this response")
    hits: list[TicketHitPublic]
    source: SearchSource = Field(description="Store that answered")


class KbHitPublic(BaseModel):
    """A published knowledge-base article matching the query."""

    article_id: int
    score: float = Field(description="Relevance; comparable only within one response")
    title: str = Field(description="HTML-escaped title, matches in <mark>")
    snippet: str = Field(description="HTML-escaped best passages of the body")
    category: str | None
    language: str
    updated_at: datetime | None


class KbSearchPublic(BaseModel):
    """Knowledge-base articles matching a query, best first."""

    query: str
    count: int
    hits: list[KbHitPublic]
    source: SearchSource


@asynccontextmanager
async def _elasticsearch_client(app: FastAPI) -> AsyncIterator[None]:
    """Open an Elasticsearch client when the API is configured with one (router lifespan).

    Runs inside the app's own lifespan, so the settings are already on ``app.state``.
    """
    settings: ApiSettings = app.state.settings
    client = None
    if settings.elasticsearch_url:
        api_key = settings.elasticsearch_api_key
        client = elasticsearch.Elasticsearch(
            settings.elasticsearch_url,
            api_key=api_key.get_secret_value() if api_key is not None else None,
            request_timeout=settings.store_timeout_s,
            max_retries=1,
        )
    app.state.search_client = client
    try:
        yield
    finally:
        if client is not None:
            client.close()


router = APIRouter(prefix="/v1/search", tags=["search"], lifespan=_elasticsearch_client)


def clean_query(text: str) -> str:
    """The query with control characters blanked and surrounding space removed.

    Control characters (a pasted tab-separated line, a stray escape) are read as word
    breaks rather than refused. Raises a 422 when nothing is left.
    """
    cleaned = _CONTROL.sub(" ", unicodedata.normalize("NFC", text)).strip()
    if not cleaned:
        raise HTTPException(status_code=422, detail="q must contain a word")
    return cleaned


def _marked(snippet: str | None) -> str:
    """Escape ts_headline output and turn its match markers into ``<mark>`` tags."""
    escaped = html.escape(snippet or "", quote=False)
    return escaped.replace(_START, "<mark>").replace(_STOP, "</mark>")


# --- PostgreSQL full-text search -----------------------------------------------------------

_PG_SEARCH = """
WITH parsed AS (
    SELECT config, websearch_to_tsquery(config, {q}) AS query
    FROM unnest({configs}::regconfig[]) AS config
), prefilter AS (
    SELECT string_agg(DISTINCT '(' || query::text || ')', ' | ')::tsquery AS query
    FROM parsed
    WHERE numnode(query) > 0
), hits AS (
    SELECT d.*, parsed.query, ts_rank_cd(d.document, parsed.query) AS score
    FROM {table} AS d
    JOIN parsed ON parsed.config = d.search_config
    CROSS JOIN prefilter
    WHERE d.document @@ prefilter.query AND d.document @@ parsed.query AND NOT d.deleted
      {filters}
    ORDER BY score DESC, {key} DESC
    LIMIT {limit}
)
SELECT {columns}, score,
       ts_headline(search_config, {title}, query, {title_options}) AS title_marked,
       ts_headline(search_config, {body}, query, {body_options}) AS body_marked
FROM hits
ORDER BY score DESC, {key} DESC
"""

_TICKET_COLUMNS = (
    "ticket_id",
    "status",
    "priority",
    "category",
    "intent",
    "queue",
    "language",
    "customer_tier",
    "assigned_agent_id",
    "created_at",
    "updated_at",
)
_KB_COLUMNS = ("article_id", "category", "language", "updated_at")


def _pg_search(
    *,
    pool: ConnectionPool[Any],
    schema: str,
    table: str,
    key: str,
    columns: tuple[str, ...],
    title: str,
    body: str,
    q: str,
    filters: Mapping[str, str | None],
    limit: int,
) -> list[dict[str, Any]]:
    active = {column: value for column, value in filters.items() if value is not None}
    statement = sql.SQL(_PG_SEARCH).format(
        configs=sql.Placeholder("configs"),
        q=sql.Placeholder("q"),
        table=sql.Identifier(schema, table),
        filters=sql.SQL(" ").join(
            sql.SQL("AND d.{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in active
        ),
        key=sql.Identifier(key),
        limit=sql.Placeholder("limit"),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        title=sql.Identifier(title),
        body=sql.Identifier(body),
        title_options=sql.Placeholder("title_options"),
        body_options=sql.Placeholder("body_options"),
    )
    params = {
        "configs": list(TEXT_SEARCH_CONFIGS),
        "q": q,
        "limit": limit,
        "title_options": _SUBJECT_HEADLINE,
        "body_options": _BODY_HEADLINE,
        **active,
    }
    try:
        with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(statement, params).fetchall()
    except psycopg.errors.UndefinedTable as exc:
        raise HTTPException(
            status_code=503,
            detail=f"search table {schema}.{table} missing: apply the analytics migrations",
        ) from exc


def search_tickets_pg(
    *,
    pool: ConnectionPool[Any],
    schema: str,
    q: str,
    status: str | None,
    category: str | None,
    limit: int,
) -> list[TicketHitPublic]:
    """Tickets matching ``q`` in ``analytics.ticket_search``, best first."""
    rows = _pg_search(
        pool=pool,
        schema=schema,
        table="ticket_search",
        key="ticket_id",
        columns=_TICKET_COLUMNS,
        title="subject",
        body="description",
        q=q,
        filters={"status": status, "category": category},
        limit=limit,
    )
    return [
        TicketHitPublic(
            **{c: row[c] for c in _TICKET_COLUMNS},
            score=row["score"],
            subject=_marked(row["title_marked"]),
            snippet=_marked(row["body_marked"]),
        )
        for row in rows
    ]


def search_kb_pg(
    *,
    pool: ConnectionPool[Any],
    schema: str,
    q: str,
    language: str | None,
    category: str | None,
    limit: int,
) -> list[KbHitPublic]:
    """Published articles matching ``q`` in ``analytics.kb_search``, best first."""
    rows = _pg_search(
        pool=pool,
        schema=schema,
        table="kb_search",
        key="article_id",
        columns=_KB_COLUMNS,
        title="title",
        body="body",
        q=q,
        filters={"language": language, "category": category},
        limit=limit,
    )
    return [
        KbHitPublic(
            **{c: row[c] for c in _KB_COLUMNS},
            score=row["score"],
            title=_marked(row["title_marked"]),
            snippet=_marked(row["body_marked"]),
        )
        for row in rows
    ]


# --- Elasticsearch -------------------------------------------------------------------------


def _text_fields(field: str, boost: int) -> list[str]:
    """The field and its language subfields, e.g. ``subject^3``, ``subject.en^3``."""
    return [f"{field}^{boost}"] + [f"{field}.{lang}^{boost}" for lang in ES_LANGUAGES]


def es_search_body(
    *,
    q: str,
    title: str,
    body: str,
    filters: Mapping[str, str | None],
    limit: int,
    key: str,
) -> dict[str, Any]:
    """The search request for an index of search documents (keyword arguments of
    ``Elasticsearch.search``).

    ``simple_query_string`` accepts the same web-search syntax as PostgreSQL's
    ``websearch_to_tsquery`` and never fails on malformed input; words are ANDed. A word
    matches in the standard-analysed field or in any language subfield (stemmed).
    """
    terms: list[dict[str, Any]] = [{"term": {"deleted": False}}]
    terms += [{"term": {field: value}} for field, value in filters.items() if value is not None]
    highlighted = {f: {"number_of_fragments": 0} for f in _text_fields(title, 1)}
    highlighted |= {
        f: {"fragment_size": _FRAGMENT_SIZE, "number_of_fragments": 2}
        for f in _text_fields(body, 1)
    }
    return {
        "query": {
            "bool": {
                "must": [
                    {
                        "simple_query_string": {
                            "query": q,
                            "fields": _text_fields(title, 3) + _text_fields(body, 1),
                            "default_operator": "and",
                            "lenient": True,
                        }
                    }
                ],
                "filter": terms,
            }
        },
        "highlight": {
            "encoder": "html",
            "pre_tags": ["<mark>"],
            "post_tags": ["</mark>"],
            "fields": {f.split("^")[0]: options for f, options in highlighted.items()},
        },
        "sort": [{"_score": "desc"}, {key: "desc"}],
        "size": limit,
        "track_scores": True,
        "track_total_hits": False,
    }


def _es_highlight(hit: Mapping[str, Any], field: str, fallback: str) -> str:
    """The first highlight among the field and its language subfields, else the text."""
    found = hit.get("highlight") or {}
    for name in [field] + [f"{field}.{lang}" for lang in ES_LANGUAGES]:
        if found.get(name):
            return " … ".join(found[name])
    return html.escape(fallback[: _FRAGMENT_SIZE * 2], quote=False)


def _es_search(request: Request, *, index: str, body: dict[str, Any]) -> list[Mapping[str, Any]]:
    client: elasticsearch.Elasticsearch = request.app.state.search_client
    try:
        response = client.search(index=index, **body)
    except elasticsearch.NotFoundError as exc:
        raise HTTPException(
            status_code=503,
            detail=f"search index {index} missing: start the pipeline with "
            "TRIAGE_ELASTICSEARCH__URL set to create it",
        ) from exc
    except (elasticsearch.TransportError, elasticsearch.ApiError) as exc:
        log.warning("elasticsearch unavailable for search on %s: %s", index, exc)
        raise HTTPException(
            status_code=503, detail=f"store unavailable: {type(exc).__name__}"
        ) from exc
    hits: list[Mapping[str, Any]] = response["hits"]["hits"]
    return hits


def search_tickets_es(
    request: Request,
    *,
    prefix: str,
    q: str,
    status: str | None,
    category: str | None,
    limit: int,
) -> list[TicketHitPublic]:
    """Tickets matching ``q`` in the ``<prefix>-tickets`` index, best first."""
    body = es_search_body(
        q=q,
        title="subject",
        body="description",
        filters={"status": status, "category": category},
        limit=limit,
        key="ticket_id",
    )
    out = []
    for hit in _es_search(request, index=f"{prefix}-tickets", body=body):
        src = hit["_source"]
        out.append(
            TicketHitPublic(
                **{c: src.get(c) for c in _TICKET_COLUMNS},
                score=hit.get("_score") or 0.0,
                subject=_es_highlight(hit, "subject", src.get("subject", "")),
                snippet=_es_highlight(hit, "description", src.get("description", "")),
            )
        )
    return out


def search_kb_es(
    request: Request,
    *,
    prefix: str,
    q: str,
    language: str | None,
    category: str | None,
    limit: int,
) -> list[KbHitPublic]:
    """Published articles matching ``q`` in the ``<prefix>-kb`` index, best first."""
    body = es_search_body(
        q=q,
        title="title",
        body="body",
        filters={"language": language, "category": category},
        limit=limit,
        key="article_id",
    )
    out = []
    for hit in _es_search(request, index=f"{prefix}-kb", body=body):
        src = hit["_source"]
        out.append(
            KbHitPublic(
                **{c: src.get(c) for c in _KB_COLUMNS},
                score=hit.get("_score") or 0.0,
                title=_es_highlight(hit, "title", src.get("title", "")),
                snippet=_es_highlight(hit, "body", src.get("body", "")),
            )
        )
    return out


# --- Routes --------------------------------------------------------------------------------

_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"description": "Invalid query or filter"},
    503: {"model": ErrorPublic, "description": "The search store is unavailable"},
}


@router.get(
    "/tickets",
    response_model=TicketSearchPublic,
    summary="Search tickets",
    description=(
        "Full-text search over ticket subjects and descriptions in every supported language "
        "(stemmed: 'refunds' finds 'refund'), best match first, with highlighted snippets. "
        "Elasticsearch when the API is configured with one, else PostgreSQL full-text search."
    ),
    responses=_ERRORS,
)
def search_tickets(
    request: Request,
    q: SearchText,
    pool: PgPoolDep,
    settings: SettingsDep,
    status: Annotated[TicketStatus | None, Query(description="Only this status")] = None,
    category: Category = None,
    limit: Limit = 20,
) -> TicketSearchPublic:
    text = clean_query(q)
    hits: list[TicketHitPublic]
    if request.app.state.search_client is not None:
        hits = search_tickets_es(
            request,
            prefix=settings.search_index_prefix,
            q=text,
            status=status,
            category=category,
            limit=limit,
        )
        source: SearchSource = "elasticsearch"
    else:
        hits = search_tickets_pg(
            pool=pool,
            schema=settings.analytics_schema,
            q=text,
            status=status,
            category=category,
            limit=limit,
        )
        source = "analytics"
    return TicketSearchPublic(query=text, count=len(hits), hits=hits, source=source)


@router.get(
    "/kb",
    response_model=KbSearchPublic,
    summary="Search knowledge-base articles",
    description=(
        "Full-text search over published article titles and bodies, best match first, with "
        "highlighted snippets. Same stores and query syntax as ticket search."
    ),
    responses=_ERRORS,
)
def search_kb(
    request: Request,
    q: SearchText,
    pool: PgPoolDep,
    settings: SettingsDep,
    language: Language = None,
    category: Category = None,
    limit: Limit = 20,
) -> KbSearchPublic:
    text = clean_query(q)
    hits: list[KbHitPublic]
    if request.app.state.search_client is not None:
        hits = search_kb_es(
            request,
            prefix=settings.search_index_prefix,
            q=text,
            language=language,
            category=category,
            limit=limit,
        )
        source: SearchSource = "elasticsearch"
    else:
        hits = search_kb_pg(
            pool=pool,
            schema=settings.analytics_schema,
            q=text,
            language=language,
            category=category,
            limit=limit,
        )
        source = "analytics"
    return KbSearchPublic(query=text, count=len(hits), hits=hits, source=source)
