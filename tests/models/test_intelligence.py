"""The text models: prequential learning from human labels, sticky queues, KB, duplicates.

``Helpdesk`` wires the pure pieces the way the dataflow does in one process: per-ticket
text state, duplicates per scope, and one learning copy of the models that the
predictions share.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from models.duplicates import DuplicateDetector
from models.enrichment import CustomerContext, TicketEnricher
from models.events import ChangeEvent, SourcePosition
from models.helpdesk import Customer
from models.intelligence import (
    Classified,
    TextModels,
    TicketText,
    classify_ticket,
    find_duplicates,
    on_ticket_comment,
)
from models.routing import RoutingPolicy
from models.sla import TicketComment

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CUSTOMER = Customer(1, "Ann", "Acme", "standard", "en", "us")

BILLING = ["I was charged twice on invoice {n}", "refund the double payment on invoice {n}"]
SHIPPING = ["parcel {n} never arrived, tracking stuck", "courier lost my package {n}"]


def event(tid: int, op: str = "c", before: dict[str, Any] | None = None, **row: Any) -> ChangeEvent:
    full = {
        "id": tid,
        "customer_id": 1,
        "subject": "help",
        "description": "",
        "channel": "email",
        "status": "new",
        "created_at": "2026-03-02T09:00:00Z",
    }
    full.update(row)
    return ChangeEvent(
        table="tickets",
        op=op,
        key={"id": tid},
        before=before,
        after=full,  # type: ignore[arg-type]
        committed_at=T0,
        version=tid * 10,
        position=SourcePosition(lsn=tid),
    )


class Helpdesk:
    def __init__(self, **options: Any) -> None:
        self.policy = RoutingPolicy()
        self.models = TextModels(n_features=2**14, **options)
        self.texts: dict[int, TicketText] = {}
        self.duplicates: DuplicateDetector | None = None
        self.enricher = TicketEnricher(self.policy)

    def feed(self, ev: ChangeEvent) -> Classified:
        et = self.enricher.enrich(CustomerContext(customer=CUSTOMER), ev)
        self.duplicates, et = find_duplicates(self.duplicates, et, ev)
        state, done = classify_ticket(
            self.texts.get(et.ticket.id), self.models, self.policy, et, ev
        )
        if state is None:
            self.texts.pop(et.ticket.id, None)
        else:
            self.texts[et.ticket.id] = state
        if done.example is not None:
            self.models.learn(done.example)
        return done

    def comment(self, comment: TicketComment, body: str) -> str | None:
        state, queue, feedback = on_ticket_comment(self.texts.get(comment.ticket_id), comment, body)
        if state is not None:
            self.texts[comment.ticket_id] = state
        if feedback is not None:
            self.models.record_feedback(feedback)
        return queue


def feed(ti: Helpdesk, ev: ChangeEvent) -> Any:
    done = ti.feed(ev)
    return done.ticket, done


def test_human_labels_teach_the_category_model_prequentially() -> None:
    ti = Helpdesk(min_examples=10)
    for n in range(40):
        for label, texts in (("billing", BILLING), ("shipping", SHIPPING)):
            text = texts[n % 2].format(n=n)
            feed(ti, event(1000 + 2 * n + (label == "shipping"), subject=text, category=label))
    assert ti.models.category.metrics.n_seen == 80
    # Predictions were scored before each lesson; by now the model is right.
    assert ti.models.category.metrics.accuracy > 0.8
    et, _ = feed(ti, event(5, subject="refund the double payment on invoice 77"))
    assert (et.category, et.category_source) == ("billing", "model")
    et, _ = feed(ti, event(6, subject="courier lost my package 12"))
    assert et.category == "shipping" and et.queue == "logistics"


def test_queue_is_sticky_while_open_and_a_correction_is_learned() -> None:
    ti = Helpdesk()
    first, _ = feed(ti, event(1, subject="I was charged twice on invoice 9"))
    assert first.queue == "billing"
    before = {"category": None, "subject": first.ticket.subject, "description": ""}
    corrected, _ = feed(
        ti, event(1, op="u", before=before, subject=first.ticket.subject, category="shipping")
    )
    assert corrected.category == "shipping" and corrected.category_source == "ticket"
    assert corrected.queue == "billing"  # still counted where it was routed
    assert ti.models.category.metrics.n_seen == 1
    solved, _ = feed(
        ti,
        event(
            1,
            op="u",
            before=before,
            subject=first.ticket.subject,
            category="shipping",
            status="solved",
        ),
    )
    # Solved: what was derived is dropped, the queue stays for replies that reopen it.
    assert solved.queue == "billing" and ti.texts[1].insights is None
    assert ti.comment(TicketComment(1, T0, "customer"), "still broken") == "billing"
    _closed, _ = feed(
        ti,
        event(
            1,
            op="u",
            before=before,
            subject=first.ticket.subject,
            category="shipping",
            status="closed",
        ),
    )
    assert 1 not in ti.texts


def test_kb_articles_from_cdc_are_suggested_and_agent_links_teach_feedback() -> None:
    ti = Helpdesk()
    for aid, title in ((1, "Refund a double charge"), (2, "Track a lost parcel")):
        ti.models.on_kb_article(
            ChangeEvent(
                table="kb_articles",
                op="c",
                key={"id": aid},
                before=None,
                after={
                    "id": aid,
                    "title": title,
                    "body": title + " step by step",
                    "language": "en",
                    "published": True,
                },
                committed_at=T0,
                version=aid,
                position=SourcePosition(lsn=aid),
            )
        )
    et, _ = feed(ti, event(3, subject="refund my double charge please"))
    assert et.kb_suggestions[0][0] == 1
    assert et.response_suggestion and "KB-1" in et.response_suggestion
    key = ti.texts[3].kb_key
    assert ti.comment(TicketComment(3, T0, "agent"), "Please follow KB-1") == "billing"
    assert ti.models.kb.feedback_prior(key, 1) > 0.5


def test_comments_before_their_ticket_wait_for_its_queue() -> None:
    ti = Helpdesk()
    early = TicketComment(4, T0, "agent")
    assert ti.comment(early, "hello") is None
    et, done = feed(ti, event(4, subject="I was charged twice on invoice 1"))
    assert et.queue == "billing" and done.comments == (early,)
    later = TicketComment(4, T0, "customer")
    assert ti.comment(later, "any news?") == "billing"


def test_duplicates_of_the_same_customer_are_reported() -> None:
    ti = Helpdesk()
    text = "my order 5521 arrived damaged and the box was open when the courier came"
    feed(ti, event(10, subject="Damaged order", description=text))
    dup, _ = feed(ti, event(11, subject="Damaged order", description=text + " today"))
    assert dup.duplicates and dup.duplicates[0][0] == 10


def test_multi_label_categories_can_name_more_than_one_category() -> None:
    ti = Helpdesk()
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


class _SpentAfter:
    """A clock for :class:`TimeBudget` that jumps past the limit after ``calls`` reads."""

    def __init__(self, calls: int) -> None:
        self.calls = calls

    def __call__(self) -> float:
        self.calls -= 1
        return 0.0 if self.calls >= 0 else 10.0


def test_a_spent_time_budget_skips_kb_suggestions_and_says_so() -> None:
    from models.budget import TimeBudget

    ti = Helpdesk()
    ti.models.on_kb_article(
        ChangeEvent(
            table="kb_articles",
            op="c",
            key={"id": 1},
            before=None,
            after={
                "id": 1,
                "title": "Refund a double charge",
                "body": "Refund step by step",
                "language": "en",
                "published": True,
            },
            committed_at=T0,
            version=1,
            position=SourcePosition(lsn=1),
        )
    )
    ev = event(3, subject="refund my double charge please")
    et = ti.enricher.enrich(CustomerContext(customer=CUSTOMER), ev)

    roomy = TimeBudget(5.0)
    _, done = classify_ticket(None, ti.models, ti.policy, et, ev, roomy)
    assert done.ticket.kb_suggestions and done.ticket.degraded == () and roomy.skipped == []

    spent = TimeBudget(0.05, clock=_SpentAfter(1))
    state, done = classify_ticket(None, ti.models, ti.policy, et, ev, spent)
    assert done.ticket.kb_suggestions == ()
    assert done.ticket.degraded == ("kb_suggestions: skipped, 50 ms time budget spent",)
    # The route-deciding parts still ran, and the next change tries the skipped part again.
    assert done.ticket.queue == "billing" and done.ticket.intent is not None
    assert state is not None and state.insights is None
    before = {"subject": ev.after["subject"], "description": ""}  # type: ignore[index]
    again = event(3, op="u", before=before, subject="refund my double charge please")
    _, later = classify_ticket(state, ti.models, ti.policy, et, again, TimeBudget(5.0))
    assert later.ticket.kb_suggestions and later.ticket.degraded == ()


def test_a_spent_time_budget_skips_sentiment_but_not_the_priority_rules() -> None:
    from models.budget import TimeBudget

    angry = event(4, subject="This is awful, terrible, the worst service ever, I hate it")
    enricher = TicketEnricher(RoutingPolicy())
    full = enricher.enrich(CustomerContext(customer=CUSTOMER), angry, TimeBudget(5.0))
    assert full.sentiment_label == "negative" and full.degraded == ()
    cut = enricher.enrich(
        CustomerContext(customer=CUSTOMER), angry, TimeBudget(0.01, clock=_SpentAfter(1))
    )
    assert (cut.sentiment_label, cut.sentiment) == ("unknown", None)
    assert cut.degraded == ("sentiment: skipped, 10 ms time budget spent",)
    assert cut.language == full.language and cut.category == full.category
    assert cut.priority_reasons == tuple(
        r for r in full.priority_reasons if not r.startswith("negative sentiment")
    )
