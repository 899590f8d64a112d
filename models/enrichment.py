"""Per-customer ticket enrichment: profile, language, sentiment, keyword category, priority.

The per-customer state (:class:`CustomerContext`) is what the dataflow keeps keyed by
customer id: the customer's profile and the status of each of their open tickets. The
learned models (category, intent, learned priority, duplicates, KB) run afterwards in
:mod:`models.intelligence`, which also fixes the ticket's queue.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from models.budget import TimeBudget
from models.categories import guess_category
from models.events import ChangeEvent
from models.helpdesk import (
    DEFAULT_TIMESTAMP_RANGE,
    UNAVAILABLE,
    Customer,
    EnrichedTicket,
    Ticket,
    TimestampRange,
)
from models.language import LanguageDetector
from models.priority import score_priority
from models.routing import RoutingPolicy
from models.sentiment import UNKNOWN_SENTIMENT, SentimentAnalyzer

MAX_WAITING_TICKETS = 1_000
"""Ticket changes held per customer while the customer's own row has not arrived."""


@dataclass(frozen=True)
class CustomerWaitExpired:
    """A ticket change (or a comment behind it) whose customer never arrived within the
    wait: for the dead letters."""

    item: object
    reason: str


@dataclass
class CustomerContext:
    """Keyed state per customer: profile, the status of each open ticket, and ticket
    changes waiting for the customer's row.

    With Kafka, each table is its own topic and partitions are read independently, so a
    ticket can arrive before the customer it references. Such a ticket waits (at most
    ``wait``, then it goes to the dead letters) and is enriched, in arrival order, as soon
    as the customer arrives: its tier, language and SLA policy are then the real ones, not
    defaults. A customer whose row was deleted does not make tickets wait.
    """

    customer: Customer | None = None
    ticket_status: dict[int, str] = field(default_factory=dict)
    wait: timedelta = timedelta(0)
    deleted: bool = False
    # Ticket changes, and comments behind them, in arrival order.
    waiting: list[tuple[datetime, object]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return (
            self.customer is None
            and not self.ticket_status
            and not self.waiting
            and not self.deleted
        )

    def must_wait(self) -> bool:
        """Whether a ticket change for this customer has to wait for the customer's row."""
        return self.customer is None and not self.deleted and self.wait > timedelta(0)

    def hold(self, event: object, now: datetime) -> list[CustomerWaitExpired]:
        """Keep a ticket change until the customer arrives; the oldest leave when full."""
        self.waiting.append((now, event))
        dropped = []
        while len(self.waiting) > MAX_WAITING_TICKETS:
            _, old = self.waiting.pop(0)
            dropped.append(
                CustomerWaitExpired(old, "too many ticket changes waiting for their customer")
            )
        return dropped

    def release(self) -> list[object]:
        """The held ticket changes, in arrival order, now that the customer is known."""
        held, self.waiting = self.waiting, []
        return [event for _, event in held]

    # Timed state (the dataflow wakes the key at ``next_wakeup``).
    def tick(self, now: datetime) -> list[CustomerWaitExpired]:
        expired = [e for since, e in self.waiting if now - since >= self.wait]
        self.waiting = [(since, e) for since, e in self.waiting if now - since < self.wait]
        seconds = self.wait.total_seconds()
        return [
            CustomerWaitExpired(e, f"customer unknown after {seconds:g} s: its row never arrived")
            for e in expired
        ]

    def next_wakeup(self) -> datetime | None:
        return self.waiting[0][0] + self.wait if self.waiting else None

    def finish(self) -> list[CustomerWaitExpired]:
        """A finite input ended (a replay): what still waits will never be enriched."""
        held, self.waiting = self.waiting, []
        return [CustomerWaitExpired(e, "input ended before the customer arrived") for _, e in held]

    def is_idle(self) -> bool:
        return self.is_empty()


def merged_row(event: ChangeEvent) -> dict[str, object]:
    """The row after the change, with Debezium's unavailable placeholders filled from before."""
    after = dict(event.after or {})
    before = event.before or {}
    for column, value in after.items():
        if value == UNAVAILABLE:
            after[column] = before.get(column) if before.get(column) != UNAVAILABLE else None
    return after


TEXT_RESULTS_KEPT = 4096
"""Texts whose language, sentiment, category and priority a :class:`TicketEnricher` keeps."""


class TicketEnricher:
    """Turns a ticket change into an :class:`EnrichedTicket` (stateless apart from models)."""

    def __init__(
        self,
        policy: RoutingPolicy,
        detector: LanguageDetector | None = None,
        sentiment: SentimentAnalyzer | None = None,
        *,
        timestamps: TimestampRange = DEFAULT_TIMESTAMP_RANGE,
    ) -> None:
        self.policy = policy
        self.timestamps = timestamps
        self.detector = detector or LanguageDetector()
        self.sentiment = sentiment or SentimentAnalyzer()
        # A ticket's text is analysed again at every change (status, assignment, reply
        # flags) though it rarely changes, so the results for the most recent texts are
        # kept. Each is a pure function of its arguments: a hit is what a call would give.
        keep = functools.lru_cache(maxsize=TEXT_RESULTS_KEPT)
        self._detect = keep(self.detector.detect)
        self._sentiment = keep(self.sentiment.score)
        self._category = keep(guess_category)
        self._priority = keep(score_priority)

    def enrich(
        self, ctx: CustomerContext, event: ChangeEvent, budget: TimeBudget | None = None
    ) -> EnrichedTicket:
        """Enrich one ticket change and update the customer's context in place.

        With a ``budget`` that is spent after language detection, sentiment is skipped
        (label ``unknown``, no escalation) and the ticket's ``degraded`` says so.

        Raises:
            RowError: the row lacks required columns or holds malformed values (unknown
                status, channel or priority; a timestamp outside ``timestamps``).
        """
        row = merged_row(event) if event.after is not None else dict(event.before or {})
        ticket = Ticket.from_row(row, version=event.version, valid=self.timestamps)
        customer = ctx.customer
        tier = customer.tier if customer else "standard"
        profile_language = customer.language if customer else None

        text = f"{ticket.subject}\n{ticket.description}"
        lang = self._detect(text, fallback=profile_language)
        category = self._category(ticket.subject, ticket.description, explicit=ticket.category)
        priority = self._priority(
            subject=ticket.subject,
            description=ticket.description,
            tier=tier,
            channel=ticket.channel,
            explicit=ticket.priority,
        )
        reasons = priority.reasons if customer else (*priority.reasons, "customer unknown")
        if budget is None or budget.allows("sentiment"):
            mood = self._sentiment(text, lang.language)
        else:
            mood = UNKNOWN_SENTIMENT
        if (
            mood.label == "negative"
            and mood.score <= -0.6
            and priority.priority in ("low", "normal")
        ):
            # Strongly negative customers escalate one step; the reason says so.
            priority = type(priority)(
                "high" if priority.priority == "normal" else "normal",
                (*reasons, f"negative sentiment {mood.score:.2f}"),
            )
            reasons = priority.reasons
        previous_status = ctx.ticket_status.get(ticket.id)
        if event.op != "d" and ticket.is_open:
            ctx.ticket_status[ticket.id] = ticket.status
        else:
            ctx.ticket_status.pop(ticket.id, None)
        return EnrichedTicket(
            ticket=ticket,
            op=event.op,
            committed_at=event.committed_at,
            customer_tier=tier,
            customer_language=profile_language or "unknown",
            language=lang.language,
            language_confidence=lang.confidence,
            priority=priority.priority,
            priority_reasons=reasons,
            category=category.category,
            category_source=category.source,
            category_confidence=category.confidence,
            queue=self.policy.queue_for(category.category),
            enriched_at=datetime.now(UTC),
            previous_status=previous_status,
            organization=customer.organization if customer else None,
            region=customer.region if customer else "us",
            sentiment=None if mood.label == "unknown" else mood.score,
            sentiment_label=mood.label,
            sentiment_confidence=mood.confidence,
            degraded=tuple(budget.skipped) if budget is not None else (),
        )
