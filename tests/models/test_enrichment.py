"""Language, category, priority and the enricher's customer context."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from models.categories import guess_category
from models.enrichment import CustomerContext, TicketEnricher
from models.events import ChangeEvent, SourcePosition
from models.helpdesk import UNAVAILABLE, Customer, RowError
from models.language import LanguageDetector
from models.priority import score_priority
from models.routing import RoutingPolicy

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("I was charged twice for my subscription this month", "en"),
        ("Meine Rechnung wurde doppelt abgebucht, bitte prüfen", "de"),
        ("Je ne peux plus me connecter à mon compte depuis hier", "fr"),
        ("No puedo acceder a mi cuenta desde ayer por la tarde", "es"),
    ],
)
def test_language_detected_from_text(text: str, lang: str) -> None:
    guess = LanguageDetector().detect(text, fallback="en")
    assert guess.language == lang
    assert guess.confidence >= 0.8 and guess.source == "text"


def test_short_text_falls_back_to_customer_language() -> None:
    guess = LanguageDetector().detect("ok?", fallback="fr")
    assert (guess.language, guess.source) == ("fr", "customer")


def test_priority_keywords_tier_and_explicit() -> None:
    assert (
        score_priority(
            subject="Total outage", description="", tier="free", channel="email"
        ).priority
        == "urgent"
    )
    enterprise = score_priority(
        subject="Question", description="how do I export?", tier="enterprise", channel="email"
    )
    assert enterprise.priority == "high" and "tier: enterprise" in enterprise.reasons
    free = score_priority(subject="Question", description="how?", tier="free", channel="email")
    assert free.priority == "low"
    human = score_priority(
        subject="outage", description="", tier="free", channel="web", explicit="low"
    )
    assert (human.priority, human.reasons) == ("low", ("set on ticket",))


def test_category_keywords_and_explicit_label() -> None:
    assert guess_category("Parcel never arrived", "tracking says delivered").category == "shipping"
    assert guess_category("Hello", "thanks").category == "general"
    assert guess_category("Parcel", "", explicit="billing").source == "ticket"


def _ticket_event(*, op: str = "c", version: int = 10, **after: object) -> ChangeEvent:
    row = {
        "id": 5, "customer_id": 7, "subject": "Refund for invoice 991",
        "description": "I was charged twice, please refund", "channel": "email",
        "status": "new", "created_at": "2026-03-02T09:30:00Z",
    }  # fmt: skip
    row.update(after)
    return ChangeEvent(
        table="tickets",
        op=op,
        key={"id": 5},
        before={**row, "description": "old text"},  # type: ignore[arg-type]
        after=row,
        committed_at=T0,
        version=version,
        position=SourcePosition(lsn=version),
    )


def test_enricher_uses_customer_profile_and_tracks_open_status() -> None:
    enricher = TicketEnricher(RoutingPolicy())
    ctx = CustomerContext(customer=Customer(7, "Acme", "acme", "enterprise", "en", "us"))
    first = enricher.enrich(ctx, _ticket_event())
    assert (first.category, first.queue, first.customer_tier) == (
        "billing",
        "billing",
        "enterprise",
    )
    assert first.priority == "high" and first.organization == "acme"
    assert first.sentiment_label in {"negative", "neutral", "positive"}
    second = enricher.enrich(ctx, _ticket_event(op="u", version=11, status="open"))
    assert second.previous_status == "new"
    solved = enricher.enrich(ctx, _ticket_event(op="u", version=12, status="solved"))
    assert solved.previous_status == "open" and ctx.ticket_status == {}


def test_strongly_negative_customer_escalates_priority_with_a_reason() -> None:
    angry = _ticket_event(
        subject="Terrible, awful service",
        description="This is the worst experience ever, I am furious and disgusted",
    )
    et = TicketEnricher(RoutingPolicy()).enrich(CustomerContext(), angry)
    assert et.sentiment is not None and et.sentiment < -0.6
    assert et.priority == "high"
    assert any(r.startswith("negative sentiment") for r in et.priority_reasons)


def test_unavailable_toast_value_is_taken_from_before_image() -> None:
    ctx = CustomerContext()
    et = TicketEnricher(RoutingPolicy()).enrich(ctx, _ticket_event(op="u", description=UNAVAILABLE))
    assert et.ticket.description == "old text"
    assert "customer unknown" in et.priority_reasons


def test_malformed_ticket_row_raises_row_error() -> None:
    with pytest.raises(RowError):
        TicketEnricher(RoutingPolicy()).enrich(CustomerContext(), _ticket_event(customer_id="x"))


def test_a_changed_status_reuses_the_text_analysis_and_a_new_text_is_analysed_again() -> None:
    class Counting(LanguageDetector):
        calls = 0

        def detect(self, text: str, *, fallback: str | None = None):  # type: ignore[no-untyped-def]
            Counting.calls += 1
            return super().detect(text, fallback=fallback)

    enricher = TicketEnricher(RoutingPolicy(), Counting())
    fresh = TicketEnricher(RoutingPolicy())
    ctx, other = CustomerContext(), CustomerContext()
    changes = [
        _ticket_event(),
        _ticket_event(op="u", version=11, status="open"),
        _ticket_event(op="u", version=12, status="pending"),
        _ticket_event(op="u", version=13, description="Meine Rechnung wurde doppelt abgebucht"),
        _ticket_event(op="u", version=14, status="open", priority="urgent"),
    ]
    for change in changes:
        got, expected = enricher.enrich(ctx, change), fresh.enrich(other, change)
        assert replace(got, enriched_at=T0) == replace(expected, enriched_at=T0)
    # The first text once, the re-worded one once; status changes hit the kept results.
    assert Counting.calls == 2
