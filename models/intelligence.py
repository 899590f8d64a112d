"""The shared text models of triage: category, intent, learned priority, duplicates, KB.

One :class:`TextIntelligence` holds every model that learns from the whole helpdesk (so
the dataflow keeps it under a single key). For each ticket change it predicts before it
learns (prequential): a human label on the ticket (set at creation or corrected later)
is first scored against what the model would have said, then learned. A prediction is
applied only above the model's confidence threshold; below it the label is recorded as a
suggestion and the keyword or rule result stays.

Queues are decided once per open ticket and kept (sticky) until it is solved, closed or
deleted, so a later relabel does not leave its load counted in two queues.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime

from models.duplicates import DuplicateDetector
from models.events import ChangeEvent
from models.helpdesk import PRIORITIES, EnrichedTicket
from models.kb import KbIndex, KbSuggestion
from models.responses import ResponseSuggester
from models.routing import RoutingPolicy
from models.sla import TicketComment
from models.text_classifier import (
    IntentClassifier,
    MultiLabelTextClassifier,
    OnlineTextClassifier,
)

# An agent comment that links an article (".../kb/42" or "KB-42") attaches it.
_KB_REF = re.compile(r"(?:/kb/|\bKB-)(\d+)\b", re.IGNORECASE)


@dataclass(frozen=True)
class ModelMetric:
    """Prequential quality of one online model at one point of its stream."""

    model: str
    version: str
    at: datetime
    n_seen: int
    accuracy: float
    weighted_f1: float
    drift_detected: int


@dataclass
class _Memory:
    """What is kept per open ticket: its sticky queue, labels and suggestions."""

    queue: str
    category: str
    intent: str | None
    suggested: tuple[int, ...]
    kb_key: str
    insights: dict[str, object]


def _meta_tokens(et: EnrichedTicket) -> str:
    # Structured signals as pseudo-words so the same linear text model can weigh them.
    sentiment = et.sentiment_label if et.sentiment_label != "unknown" else "unk"
    return (
        f" zztier{et.customer_tier} zzchannel{et.ticket.channel} zzsent{sentiment}"
        f" zzintent{et.intent or 'none'}"
    )


class TextIntelligence:
    """Category, intent and priority models, duplicate detection and KB suggestions.

    Args:
        policy: category → queue mapping.
        apply_threshold: confidence at which a model's label is applied automatically.
        min_examples: human labels a model must have learned before it may auto-apply.
        n_features: hashed feature space of each text model (memory: labels × features).
        max_open_tickets: bound of the per-ticket memory (oldest dropped first).
        seed: seed of every model.

    Example:
        >>> ti = TextIntelligence(RoutingPolicy(), n_features=2**14)
        >>> ti.version_of("intent").startswith("intent")
        True
    """

    def __init__(
        self,
        policy: RoutingPolicy,
        *,
        apply_threshold: float = 0.7,
        min_examples: int = 30,
        n_features: int = 2**16,
        max_open_tickets: int = 200_000,
        metric_every: int = 100,
        seed: int = 0,
    ) -> None:
        self.policy = policy
        self.category = OnlineTextClassifier(
            None,
            n_features=n_features,
            seed=seed,
            apply_threshold=apply_threshold,
            min_examples=min_examples,
            name="category-arow",
        )
        self.intent = IntentClassifier(
            n_features=n_features,
            seed=seed,
            apply_threshold=apply_threshold,
            min_examples=min_examples,
        )
        self.priority = OnlineTextClassifier(
            PRIORITIES,
            n_features=n_features,
            seed=seed,
            apply_threshold=apply_threshold,
            min_examples=min_examples,
            name="priority-arow",
        )
        # Multi-label categories: a ticket can be about billing and an account at once.
        # Human category labels teach it (one label per ticket, as the helpdesk records),
        # which makes the per-label models compete; a threshold below one half admits a
        # second category when the text carries both.
        self.categories = MultiLabelTextClassifier(
            [], n_features=n_features, seed=seed, threshold=0.35, name="categories-arow"
        )
        self.duplicates = DuplicateDetector()
        self.kb = KbIndex()
        self.responses = ResponseSuggester()
        self.memory: OrderedDict[int, _Memory] = OrderedDict()
        # Comments that arrived before their ticket (they travel a shorter path through
        # the dataflow); released right after the ticket. Bounded, oldest dropped first.
        self.early_comments: OrderedDict[int, list[TicketComment]] = OrderedDict()
        self.max_early_comments = 10_000
        self.dropped_comments = 0
        self.max_open_tickets = max_open_tickets
        self.metric_every = metric_every
        self._learned: dict[str, int] = {}

    def version_of(self, model: str) -> str:
        return str(getattr(self, model).version)

    # -- knowledge base ----------------------------------------------------------------

    def on_kb_article(self, event: ChangeEvent) -> None:
        """Keep the KB index current with ``kb_articles`` changes."""
        row = event.row or {}
        article_id = int(event.key.get("id", row.get("id", 0)))
        if event.op == "d" or event.after is None:
            self.kb.remove(article_id)
            return
        after = event.after
        self.kb.upsert(
            article_id,
            str(after.get("title") or ""),
            str(after.get("body") or ""),
            language=str(after.get("language") or "en"),
            category=after.get("category"),
            published=bool(after.get("published", True)),
        )

    def on_comment(self, comment: TicketComment, body: str) -> list[tuple[str, TicketComment]]:
        """Route a comment to its ticket's queue (for SLA clocks); learn KB feedback."""
        if comment.author == "agent":
            self.on_agent_comment(comment.ticket_id, body)
        memory = self.memory.get(comment.ticket_id)
        if memory is not None and memory.queue:
            return [(memory.queue, comment)]
        self.early_comments.setdefault(comment.ticket_id, []).append(comment)
        while len(self.early_comments) > self.max_early_comments:
            _, dropped = self.early_comments.popitem(last=False)
            self.dropped_comments += len(dropped)
        return []

    def release_comments(self, ticket_id: int, queue: str) -> list[tuple[str, TicketComment]]:
        """Comments that waited for this ticket, now that its queue is known."""
        return [(queue, c) for c in self.early_comments.pop(ticket_id, [])]

    def on_agent_comment(self, ticket_id: int, body: str) -> None:
        """Learn which suggested articles agents attach (linked in a reply) or ignore."""
        memory = self.memory.get(ticket_id)
        if memory is None or not memory.suggested:
            return
        linked = {int(m) for m in _KB_REF.findall(body or "")}
        if not linked:
            return
        for article_id in memory.suggested:
            self.kb.record_feedback(memory.kb_key, article_id, article_id in linked)
        memory.suggested = ()  # judge each ticket's suggestions once

    # -- tickets -----------------------------------------------------------------------

    def on_ticket(
        self, et: EnrichedTicket, event: ChangeEvent
    ) -> tuple[EnrichedTicket, list[ModelMetric]]:
        """Predict (for new or re-worded tickets), learn from human labels, fix the queue."""
        ticket = et.ticket
        before = event.before or {}
        text = f"{ticket.subject}\n{ticket.description}"
        metrics: list[ModelMetric] = []
        is_new = event.op in ("c", "r") or ticket.id not in self.memory
        reworded = event.op == "u" and (
            before.get("subject") not in (None, ticket.subject)
            or before.get("description") not in (None, ticket.description)
        )
        analyse = is_new or reworded

        updates: dict[str, object] = {}
        if analyse:
            updates.update(self._classify(et, text))
        else:
            # Same text: keep what was derived when it was first seen.
            updates.update(self.memory[ticket.id].insights)
        # Labels a human set on the ticket always win over what the models derived.
        if ticket.category:
            updates.update(category=ticket.category, category_source="ticket",
                           category_confidence=1.0, category_suggestion=None)  # fmt: skip
        if ticket.intent:
            updates.update(intent=ticket.intent, intent_source="ticket", intent_confidence=1.0)
        if ticket.priority:
            updates.pop("priority", None)
            updates.pop("priority_reasons", None)

        # Human labels: set at creation, or changed by an agent later.
        human_category = ticket.category and (is_new or before.get("category") != ticket.category)
        if human_category and ticket.category:
            self.category.learn_one(text, ticket.category)
            self.categories.learn_one(text, {ticket.category})
            metrics += self._metric("category")
        human_intent = ticket.intent and (is_new or before.get("intent") != ticket.intent)
        if human_intent and ticket.intent:
            self.intent.learn_one(text, ticket.intent)
            metrics += self._metric("intent")
        human_priority = ticket.priority and (is_new or before.get("priority") != ticket.priority)
        if human_priority and ticket.priority in PRIORITIES:
            self.priority.learn_one(text + _meta_tokens(replace(et, **updates)), ticket.priority)  # type: ignore[arg-type]
            metrics += self._metric("priority")

        category = str(updates.get("category", et.category))
        updates["queue"] = self._sticky_queue(ticket.id, category, event, ticket.is_open)
        updates["model_versions"] = (
            ("category", self.category.version),
            ("intent", self.intent.version),
            ("priority", self.priority.version),
        )
        return replace(et, **updates), metrics  # type: ignore[arg-type]

    def _classify(self, et: EnrichedTicket, text: str) -> dict[str, object]:
        ticket = et.ticket
        out: dict[str, object] = {}
        # Category: a human label wins; a confident model applies; else keep keywords.
        if ticket.category:
            out.update(category=ticket.category, category_source="ticket",
                       category_confidence=1.0)  # fmt: skip
        elif self.category.metrics.n_seen > 0:
            pred = self.category.predict_one(text)
            if pred.auto_apply:
                out.update(category=pred.label, category_source="model",
                           category_confidence=round(pred.confidence, 4))  # fmt: skip
            else:
                out.update(category_suggestion=pred.label)
        if self.categories.n_seen > 0:
            out["categories"] = tuple(sorted(self.categories.labels_above(text)))
        # Intent.
        if ticket.intent:
            out.update(intent=ticket.intent, intent_source="ticket", intent_confidence=1.0)
        else:
            pred = self.intent.predict_one(text)
            source = "model" if pred.auto_apply else "suggestion"
            out.update(intent=pred.label, intent_source=source,
                       intent_confidence=round(pred.confidence, 4))  # fmt: skip
        # Learned priority, once agents have taught it, unless a human set one.
        # Until agents have taught it enough to auto-apply, the model is not consulted.
        if not ticket.priority and self.priority.metrics.n_seen >= self.priority.min_examples:
            meta = replace(et, **out)  # type: ignore[arg-type]
            pred = self.priority.predict_one(text + _meta_tokens(meta))
            if pred.auto_apply and pred.label in PRIORITIES:
                reasons = (*et.priority_reasons, f"learned from agents: {pred.label} "
                           f"({pred.confidence:.2f})")  # fmt: skip
                out.update(priority=pred.label, priority_reasons=reasons)
        # Duplicates among the same customer's or organisation's recent tickets.
        matches = self.duplicates.check_and_add(
            ticket.id, text, customer_id=ticket.customer_id, organization=et.organization,
            at=et.committed_at,
        )  # fmt: skip
        out["duplicates"] = tuple((m.ticket_id, round(m.similarity, 3)) for m in matches)
        # KB suggestions and a draft reply.
        category = str(out.get("category", et.category))
        intent = str(out.get("intent") or "other")
        kb_key = f"{category}:{intent}"
        articles = self.kb.suggest(text, language=et.language, k=3, feedback_key=kb_key)
        out["kb_suggestions"] = tuple((a.article_id, a.title, round(a.score, 3)) for a in articles)
        best: KbSuggestion | None = articles[0] if articles else None
        draft = self.responses.suggest(
            intent=intent, language=et.language, customer_name=None, article=best,
            subject=ticket.subject,
        )  # fmt: skip
        out["response_suggestion"] = draft.text
        self._remember(ticket.id, category, out.get("intent"), articles, kb_key, out)  # type: ignore[arg-type]
        return out

    def _remember(
        self,
        ticket_id: int,
        category: str,
        intent: str | None,
        articles: list[KbSuggestion],
        kb_key: str,
        insights: dict[str, object],
    ) -> None:
        previous = self.memory.get(ticket_id)
        queue = previous.queue if previous else ""
        self.memory[ticket_id] = _Memory(
            queue, category, intent, tuple(a.article_id for a in articles), kb_key, dict(insights)
        )
        self.memory.move_to_end(ticket_id)
        while len(self.memory) > self.max_open_tickets:
            self.memory.popitem(last=False)

    def _sticky_queue(
        self, ticket_id: int, category: str, event: ChangeEvent, is_open: bool
    ) -> str:
        mem = self.memory.get(ticket_id)
        queue = (mem.queue if mem and mem.queue else "") or self.policy.queue_for(category)
        if event.op == "d" or not is_open:
            # Leaving triage: forget it (its duplicate entry stays for the window).
            self.memory.pop(ticket_id, None)
        elif mem is not None:
            mem.queue = queue
        return queue

    def _metric(self, model: str) -> list[ModelMetric]:
        count = self._learned.get(model, 0) + 1
        self._learned[model] = count
        if count % self.metric_every:
            return []
        clf: OnlineTextClassifier = getattr(self, model)
        m = clf.metrics
        from datetime import UTC

        return [
            ModelMetric(
                model=model,
                version=clf.version,
                at=datetime.now(UTC),
                n_seen=m.n_seen,
                accuracy=round(m.accuracy, 4),
                weighted_f1=round(m.weighted_f1, 4),
                drift_detected=m.drift_detected_count,
            )
        ]
