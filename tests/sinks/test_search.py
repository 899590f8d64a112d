"""Search documents with nothing running: exact documents, masking, tombstones, KB changes,
text search configs, the API's Elasticsearch request and the flow's search output."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bytewax.testing import TestingSink, TestingSource, run_main
from fastapi import HTTPException
from pydantic import ValidationError

from api.routes.search import clean_query, es_search_body
from api.settings import ApiSettings
from connectors.debezium import encode_envelope, encode_key
from models.events import ChangeEvent, RawChange, SourcePosition
from models.helpdesk import EnrichedTicket, RowError, Ticket
from models.kb import KbArticle
from models.pii import mask_pii
from pipelines.flow import build_flow
from pipelines.settings import PipelineSettings
from sinks.search import (
    KbDocument,
    SearchDocuments,
    TicketDocument,
    batch_to_documents,
    kb_document,
    ticket_document,
)
from sinks.search_pg import kb_search_row, text_search_config, ticket_search_row
from triage.settings import AppSettings, ElasticsearchSettings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PII = "Call +49 30 1234 5678 or mail jane.doe@example.com about invoice 2026-03-01."


def make_ticket(
    ticket_id: int = 1, version: int = 100, *, op: str = "c", subject: str = "Refund for jane@x.io"
) -> EnrichedTicket:
    ticket = Ticket(
        id=ticket_id,
        customer_id=7,
        subject=subject,
        description=PII,
        channel="email",
        status="open",
        priority=None,
        category=None,
        intent=None,
        assigned_agent_id=3,
        created_at=T0,
        updated_at=T0 + timedelta(minutes=5),
        first_reply_at=None,
        solved_at=None,
        csat=None,
        version=version,
    )
    return EnrichedTicket(
        ticket=ticket,
        op=op,
        committed_at=T0,
        customer_tier="premium",
        customer_language="de",
        language="de",
        language_confidence=0.93,
        priority="high",
        priority_reasons=("tier:premium",),
        category="billing",
        queue="billing",
        enriched_at=T0,
        organization="Acme GmbH",
        intent="refund_request",
    )


def make_article(article_id: int = 7, version: int = 200, **changes: Any) -> KbArticle:
    article = KbArticle(
        id=article_id,
        version=version,
        title="Refunds for double charges",
        body="Write to billing@example.com or call +1 555 123 4567.",
        category="billing",
        language="en",
        published=True,
        updated_at=T0,
    )
    return replace(article, **changes)


class TestTicketDocument:
    def test_is_exact_with_pii_masked(self) -> None:
        assert ticket_document(make_ticket()) == TicketDocument(
            ticket_id=1,
            version=100,
            deleted=False,
            subject="Refund for [email]",
            description="Call [phone] or mail [email] about invoice 2026-03-01.",
            status="open",
            priority="high",
            category="billing",
            intent="refund_request",
            queue="billing",
            channel="email",
            language="de",
            customer_id=7,
            customer_tier="premium",
            organization="Acme GmbH",
            assigned_agent_id=3,
            created_at=T0,
            updated_at=T0 + timedelta(minutes=5),
            solved_at=None,
        )

    def test_pii_kept_when_allowed(self) -> None:
        doc = ticket_document(make_ticket(), allow_pii=True)
        assert (doc.subject, doc.description) == ("Refund for jane@x.io", PII)

    def test_masking_is_the_warehouse_rule(self) -> None:
        assert ticket_document(make_ticket()).description == mask_pii(PII)

    def test_delete_is_a_tombstone_without_text(self) -> None:
        doc = ticket_document(make_ticket(op="d", version=300), allow_pii=True)
        assert (doc.deleted, doc.version, doc.subject, doc.description) == (True, 300, "", "")
        assert doc.status == "open"  # facets stay; the document is never returned


class TestKbDocument:
    def test_is_exact_with_pii_masked(self) -> None:
        assert kb_document(make_article()) == KbDocument(
            article_id=7,
            version=200,
            deleted=False,
            title="Refunds for double charges",
            body="Write to [email] or call [phone].",
            category="billing",
            language="en",
            updated_at=T0,
        )

    @pytest.mark.parametrize("change", [{"published": False}, {"deleted": True}])
    def test_unpublished_or_deleted_is_a_tombstone(self, change: dict[str, Any]) -> None:
        doc = kb_document(make_article(**change))
        assert (doc.deleted, doc.title, doc.body) == (True, "", "")


def kb_change(op: str, after: dict[str, Any] | None, key: dict[str, Any]) -> ChangeEvent:
    return ChangeEvent(
        table="kb_articles",
        op=op,  # type: ignore[arg-type]
        key=key,
        before=None,
        after=after,
        committed_at=T0,
        version=555,
        position=SourcePosition(lsn=555),
    )


class TestKbArticleFromChange:
    def test_insert(self) -> None:
        row = {"id": 9, "title": "Reset", "body": "Use the login page.", "category": None,
               "language": "de", "published": False,
               "updated_at": "2026-03-02T09:00:00Z"}  # fmt: skip
        assert KbArticle.from_change(kb_change("c", row, {"id": 9})) == KbArticle(
            9, 555, "Reset", "Use the login page.", None, "de", False, T0
        )

    def test_delete_carries_only_the_key(self) -> None:
        article = KbArticle.from_change(kb_change("d", None, {"id": 9}))
        assert article == KbArticle(9, 555, "", "", None, "", False, None, deleted=True)

    def test_defaults_like_the_suggestions(self) -> None:
        article = KbArticle.from_change(kb_change("r", {"id": "4"}, {}))
        assert (article.id, article.title, article.language, article.published) == (
            4,
            "",
            "en",
            True,
        )

    @pytest.mark.parametrize("key", [{}, {"id": "x"}])
    def test_without_an_integer_id_is_a_row_error(self, key: dict[str, Any]) -> None:
        with pytest.raises(RowError):
            KbArticle.from_change(kb_change("c", {"title": "t"}, key))


class TestBatch:
    def test_keeps_the_newest_version_per_id_in_id_order(self) -> None:
        docs = batch_to_documents(
            [
                make_ticket(2, 120),
                make_ticket(1, 110, subject="newer"),
                make_article(7, 300, title="old"),
                make_ticket(1, 100, subject="older"),
                make_article(7, 310, title="new"),
                make_article(3, 10),
            ]
        )
        assert [(d.ticket_id, d.version, d.subject) for d in docs.tickets] == [
            (1, 110, "newer"),
            (2, 120, "Refund for [email]"),
        ]
        assert [(d.article_id, d.version) for d in docs.articles] == [(3, 10), (7, 310)]
        assert docs.articles[1].title == "new"
        assert len(docs) == 4

    def test_other_items_are_refused(self) -> None:
        with pytest.raises(TypeError, match="search sinks cannot write str"):
            batch_to_documents(["nope"])  # type: ignore[list-item]


class TestPostgresRows:
    @pytest.mark.parametrize(
        ("language", "config"),
        [
            ("en", "english"),
            ("de", "german"),
            ("FR", "french"),
            ("es", "spanish"),
            ("pt", "simple"),
            ("", "simple"),
            (None, "simple"),
        ],
    )
    def test_text_search_config_per_language(self, language: str | None, config: str) -> None:
        assert text_search_config(language) == config

    def test_rows_carry_the_config_of_the_language(self) -> None:
        ticket = ticket_search_row(ticket_document(make_ticket()))
        assert ticket[:3] == (1, 100, False)
        assert ticket[11:13] == ("de", "german")
        assert kb_search_row(kb_document(make_article())) == (
            7,
            200,
            False,
            "Refunds for double charges",
            "Write to [email] or call [phone].",
            "billing",
            "en",
            "english",
            T0,
        )


class TestApiQuery:
    @pytest.mark.parametrize("bad", ["", "   ", "\x00", "\x1b\x7f \x01"])
    def test_queries_without_words_are_refused(self, bad: str) -> None:
        with pytest.raises(HTTPException) as caught:
            clean_query(bad)
        assert caught.value.status_code == 422

    @pytest.mark.parametrize(
        ("raw", "cleaned"),
        [("refund\x00", "refund"), ("a\x1bb", "a b"), ("\x07 double\x7f", "double")],
    )
    def test_control_characters_are_read_as_word_breaks(self, raw: str, cleaned: str) -> None:
        assert clean_query(raw) == cleaned

    def test_query_is_trimmed_and_normalised(self) -> None:
        assert clean_query("  Rücke\u0301rstattung \n") == "Rückérstattung"

    def test_elasticsearch_request(self) -> None:
        body = es_search_body(
            q='refund -"credit card"',
            title="subject",
            body="description",
            filters={"status": "open", "category": None},
            limit=5,
            key="ticket_id",
        )
        assert body["query"]["bool"] == {
            "must": [
                {
                    "simple_query_string": {
                        "query": 'refund -"credit card"',
                        "fields": [
                            "subject^3",
                            "subject.en^3",
                            "subject.de^3",
                            "subject.fr^3",
                            "subject.es^3",
                            "description^1",
                            "description.en^1",
                            "description.de^1",
                            "description.fr^1",
                            "description.es^1",
                        ],
                        "default_operator": "and",
                        "lenient": True,
                    }
                }
            ],
            "filter": [{"term": {"deleted": False}}, {"term": {"status": "open"}}],
        }
        assert body["size"] == 5
        assert body["sort"] == [{"_score": "desc"}, {"ticket_id": "desc"}]
        assert body["highlight"]["encoder"] == "html"
        assert body["highlight"]["fields"]["subject"] == {"number_of_fragments": 0}
        assert body["highlight"]["fields"]["description.de"] == {
            "fragment_size": 150,
            "number_of_fragments": 2,
        }


# --- The flow's search output -------------------------------------------------------------

TS = 1_772_442_000_000


def record(
    lsn: int,
    table: str,
    op: str,
    after: dict[str, Any] | None,
    before: dict[str, Any] | None = None,
) -> RawChange:
    row = after or before or {}
    return RawChange(
        topic=f"triage.public.{table}",
        key=encode_key({"id": row["id"]}, table=table),
        value=encode_envelope(
            table=table, op=op, lsn=lsn, ts_ms=TS + lsn, before=before, after=after
        ),
        position=SourcePosition(lsn=lsn),
    )


def search_feed() -> list[RawChange]:
    customer = {"id": 1, "name": "Acme", "email": "c@x", "tier": "premium", "language": "en",
                "region": "us"}  # fmt: skip
    article = {"id": 7, "title": "Refund a double charge", "body": "Use the billing page.",
               "language": "en", "published": True}  # fmt: skip
    ticket = {"id": 10, "customer_id": 1, "subject": "Refund please",
              "description": "Charged twice, call me at +1 555 123 4567", "channel": "email",
              "status": "new", "created_at": "2026-03-02T09:00:00Z"}  # fmt: skip
    return [
        record(1010, "customers", "r", customer),
        record(1020, "kb_articles", "r", article),
        record(1030, "tickets", "c", ticket),
        record(1040, "kb_articles", "d", None, before={"id": 7}),
        record(1050, "tickets", "d", None, before=ticket),
    ]


def test_flow_sends_tickets_and_kb_changes_to_the_search_sink() -> None:
    analytics: list[Any] = []
    searched: list[Any] = []
    flow = build_flow(
        PipelineSettings(),
        source=TestingSource(search_feed()),
        analytics_sink=TestingSink(analytics),
        decision_sink=TestingSink([]),
        search_sink=TestingSink(searched),
    )
    run_main(flow)

    tickets = [x for x in searched if isinstance(x, EnrichedTicket)]
    assert [(t.ticket_id, t.version, t.op) for t in tickets] == [(10, 1030, "c"), (10, 1050, "d")]
    # The search sink gets the same final tickets as the analytics store.
    assert tickets == [x for x in analytics if isinstance(x, EnrichedTicket)]
    articles = [x for x in searched if isinstance(x, KbArticle)]
    assert articles == [
        KbArticle(
            7, 1020, "Refund a double charge", "Use the billing page.", None, "en", True, None
        ),
        KbArticle(7, 1040, "", "", None, "", False, None, deleted=True),
    ]
    assert len(searched) == 4
    docs = batch_to_documents(searched)
    assert docs == SearchDocuments(
        tickets=[ticket_document(tickets[1])], articles=[kb_document(articles[1])]
    )
    assert docs.tickets[0].deleted and docs.articles[0].deleted


def test_flow_without_a_search_sink_has_no_search_steps() -> None:
    flow = build_flow(
        PipelineSettings(),
        source=TestingSource(search_feed()),
        analytics_sink=TestingSink([]),
        decision_sink=TestingSink([]),
    )
    steps = {s.step_id.split(".")[-1] for s in flow.substeps}
    assert "write_analytics" in steps
    assert not steps & {"select_kb_articles", "merge_search", "write_search"}


# --- Settings ------------------------------------------------------------------------------


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_ELASTICSEARCH__URL", "https://es.internal:9200")
    monkeypatch.setenv("TRIAGE_ELASTICSEARCH__API_KEY", "secret")
    monkeypatch.setenv("TRIAGE_ELASTICSEARCH__INDEX_PREFIX", "prod")
    monkeypatch.setenv("TRIAGE_ELASTICSEARCH__ALLOW_PII", "true")
    es = AppSettings().elasticsearch
    assert (es.url, es.index_prefix, es.allow_pii, es.enabled) == (
        "https://es.internal:9200",
        "prod",
        True,
        True,
    )
    assert es.api_key is not None and es.api_key.get_secret_value() == "secret"
    assert "secret" not in repr(es)


def test_search_defaults_to_postgres_with_pii_masked() -> None:
    es = ElasticsearchSettings()
    assert (es.enabled, es.url, es.index_prefix, es.allow_pii) == (True, None, "triage", False)


@pytest.mark.parametrize("prefix", ["Prod", "-x", "_x", "a b", "a*b", ""])
def test_index_prefix_must_be_a_valid_index_name(prefix: str) -> None:
    with pytest.raises(ValidationError):
        ElasticsearchSettings(index_prefix=prefix)
    with pytest.raises(ValidationError):
        ApiSettings(redis_url="redis://x", analytics_dsn="dbname=x", search_index_prefix=prefix)
