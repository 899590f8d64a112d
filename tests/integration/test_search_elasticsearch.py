"""Search on a real Elasticsearch (only when ``TRIAGE_TEST_ELASTICSEARCH_URL`` points at one):
mappings, external versions, tombstones, multilingual stemming and the search API."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import elasticsearch
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from models.helpdesk import EnrichedTicket, Ticket
from models.kb import KbArticle
from sinks.migrations import apply_migrations
from sinks.search import SearchItem
from sinks.search_es import ElasticsearchSearchSink, index_names, ticket_mappings
from triage.runtime import SQL_DIR

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch]

ES_URL_VAR = "TRIAGE_TEST_ELASTICSEARCH_URL"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def es_url() -> str:
    url = os.environ.get(ES_URL_VAR)
    if not url:
        pytest.skip(f"set {ES_URL_VAR} to an Elasticsearch 8 URL to run")
    return url


@pytest.fixture
def prefix(es_url: str, unique: str) -> Iterator[str]:
    """A private index prefix; its indices and templates are removed afterwards."""
    name = f"test-{unique}"
    yield name
    client = elasticsearch.Elasticsearch(es_url)
    for index in index_names(name):
        client.options(ignore_status=404).indices.delete(index=index)
        client.options(ignore_status=404).indices.delete_index_template(name=index)
    client.close()


def ticket(
    ticket_id: int,
    version: int,
    subject: str,
    description: str = "",
    *,
    language: str = "en",
    op: str = "u",
    status: str = "open",
) -> EnrichedTicket:
    t = Ticket(
        ticket_id,
        7,
        subject,
        description,
        "email",
        status,
        None,
        None,
        None,
        None,
        T0,
        T0 + timedelta(seconds=version),
        None,
        None,
        None,
        version,
    )
    return EnrichedTicket(
        t, op, T0, "premium", language, language, 0.9, "high", (), "billing", "billing", T0
    )


def write(url: str, prefix: str, items: list[SearchItem]) -> None:
    part = ElasticsearchSearchSink(url, index_prefix=prefix).build("write_search", 0, 1)
    try:
        part.write_batch(items)
    finally:
        part.close()
    client = elasticsearch.Elasticsearch(url)
    client.indices.refresh(index=",".join(index_names(prefix)))
    client.close()


def source(url: str, index: str, doc_id: int) -> tuple[int, dict[str, Any]]:
    client = elasticsearch.Elasticsearch(url)
    try:
        found = client.get(index=index, id=str(doc_id))
        return found["_version"], found["_source"]
    finally:
        client.close()


@pytest.fixture
def api(es_url: str, prefix: str, pg_dsn: str, redis_url: str) -> Iterator[TestClient]:
    apply_migrations(pg_dsn, SQL_DIR / "analytics", schema="analytics")
    settings = ApiSettings(
        redis_url=redis_url,
        analytics_dsn=pg_dsn,
        elasticsearch_url=es_url,
        search_index_prefix=prefix,
        store_timeout_s=10,
        auth_required=False,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def found(api: TestClient, q: str, path: str = "tickets", **params: Any) -> list[int]:
    response = api.get(f"/v1/search/{path}", params={"q": q, **params})
    assert response.status_code == 200, response.text
    assert response.json()["source"] == "elasticsearch"
    key = "ticket_id" if path == "tickets" else "article_id"
    return [hit[key] for hit in response.json()["hits"]]


def test_indices_get_the_mapping(es_url: str, prefix: str) -> None:
    # Twice: the second start finds the indices and only puts the mapping again.
    for worker in (0, 1):
        sink = ElasticsearchSearchSink(es_url, index_prefix=prefix)
        sink.build("write_search", worker, 2).close()
    client = elasticsearch.Elasticsearch(es_url)
    tickets = index_names(prefix)[0]
    mapping = client.indices.get_mapping(index=tickets)[tickets]["mappings"]
    client.close()
    expected = ticket_mappings()["properties"]
    assert mapping["properties"]["subject"]["fields"] == expected["subject"]["fields"]
    assert mapping["properties"]["created_at"] == {"type": "date"}
    assert mapping["properties"]["status"] == {"type": "keyword"}


def test_external_versions_and_tombstones(es_url: str, prefix: str, api: TestClient) -> None:
    tickets = index_names(prefix)[0]
    write(es_url, prefix, [ticket(1, 20, "Printer jam", "call +1 555 123 4567")])
    write(es_url, prefix, [ticket(1, 10, "older"), ticket(1, 20, "replayed")])
    version, doc = source(es_url, tickets, 1)
    assert (version, doc["subject"], doc["description"]) == (20, "Printer jam", "call [phone]")
    assert found(api, "printer") == [1]
    write(es_url, prefix, [ticket(1, 30, "Printer jam", op="d")])
    write(es_url, prefix, [ticket(1, 25, "Printer jam")])  # late, older than the delete
    version, doc = source(es_url, tickets, 1)
    assert (version, doc["deleted"], doc["subject"]) == (30, True, "")
    assert found(api, "printer") == []


def test_multilingual_search_ranking_and_kb(es_url: str, prefix: str, api: TestClient) -> None:
    write(
        es_url,
        prefix,
        [
            ticket(1, 10, "Refund requested", "I was charged twice"),
            ticket(2, 10, "Rechnungen fehlen", "Meine Rechnung ist nicht da", language="de"),
            ticket(3, 10, "Facturas duplicadas", "La factura llegó dos veces", language="es"),
            ticket(4, 10, "Question", "Also my refund is late"),
            ticket(5, 10, "Printer", "refund", status="solved"),
            KbArticle(
                7,
                5,
                "Refund a double charge",
                "Request it on the billing page",
                None,
                "en",
                True,
                T0,
            ),
        ],
    )
    assert found(api, "refunds", status="open") == [1, 4]
    assert found(api, "Rechnung") == [2]
    assert found(api, "factura") == [3]
    assert found(api, "refund -twice", status="open") == [4]
    body = api.get("/v1/search/kb", params={"q": "refunds"}).json()
    assert [h["article_id"] for h in body["hits"]] == [7]
    assert "<mark>" in body["hits"][0]["title"]
