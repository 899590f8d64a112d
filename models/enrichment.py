"""Ticket enrichment: language, category, priority and queue for every ticket change.

The per-customer state (:class:`CustomerContext`) is what the dataflow keeps keyed by
customer id: the customer's profile and the queue of each of their open tickets. Queues
are sticky while a ticket is open so that a later category correction does not leave the
ticket's load counted in two queues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from models.categories import guess_category
from models.events import ChangeEvent
from models.helpdesk import UNAVAILABLE, Customer, EnrichedTicket, Ticket
from models.language import LanguageDetector
from models.priority import score_priority
from models.routing import RoutingPolicy


@dataclass
class CustomerContext:
    """Keyed state per customer: profile plus the sticky queue of each open ticket."""

    customer: Customer | None = None
    ticket_queues: dict[int, str] = field(default_factory=dict)
    ticket_status: dict[int, str] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return self.customer is None and not self.ticket_queues


def merged_row(event: ChangeEvent) -> dict[str, object]:
    """The row after the change, with Debezium's unavailable placeholders filled from before."""
    after = dict(event.after or {})
    before = event.before or {}
    for column, value in after.items():
        if value == UNAVAILABLE:
            after[column] = before.get(column) if before.get(column) != UNAVAILABLE else None
    return after


class TicketEnricher:
    """Turns a ticket change into an :class:`EnrichedTicket` (stateless apart from models)."""

    def __init__(self, policy: RoutingPolicy, detector: LanguageDetector | None = None) -> None:
        self.policy = policy
        self.detector = detector or LanguageDetector()

    def enrich(self, ctx: CustomerContext, event: ChangeEvent) -> EnrichedTicket:
        """Enrich one ticket change and update the customer's context in place.

        Raises:
            RowError: the row lacks required columns or holds malformed values.
        """
        row = merged_row(event) if event.after is not None else dict(event.before or {})
        ticket = Ticket.from_row(row, version=event.version)
        customer = ctx.customer
        tier = customer.tier if customer else "standard"
        profile_language = customer.language if customer else None

        text = f"{ticket.subject}\n{ticket.description}"
        lang = self.detector.detect(text, fallback=profile_language)
        category = guess_category(ticket.subject, ticket.description, explicit=ticket.category)
        priority = score_priority(
            subject=ticket.subject,
            description=ticket.description,
            tier=tier,
            channel=ticket.channel,
            explicit=ticket.priority,
        )
        reasons = priority.reasons if customer else (*priority.reasons, "customer unknown")
        queue = ctx.ticket_queues.get(ticket.id) or self.policy.queue_for(category.category)
        previous_status = ctx.ticket_status.get(ticket.id)
        if event.op != "d" and ticket.is_open:
            ctx.ticket_queues[ticket.id] = queue
            ctx.ticket_status[ticket.id] = ticket.status
        else:
            ctx.ticket_queues.pop(ticket.id, None)
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
            queue=queue,
            enriched_at=datetime.now(UTC),
            previous_status=previous_status,
        )
