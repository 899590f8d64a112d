"""The shared text models: prequential learning from human labels, sticky queues, KB."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from models.enrichment import CustomerContext, TicketEnricher
from models.events import ChangeEvent, SourcePosition
from models.helpdesk import Customer
from models.intelligence import TextIntelligence
from models.routing import RoutingPolicy
from models.sla import TicketComment

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CUSTOMER = Customer(1, "Ann", "Acme", "standard", "en", "us")

BILLING = ["I was charged twice on invoice {n}", "refund the double payment on invoice {n}"]
SHIPPING = ["parcel {n} never arrived, tracking stuck", "courier lost my package {n}"]


def event(tid: int, op: str = "c", before: dict[str, Any] | None = None,
          **row: Any) -> ChangeEvent:  # fmt: skip
    full = {"id": tid, "customer_id": 1, "subject": "help", "description": "",
            "channel": "email", "status": "new", "created_at": "2026-03-02T09:00:00Z"}  # fmt: skip
    full.update(row)
    return ChangeEvent(
        table="tickets", op=op, key={"id": tid}, before=before, after=full,  # type: ignore[arg-type]
        committed_at=T0, version=tid * 10, position=SourcePosition(lsn=tid),
    )  # fmt: skip


def feed(ti: TextIntelligence, ev: ChangeEvent) -> Any:
    enricher = TicketEnricher(RoutingPolicy())
    et = enricher.enrich(CustomerContext(customer=CUSTOMER), ev)
    return ti.on_ticket(et, ev)


def test_human_labels_teach_the_category_model_prequentially() -> None:
    ti = TextIntelligence(RoutingPolicy(), min_examples=10, n_features=2**14)
    for n in range(40):
        for label, texts in (("billing", BILLING), ("shipping", SHIPPING)):
            text = texts[n % 2].format(n=n)
            feed(ti, event(1000 + 2 * n + (label == "shipping"), subject=text, category=label))
    assert ti.category.metrics.n_seen == 80
    # Predictions were scored before each lesson; by now the model is right.
    assert ti.category.metrics.accuracy > 0.8
    et, _ = feed(ti, event(5, subject="refund the double payment on invoice 77"))
    assert (et.category, et.category_source) == ("billing", "model")
    et, _ = feed(ti, event(6, subject="courier lost my package 12"))
    assert et.category == "shipping" and et.queue == "logistics"


def test_queue_is_sticky_while_open_and_a_correction_is_learned() -> None:
    ti = TextIntelligence(RoutingPolicy(), n_features=2**14)
    first, _ = feed(ti, event(1, subject="I was charged twice on invoice 9"))
    assert first.queue == "billing"
    before = {"category": None, "subject": first.ticket.subject, "description": ""}
    corrected, _ = feed(ti, event(1, op="u", before=before, subject=first.ticket.subject,
                                  category="shipping"))  # fmt: skip
    assert corrected.category == "shipping" and corrected.category_source == "ticket"
    assert corrected.queue == "billing"  # still counted where it was routed
    assert ti.category.metrics.n_seen == 1
    solved, _ = feed(ti, event(1, op="u", before=before, subject=first.ticket.subject,
                               category="shipping", status="solved"))  # fmt: skip
    assert 1 not in ti.memory and solved.queue == "billing"


def test_kb_articles_from_cdc_are_suggested_and_agent_links_teach_feedback() -> None:
    ti = TextIntelligence(RoutingPolicy(), n_features=2**14)
    for aid, title in ((1, "Refund a double charge"), (2, "Track a lost parcel")):
        ti.on_kb_article(ChangeEvent(
            table="kb_articles", op="c", key={"id": aid}, before=None,
            after={"id": aid, "title": title, "body": title + " step by step", "language": "en",
                   "published": True},
            committed_at=T0, version=aid, position=SourcePosition(lsn=aid),
        ))  # fmt: skip
    et, _ = feed(ti, event(3, subject="refund my double charge please"))
    assert et.kb_suggestions[0][0] == 1
    assert et.response_suggestion and "KB-1" in et.response_suggestion
    key = ti.memory[3].kb_key
    ti.on_comment(TicketComment(3, T0, "agent"), "Please follow KB-1")
    assert ti.kb.feedback_prior(key, 1) > 0.5


def test_comments_before_their_ticket_wait_for_its_queue() -> None:
    ti = TextIntelligence(RoutingPolicy(), n_features=2**14)
    early = TicketComment(4, T0, "agent")
    assert ti.on_comment(early, "hello") == []
    et, _ = feed(ti, event(4, subject="I was charged twice on invoice 1"))
    assert ti.release_comments(4, et.queue) == [("billing", early)]


def test_duplicates_of_the_same_customer_are_reported() -> None:
    ti = TextIntelligence(RoutingPolicy(), n_features=2**14)
    text = "my order 5521 arrived damaged and the box was open when the courier came"
    feed(ti, event(10, subject="Damaged order", description=text))
    dup, _ = feed(ti, event(11, subject="Damaged order", description=text + " today"))
    assert dup.duplicates and dup.duplicates[0][0] == 10


def test_multi_label_categories_can_name_more_than_one_category() -> None:
    ti = TextIntelligence(RoutingPolicy(), n_features=2**14)
    for n in range(40):
        feed(ti, event(2000 + n, subject=BILLING[n % 2].format(n=n), category="billing"))
        feed(ti, event(3000 + n, subject=SHIPPING[n % 2].format(n=n), category="shipping"))
    both, _ = feed(
        ti,
        event(
            9, subject="charged twice on invoice 5 and my parcel 5 never arrived, courier lost it"
        ),
    )
    assert {"billing", "shipping"} <= set(both.categories)
    single, _ = feed(ti, event(10, subject="refund the double payment on invoice 8"))
    assert single.categories == ("billing",)
