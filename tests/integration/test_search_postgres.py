"""PostgreSQL full-text search: the sink's tables, versions, tombstones, multilingual stemming,
ranking and PII, the search API over them, and the triage flow feeding them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main
from fastapi.testclient import TestClient
from psycopg import sql

from api.app import create_app
from api.settings import ApiSettings
from connectors.debezium import encode_envelope, encode_key
from models.events import RawChange, SourcePosition
from models.helpdesk import EnrichedTicket, Ticket
from models.kb import KbArticle
from pipelines.flow import build_flow
from pipelines.settings import PipelineSettings
from sinks.migrations import apply_migrations
from sinks.search import SearchItem
from sinks.search_pg import PostgresSearchSink
from triage.runtime import SQL_DIR
from triage.services import free_port

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def ticket(
    ticket_id: int,
    version: int,
    subject: str,
    description: str = "",
    *,
    language: str = "en",
    status: str = "open",
    category: str = "billing",
    op: str = "u",
) -> EnrichedTicket:
    t = Ticket(
        id=ticket_id,
        customer_id=7,
        subject=subject,
        description=description,
        channel="email",
        status=status,
        priority=None,
        category=None,
        intent=None,
        assigned_agent_id=None,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=version),
        first_reply_at=None,
        solved_at=None,
        csat=None,
        version=version,
    )
    return EnrichedTicket(
        ticket=t,
        op=op,
        committed_at=T0,
        customer_tier="standard",
        customer_language=language,
        language=language,
        language_confidence=0.9,
        priority="normal",
        priority_reasons=(),
        category=category,
        queue=category,
        enriched_at=T0,
    )


def article(article_id: int, version: int, title: str, body: str, **changes: Any) -> KbArticle:
    return replace(
        KbArticle(article_id, version, title, body, "billing", "en", True, T0), **changes
    )


@pytest.fixture
def analytics_dsn(pg_dsn: str) -> str:
    apply_migrations(pg_dsn, SQL_DIR / "analytics", schema="analytics")
    return pg_dsn


def write(dsn: str, items: Sequence[SearchItem], *, allow_pii: bool = False) -> None:
    part = PostgresSearchSink(dsn, allow_pii=allow_pii).build("write_search", 0, 1)
    try:
        part.write_batch(list(items))
    finally:
        part.close()


def row(dsn: str, table: str, key: str, value: int) -> dict[str, Any] | None:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(
            sql.SQL("SELECT *, document::text AS lexemes FROM {} WHERE {} = %s").format(
                sql.Identifier("analytics", table), sql.Identifier(key)
            ),
            (value,),
        )
        found = cur.fetchone()
        if found is None:
            return None
        return dict(zip([c.name for c in cur.description or ()], found, strict=True))


@pytest.fixture
def settings(analytics_dsn: str, redis_url: str, unique: str) -> ApiSettings:
    return ApiSettings(
        redis_url=redis_url,
        analytics_dsn=analytics_dsn,
        key_prefix=f"t{unique}",
        auth_required=False,
    )


@pytest.fixture
def api(settings: ApiSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def found(api: TestClient, q: str, path: str = "tickets", **params: Any) -> list[int]:
    response = api.get(f"/v1/search/{path}", params={"q": q, **params})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "analytics"
    key = "ticket_id" if path == "tickets" else "article_id"
    return [hit[key] for hit in body["hits"]]


class TestSink:
    def test_writes_documents_with_their_language_config(self, analytics_dsn: str) -> None:
        write(
            analytics_dsn,
            [
                ticket(1, 10, "Rechnung doppelt", "Bitte prüfen", language="de"),
                ticket(2, 10, "Fatura", language="pt"),
                article(7, 5, "Refunds", "How refunds work"),
            ],
        )
        first = row(analytics_dsn, "ticket_search", "ticket_id", 1)
        assert first is not None
        assert (first["version"], first["search_config"], first["deleted"]) == (10, "german", False)
        assert first["lexemes"] == "'bitt':3B 'doppelt':2A 'pruf':4B 'rechnung':1A"
        unsupported = row(analytics_dsn, "ticket_search", "ticket_id", 2)
        assert unsupported is not None and unsupported["search_config"] == "simple"
        kb = row(analytics_dsn, "kb_search", "article_id", 7)
        assert kb is not None and kb["lexemes"] == "'refund':1A,3B 'work':4B"

    def test_an_older_version_never_overwrites_a_newer_one(self, analytics_dsn: str) -> None:
        write(analytics_dsn, [ticket(1, 20, "newer subject"), article(7, 9, "New", "text")])
        write(analytics_dsn, [ticket(1, 10, "older subject"), article(7, 8, "Old", "text")])
        write(analytics_dsn, [ticket(1, 20, "same version replayed")])
        t = row(analytics_dsn, "ticket_search", "ticket_id", 1)
        kb = row(analytics_dsn, "kb_search", "article_id", 7)
        assert t is not None and (t["version"], t["subject"]) == (20, "newer subject")
        assert kb is not None and (kb["version"], kb["title"]) == (9, "New")
        write(analytics_dsn, [ticket(1, 30, "newest")])
        t = row(analytics_dsn, "ticket_search", "ticket_id", 1)
        assert t is not None and t["subject"] == "newest"

    def test_deletes_are_tombstones_that_older_versions_cannot_revive(
        self, analytics_dsn: str, api: TestClient
    ) -> None:
        write(analytics_dsn, [ticket(1, 10, "printer jam"), article(7, 5, "Printer jam", "x")])
        assert found(api, "printer") == [1]
        write(
            analytics_dsn,
            [ticket(1, 20, "printer jam", op="d"), article(7, 6, "", "", deleted=True)],
        )
        write(analytics_dsn, [ticket(1, 15, "printer jam")])  # a late older update
        t = row(analytics_dsn, "ticket_search", "ticket_id", 1)
        assert t is not None
        assert (t["deleted"], t["version"], t["subject"], t["lexemes"]) == (True, 20, "", "")
        assert found(api, "printer") == []
        assert found(api, "printer", "kb") == []

    def test_unpublished_articles_are_not_found(self, analytics_dsn: str, api: TestClient) -> None:
        write(analytics_dsn, [article(7, 5, "Printer jam", "Open the tray", published=False)])
        assert found(api, "printer", "kb") == []
        write(analytics_dsn, [article(7, 6, "Printer jam", "Open the tray")])
        assert found(api, "printer", "kb") == [7]

    def test_pii_is_masked_unless_allowed(self, analytics_dsn: str, api: TestClient) -> None:
        text = "Call me at +49 30 1234 5678 or jane.doe@example.com"
        write(analytics_dsn, [ticket(1, 10, "Callback", text)])
        write(analytics_dsn, [ticket(2, 10, "Callback", text)], allow_pii=True)
        masked = row(analytics_dsn, "ticket_search", "ticket_id", 1)
        assert masked is not None
        assert masked["description"] == "Call me at [phone] or [email]"
        assert found(api, "jane.doe@example.com") == [2]
        assert found(api, "1234 5678") == [2]

    def test_missing_tables_fail_at_start_naming_the_migrations(self, pg_dsn: str) -> None:
        with pytest.raises(RuntimeError, match="apply the analytics migrations"):
            PostgresSearchSink(pg_dsn).build("write_search", 0, 1)


class TestMultilingualSearch:
    @pytest.fixture
    def corpus(self, analytics_dsn: str) -> str:
        write(
            analytics_dsn,
            [
                ticket(1, 10, "Refund requested", "I was charged twice", language="en"),
                ticket(2, 10, "Rechnungen fehlen", "Meine Rechnung ist nicht da", language="de"),
                ticket(3, 10, "Facturas duplicadas", "La factura llegó dos veces", language="es"),
                ticket(4, 10, "Remboursement", "Le remboursement n'est pas arrivé", language="fr"),
                ticket(5, 10, "Refunds pending", "", language="pt"),
            ],
        )
        return analytics_dsn

    @pytest.mark.parametrize(
        ("q", "expected"),
        [
            ("refunds", [1, 5]),  # English stemming, and the exact form in the 'simple' row
            ("refund", [1]),
            ("Rechnung", [2]),  # German: Rechnungen -> rechnung
            ("factura", [3]),  # Spanish: facturas -> factur
            ("remboursements", [4]),  # French
            ("charging", [1]),
            ("Refunds pending", [5]),
        ],
    )
    def test_each_ticket_matches_in_its_own_language(
        self, corpus: str, api: TestClient, q: str, expected: list[int]
    ) -> None:
        assert sorted(found(api, q)) == expected

    def test_an_unsupported_language_matches_exact_words_only(
        self, corpus: str, api: TestClient
    ) -> None:
        assert 5 in found(api, "refunds")
        assert 5 not in found(api, "refund")

    def test_web_search_syntax(self, corpus: str, api: TestClient) -> None:
        assert found(api, "charged -twice") == []
        assert found(api, "refund -twice") == []
        assert found(api, '"charged twice"') == [1]
        assert sorted(found(api, "Rechnung or factura")) == [2, 3]
        # Stop words alone and unknown words find nothing, without an error.
        assert found(api, "the") == []
        assert found(api, "zzzz") == []
        assert found(api, "'\"&|!():*<->") == []


def test_ranking_puts_the_best_match_first(analytics_dsn: str, api: TestClient) -> None:
    write(
        analytics_dsn,
        [
            ticket(1, 10, "Question about my account", "Also the printer shows an error"),
            ticket(2, 10, "Printer error E42", "The printer shows error E42 after a paper jam"),
            ticket(3, 10, "Printer offline", "Cannot print anything"),
            ticket(4, 10, "Password reset", "Cannot log in"),
        ],
    )
    assert found(api, "printer error") == [2, 1]
    assert found(api, "printer") == [2, 3, 1]


class TestSearchApi:
    def test_hits_have_fields_and_highlighted_escaped_snippets(
        self, analytics_dsn: str, api: TestClient
    ) -> None:
        write(
            analytics_dsn,
            [ticket(1, 10, "Invoice <b>wrong</b>", "The invoice total is wrong & too high")],
        )
        body = api.get("/v1/search/tickets", params={"q": " invoices "}).json()
        assert body["query"] == "invoices" and body["count"] == 1
        hit = body["hits"][0]
        assert hit["subject"] == "<mark>Invoice</mark> &lt;b&gt;wrong&lt;/b&gt;"
        assert hit["snippet"] == "The <mark>invoice</mark> total is wrong &amp; too high"
        assert hit["score"] > 0
        assert {k: hit[k] for k in ("ticket_id", "status", "category", "language")} == {
            "ticket_id": 1,
            "status": "open",
            "category": "billing",
            "language": "en",
        }
        assert datetime.fromisoformat(hit["created_at"]) == T0

    def test_filters_and_limit(self, analytics_dsn: str, api: TestClient) -> None:
        write(
            analytics_dsn,
            [
                ticket(1, 10, "Printer jam", status="open", category="hardware"),
                ticket(2, 10, "Printer jam", status="solved", category="hardware"),
                ticket(3, 10, "Printer invoice", status="open", category="billing"),
            ],
        )
        assert sorted(found(api, "printer", status="open")) == [1, 3]
        assert found(api, "printer", status="open", category="hardware") == [1]
        assert len(found(api, "printer", limit=2)) == 2

    def test_kb_search(self, analytics_dsn: str, api: TestClient) -> None:
        write(
            analytics_dsn,
            [
                article(1, 5, "Refund a double charge", "Open billing and request a refund"),
                article(2, 5, "Rückerstattung", "Erstattungen dauern 5 Tage", language="de"),
                article(3, 5, "Reset your password", "Use the login page"),
            ],
        )
        body = api.get("/v1/search/kb", params={"q": "refunds"}).json()
        assert [h["article_id"] for h in body["hits"]] == [1]
        assert body["hits"][0]["title"] == "<mark>Refund</mark> a double charge"
        assert found(api, "Erstattung", "kb", language="de") == [2]
        assert found(api, "Erstattung", "kb", language="en") == []

    @pytest.mark.parametrize(
        "params",
        [
            {},
            {"q": ""},
            {"q": "   "},
            {"q": "x" * 257},
            {"q": "\x00\x1b"},
            {"q": "refund", "limit": 0},
            {"q": "refund", "limit": 101},
            {"q": "refund", "limit": "many"},
            {"q": "refund", "status": "lost"},
            {"q": "refund", "category": "bill ing"},
            {"q": "refund", "category": "x" * 65},
        ],
    )
    def test_bad_input_is_422(self, api: TestClient, params: dict[str, Any]) -> None:
        assert api.get("/v1/search/tickets", params=params).status_code == 422

    def test_control_characters_in_the_query_are_ignored(self, api: TestClient) -> None:
        body = api.get("/v1/search/tickets", params={"q": "refund\x00\x1b"}).json()
        assert body["query"] == "refund"
        assert body["hits"] == api.get("/v1/search/tickets", params={"q": "refund"}).json()["hits"]

    @pytest.mark.parametrize("params", [{"q": "a", "language": "english"}, {"q": "a", "limit": -1}])
    def test_bad_kb_input_is_422(self, api: TestClient, params: dict[str, Any]) -> None:
        assert api.get("/v1/search/kb", params=params).status_code == 422

    def test_missing_tables_are_503(self, pg_dsn: str, redis_url: str) -> None:
        settings = ApiSettings(redis_url=redis_url, analytics_dsn=pg_dsn, auth_required=False)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            response = client.get("/v1/search/tickets", params={"q": "refund"})
        assert response.status_code == 503
        assert "apply the analytics migrations" in response.json()["detail"]

    def test_database_down_is_503(self, redis_url: str) -> None:
        dsn = f"postgresql://nobody@127.0.0.1:{free_port()}/analytics"
        settings = ApiSettings(
            redis_url=redis_url, analytics_dsn=dsn, store_timeout_s=0.5, auth_required=False
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            assert client.get("/v1/search/kb", params={"q": "refund"}).status_code == 503

    def test_elasticsearch_down_is_503(self, settings: ApiSettings) -> None:
        down = settings.model_copy(
            update={"elasticsearch_url": f"http://127.0.0.1:{free_port()}", "store_timeout_s": 1}
        )
        with TestClient(create_app(down), raise_server_exceptions=False) as client:
            response = client.get("/v1/search/tickets", params={"q": "refund"})
        assert response.status_code == 503
        assert response.json() == {"detail": "store unavailable: ConnectionError"}


# --- The triage flow feeding the search tables ---------------------------------------------

TS = 1_772_442_000_000


def record(
    lsn: int,
    table: str,
    op: str,
    after: dict[str, Any] | None,
    before: dict[str, Any] | None = None,
) -> RawChange:
    image = after or before or {}
    return RawChange(
        topic=f"triage.public.{table}",
        key=encode_key({"id": image["id"]}, table=table),
        value=encode_envelope(
            table=table, op=op, lsn=lsn, ts_ms=TS + lsn, before=before, after=after
        ),
        position=SourcePosition(lsn=lsn),
    )


def test_flow_makes_tickets_and_articles_findable(analytics_dsn: str, api: TestClient) -> None:
    customer = {"id": 1, "name": "Acme", "email": "c@x", "tier": "premium", "language": "de",
                "region": "eu"}  # fmt: skip
    kb = {"id": 7, "title": "Rechnung korrigieren", "body": "So korrigieren Sie Rechnungen.",
          "language": "de", "published": True}  # fmt: skip
    first = {"id": 10, "customer_id": 1, "subject": "Falsche Rechnungen",
             "description": "Die Rechnungen sind falsch, rufen Sie +49 30 1234 5678 an",
             "channel": "email", "status": "new", "created_at": "2026-03-02T09:00:00Z"}  # fmt: skip
    second = {
        **first,
        "id": 11,
        "subject": "Passwort vergessen",
        "description": "Ich kann mich nicht anmelden",
    }
    records = [
        record(1010, "customers", "r", customer),
        record(1020, "kb_articles", "r", kb),
        record(1030, "tickets", "c", first),
        record(1040, "tickets", "c", second),
        record(1050, "tickets", "u", {**second, "status": "solved"}, before=second),
        record(1060, "tickets", "d", None, before=first),
        record(1070, "tickets", "c", {**first, "id": 12}),
    ]
    analytics: list[Any] = []
    flow = build_flow(
        PipelineSettings(),
        source=TestingSource(records),
        analytics_sink=TestingSink(analytics),
        decision_sink=TestingSink([]),
        search_sink=PostgresSearchSink(analytics_dsn),
    )
    run_main(flow)

    body = api.get("/v1/search/tickets", params={"q": "Rechnung"}).json()
    assert [h["ticket_id"] for h in body["hits"]] == [12]  # 10 was deleted
    hit = body["hits"][0]
    assert hit["language"] == "de"
    assert "[phone]" in hit["snippet"]
    solved = api.get("/v1/search/tickets", params={"q": "Passwort", "status": "solved"}).json()
    assert [h["ticket_id"] for h in solved["hits"]] == [11]
    assert found(api, "Rechnungen", "kb") == [7]
    stored = row(analytics_dsn, "ticket_search", "ticket_id", 11)
    assert stored is not None and stored["version"] == 1050
