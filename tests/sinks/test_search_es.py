"""The Elasticsearch search sink's requests, against an in-process fake of the REST API.

The fake speaks just enough of Elasticsearch 8 (product header, index templates, index
creation, mappings, ``_bulk`` with external versions) to check what the sink sends and how
it treats the answers: version conflicts ignored, documents refused for good turned into
dead letters while the rest is written, documents refused for a server error sent again,
an unavailable cluster retried, an unreachable one named by its setting. A real cluster is used by
``tests/integration/test_search_elasticsearch.py`` when one is configured.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from models.events import DeadLetter
from models.helpdesk import EnrichedTicket, Ticket
from models.kb import KbArticle
from sinks.retry import RetryPolicy
from sinks.search import KbDocument, SearchDocuments
from sinks.search_es import (
    ElasticsearchSearchSink,
    SearchIndexError,
    bulk_actions,
    classify_bulk,
    document_source,
    index_templates,
    kb_mappings,
    refused_dead_letters,
    rejected,
    ticket_mappings,
)
from triage.services import free_port

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def make_ticket(ticket_id: int, version: int, subject: str = "Refund") -> EnrichedTicket:
    ticket = Ticket(
        ticket_id,
        7,
        subject,
        "mail me: a@b.co",
        "email",
        "open",
        None,
        None,
        None,
        None,
        T0,
        None,
        None,
        None,
        None,
        version,
    )
    return EnrichedTicket(
        ticket, "u", T0, "premium", "en", "en", 0.9, "high", (), "billing", "billing", T0
    )


def make_article(article_id: int, version: int) -> KbArticle:
    return KbArticle(article_id, version, "Refunds", "How to", "billing", "en", True, T0)


class FakeElasticsearch:
    """State and request log of the fake cluster."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.indices: dict[str, dict[str, Any]] = {}
        self.templates: dict[str, dict[str, Any]] = {}
        self.docs: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self.unavailable = 0  # answer this many next _bulk requests with 503
        self.refuse_ids: set[str] = set()  # answer 400 for these document ids
        self.fail_ids: dict[str, int] = {}  # answer 500 for these ids, this many times

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        path = path.split("?")[0]
        if path == "/_bulk":
            lines = [json.loads(line) for line in body.decode().splitlines() if line]
            self.requests.append((method, path, lines))
            return self._bulk(lines)
        payload = json.loads(body) if body else None
        self.requests.append((method, path, payload))
        parts = path.strip("/").split("/")
        if method == "GET" and path == "/":
            return 200, {
                "version": {"number": "8.15.3", "build_flavor": "default"},
                "tagline": "You Know, for Search",
            }
        if method == "PUT" and parts[0] == "_index_template":
            self.templates[parts[1]] = payload
            return 200, {"acknowledged": True}
        if method == "PUT" and len(parts) == 1:
            if parts[0] in self.indices:
                error = {"type": "resource_already_exists_exception", "reason": "exists"}
                return 400, {"error": {**error, "root_cause": [error]}, "status": 400}
            self.indices[parts[0]] = payload
            return 200, {"acknowledged": True, "index": parts[0]}
        if method == "PUT" and len(parts) == 2 and parts[1] == "_mapping":
            return 200, {"acknowledged": True}
        return 404, {"error": {"type": "not_found", "reason": path}, "status": 404}

    def _bulk(self, lines: list[dict[str, Any]]) -> tuple[int, Any]:
        if self.unavailable:
            self.unavailable -= 1
            error = {"type": "cluster_block_exception", "reason": "unavailable"}
            return 503, {"error": {**error, "root_cause": [error]}, "status": 503}
        items = []
        for action, source in zip(lines[::2], lines[1::2], strict=True):
            meta = action["index"]
            key = (meta["_index"], meta["_id"])
            assert meta["version_type"] == "external"
            stored = self.docs.get(key)
            result: dict[str, Any] = {"_index": key[0], "_id": key[1]}
            if meta["_id"] in self.refuse_ids:
                result |= {
                    "status": 400,
                    "error": {"type": "document_parsing_exception", "reason": "bad field"},
                }
            elif self.fail_ids.get(meta["_id"], 0) > 0:
                self.fail_ids[meta["_id"]] -= 1
                result |= {"status": 500, "error": {"type": "exception", "reason": "shard failure"}}
            elif stored is not None and stored[0] >= meta["version"]:
                result |= {
                    "status": 409,
                    "error": {"type": "version_conflict_engine_exception", "reason": "conflict"},
                }
            else:
                self.docs[key] = (meta["version"], source)
                result |= {"status": 201 if stored is None else 200, "result": "created"}
            items.append({"index": result})
        errors = any(i["index"]["status"] >= 300 for i in items)
        return 200, {"took": 1, "errors": errors, "items": items}


@pytest.fixture
def fake_es() -> Iterator[tuple[FakeElasticsearch, str]]:
    fake = FakeElasticsearch()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, payload = fake.handle(self.command, self.path, self.rfile.read(length))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("X-Elastic-Product", "Elasticsearch")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_mappings_are_language_aware_text_with_keywords_dates_and_ids() -> None:
    subject = ticket_mappings()["properties"]["subject"]
    assert subject == {
        "type": "text",
        "analyzer": "standard",
        "fields": {
            "en": {"type": "text", "analyzer": "english"},
            "de": {"type": "text", "analyzer": "german"},
            "fr": {"type": "text", "analyzer": "french"},
            "es": {"type": "text", "analyzer": "spanish"},
            "keyword": {"type": "keyword", "ignore_above": 256},
        },
    }
    props = ticket_mappings()["properties"]
    assert "keyword" not in props["description"]["fields"]
    assert {props[f]["type"] for f in ("status", "category", "queue", "language")} == {"keyword"}
    assert {props[f]["type"] for f in ("created_at", "updated_at", "solved_at")} == {"date"}
    assert (props["ticket_id"], props["version"], props["deleted"]) == (
        {"type": "long"},
        {"type": "long"},
        {"type": "boolean"},
    )
    assert kb_mappings()["properties"]["title"] == subject
    # Every document field is mapped.
    docs = SearchDocuments([], [KbDocument(1, 2, False, "t", "b", None, "en", T0)])
    assert set(document_source(docs.articles[0])) == set(kb_mappings()["properties"])


def test_index_templates_match_their_index_only() -> None:
    templates = index_templates("acme")
    assert sorted(templates) == ["acme-kb", "acme-tickets"]
    assert templates["acme-tickets"]["index_patterns"] == ["acme-tickets"]
    assert templates["acme-tickets"]["template"] == {"mappings": ticket_mappings()}


def test_bulk_actions_carry_the_lsn_as_external_version() -> None:
    doc = KbDocument(7, 1042, False, "Refunds", "How to", "billing", "en", T0)
    assert bulk_actions(SearchDocuments([], [doc]), "triage") == [
        {
            "_op_type": "index",
            "_index": "triage-kb",
            "_id": "7",
            "version": 1042,
            "version_type": "external",
            "_source": {
                "article_id": 7,
                "version": 1042,
                "deleted": False,
                "title": "Refunds",
                "body": "How to",
                "category": "billing",
                "language": "en",
                "updated_at": "2026-03-02T09:00:00+00:00",
            },
        }
    ]


def test_rejected_ignores_conflicts_only() -> None:
    results = iter(
        [
            (True, {"index": {"status": 201}}),
            (False, {"index": {"status": 409, "_id": "1"}}),
            (False, {"index": {"status": 400, "_id": "2"}}),
        ]
    )
    assert rejected(results) == (1, [{"index": {"status": 400, "_id": "2"}}])


def test_start_up_puts_templates_and_creates_indices(
    fake_es: tuple[FakeElasticsearch, str],
) -> None:
    fake, url = fake_es
    ElasticsearchSearchSink(url, index_prefix="t1").build("write_search", 0, 1).close()
    assert sorted(fake.templates) == ["t1-kb", "t1-tickets"]
    assert fake.indices["t1-tickets"] == {"mappings": ticket_mappings()}
    # A second worker (or run) finds the indices and only adds fields.
    ElasticsearchSearchSink(url, index_prefix="t1").build("write_search", 1, 2).close()
    assert ("PUT", "/t1-tickets/_mapping", ticket_mappings()) in fake.requests


def test_writes_newest_versions_and_ignores_conflicts(
    fake_es: tuple[FakeElasticsearch, str],
) -> None:
    fake, url = fake_es
    part = ElasticsearchSearchSink(url).build("write_search", 0, 1)
    part.write_batch([make_ticket(1, 20, "new"), make_ticket(1, 10, "old"), make_article(7, 5)])
    bulk = [r[2] for r in fake.requests if r[1] == "/_bulk"]
    assert bulk[0][0] == {
        "index": {"_index": "triage-tickets", "_id": "1", "version": 20, "version_type": "external"}
    }
    assert bulk[0][1]["subject"] == "new" and bulk[0][1]["description"] == "mail me: [email]"
    assert len(bulk[0]) == 4  # the older copy of ticket 1 is not sent
    # A replay and a late older version are refused by Elasticsearch and ignored here.
    part.write_batch([make_ticket(1, 20, "new"), make_ticket(1, 15, "late")])
    assert fake.docs[("triage-tickets", "1")][0] == 20
    assert fake.docs[("triage-tickets", "1")][1]["subject"] == "new"
    assert part.conflicts == 1
    part.close()


class _DeadLetterRecorder:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def write(self, letters: list[DeadLetter]) -> None:
        self.letters.extend(letters)

    def close(self) -> None:
        pass


def test_refused_documents_become_dead_letters_and_the_rest_is_written(
    fake_es: tuple[FakeElasticsearch, str],
) -> None:
    fake, url = fake_es
    fake.refuse_ids = {"2"}
    sink = ElasticsearchSearchSink(url, dead_letter_dsn="postgresql://unused")
    part = sink.build("write_search", 0, 1)
    part._refusals._writer = recorder = _DeadLetterRecorder()
    part.write_batch([make_ticket(1, 10), make_ticket(2, 11), make_ticket(3, 12)])
    assert sorted(k[1] for k in fake.docs) == ["1", "3"]
    (letter,) = recorder.letters
    assert (letter.stage, letter.topic, letter.key) == ("write_search", "triage-tickets", "2")
    assert letter.reason == "elasticsearch 400 document_parsing_exception: bad field"
    assert letter.position.lsn == 11
    assert json.loads(letter.payload or "")["ticket_id"] == 2
    # The pipeline goes on: the next batch is written as usual.
    part.write_batch([make_ticket(4, 13)])
    assert ("triage-tickets", "4") in fake.docs
    part.close()


def test_without_a_dead_letter_store_refusals_are_logged_not_raised(
    fake_es: tuple[FakeElasticsearch, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = fake_es
    fake.refuse_ids = {"2"}
    part = ElasticsearchSearchSink(url).build("write_search", 0, 1)
    part.write_batch([make_ticket(1, 10), make_ticket(2, 11)])
    assert ("triage-tickets", "1") in fake.docs
    assert "Elasticsearch refused triage-tickets/2" in caplog.text
    part.close()


def test_documents_refused_for_a_server_error_are_sent_again_alone(
    fake_es: tuple[FakeElasticsearch, str],
) -> None:
    fake, url = fake_es
    fake.fail_ids = {"2": 2}
    part = ElasticsearchSearchSink(url, retry=RetryPolicy(initial_delay=0.01)).build(
        "write_search", 0, 1
    )
    part.write_batch([make_ticket(1, 10), make_ticket(2, 11)])
    assert fake.docs[("triage-tickets", "2")][0] == 11
    bulks = [r[2] for r in fake.requests if r[1] == "/_bulk"]
    assert [len(b) // 2 for b in bulks] == [2, 1, 1]
    part.close()


def test_server_errors_give_up_after_max_retries(fake_es: tuple[FakeElasticsearch, str]) -> None:
    fake, url = fake_es
    fake.fail_ids = {"1": 100}
    sink = ElasticsearchSearchSink(url, retry=RetryPolicy(initial_delay=0.01, max_retries=2))
    part = sink.build("write_search", 0, 1)
    with pytest.raises(SearchIndexError, match="kept refusing 1 of 1") as caught:
        part.write_batch([make_ticket(1, 10)])
    assert "shard failure" in str(caught.value)
    part.close()


def test_bulk_errors_are_sorted_by_what_to_do() -> None:
    outcome = classify_bulk(
        [
            (True, {"index": {"status": 200}}),
            (False, {"index": {"status": 409, "_id": "1"}}),
            (False, {"index": {"status": 429, "_id": "2"}}),
            (False, {"index": {"status": 503, "_id": "3"}}),
            (False, {"index": {"status": 400, "_id": "4"}}),
            (False, {"index": {"status": 413, "_id": "5"}}),
        ]
    )
    assert outcome.conflicts == 1
    assert [i["index"]["_id"] for i in outcome.transient] == ["2", "3"]
    assert [i["index"]["_id"] for i in outcome.refused] == ["4", "5"]


def test_refusal_reasons_and_documents_are_read_from_the_bulk_response() -> None:
    actions = bulk_actions(
        SearchDocuments([], [KbDocument(7, 1042, False, "R\x00", "é", "b", "en", None)]),
        "triage",
    )
    item = {
        "index": {
            "_index": "triage-kb",
            "_id": "7",
            "status": 400,
            "error": {
                "type": "mapper_parsing_exception",
                "reason": "failed to parse field [updated_at]",
                "caused_by": {"type": "illegal_argument_exception", "reason": "bad date"},
            },
        }
    }
    unknown = {"index": {"_index": "triage-kb", "_id": "8", "status": 400, "error": "gone"}}
    letter, orphan = refused_dead_letters([item, unknown], actions, now=T0)
    assert letter.reason == (
        "elasticsearch 400 mapper_parsing_exception: failed to parse field [updated_at] "
        "(caused by illegal_argument_exception: bad date)"
    )
    assert (letter.stage, letter.topic, letter.key, letter.failed_at) == (
        "write_search",
        "triage-kb",
        "7",
        T0,
    )
    assert letter.position.lsn == 1042
    # The payload is ASCII JSON: no NUL or non-ASCII byte reaches the dead-letter store.
    assert letter.payload is not None and letter.payload.isascii()
    assert json.loads(letter.payload)["body"] == "é"
    assert (orphan.key, orphan.payload, orphan.reason) == ("8", None, "elasticsearch 400 gone")


def test_unavailable_cluster_is_retried(fake_es: tuple[FakeElasticsearch, str]) -> None:
    fake, url = fake_es
    # More 503s than the client's own retries (3 attempts per request): the sink retries.
    fake.unavailable = 4
    part = ElasticsearchSearchSink(url, retry=RetryPolicy(initial_delay=0.01)).build(
        "write_search", 0, 1
    )
    part.write_batch([make_ticket(1, 10)])
    assert fake.docs[("triage-tickets", "1")][0] == 10
    assert sum(r[1] == "/_bulk" for r in fake.requests) == 5


def test_retries_give_up_after_max_retries(fake_es: tuple[FakeElasticsearch, str]) -> None:
    fake, url = fake_es
    fake.unavailable = 100
    sink = ElasticsearchSearchSink(url, retry=RetryPolicy(initial_delay=0.01, max_retries=1))
    part = sink.build("write_search", 0, 1)
    with pytest.raises(RuntimeError, match="TRIAGE_ELASTICSEARCH__URL"):
        part.write_batch([make_ticket(1, 10)])
    assert sum(r[1] == "/_bulk" for r in fake.requests) == 6
    part.close()


def test_unreachable_cluster_fails_at_start_up_naming_the_setting() -> None:
    sink = ElasticsearchSearchSink(f"http://127.0.0.1:{free_port()}", request_timeout=2)
    with pytest.raises(RuntimeError, match="TRIAGE_ELASTICSEARCH__URL"):
        sink.build("write_search", 0, 1)
