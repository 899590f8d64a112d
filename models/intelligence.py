"""The text intelligence of triage: category, intent, learned priority, KB suggestions.

Split in two so that predictions spread over every worker while learning stays ordered:

* :class:`TextModels` is the learned, shared part: the category, intent, multi-label and
  priority classifiers, the KB index with the feedback agents give it, and the reply
  drafter. One copy learns (the dataflow's ``learn_text`` step, under a single key: human
  labels are far fewer than predictions) and publishes versions; every worker predicts
  with the newest version it has (:class:`ModelStore`).
* :class:`TicketText` is what is kept per open ticket (keyed by ticket id): its sticky
  queue, what was derived from its text, the suggested articles, and comments that
  arrived before the ticket itself.

For each ticket change the models predict before they learn (prequential): a human label
(set at creation or corrected later) leaves :func:`classify_ticket` as a
:class:`LabelExample`, which the learner first scores against what it would have said,
then learns. A prediction is applied only above the model's confidence threshold; below
it the label is recorded as a suggestion and the keyword or rule result stays.

Queues are decided once per open ticket and kept (sticky) until it is solved, closed or
deleted, so a later relabel does not leave its load counted in two queues.

Kept as one module: the text models, their publication to the workers and the
classify step share one versioned state.
"""

from __future__ import annotations

import pickle
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from models.budget import TimeBudget
from models.duplicates import DuplicateDetector
from models.events import ChangeEvent
from models.helpdesk import PRIORITIES, EnrichedTicket, evolve
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

MAX_EARLY_COMMENTS = 100
"""Comments kept per ticket while the ticket itself has not arrived (oldest dropped)."""


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


@dataclass(frozen=True)
class LabelExample:
    """Human labels on a ticket's text, for the shared models to score and then learn.

    ``priority_text`` is the text with the structured pseudo-words the priority model
    reads (tier, channel, sentiment, intent); ``None`` when no priority is to be learned.
    """

    ticket_id: int
    text: str
    category: str | None = None
    intent: str | None = None
    priority: str | None = None
    priority_text: str | None = None


@dataclass(frozen=True)
class KbFeedback:
    """Which of the articles suggested for a ticket an agent linked in a reply."""

    ticket_id: int
    kb_key: str
    suggested: tuple[int, ...]
    linked: frozenset[int]


def _meta_tokens(et: EnrichedTicket) -> str:
    # Structured signals as pseudo-words so the same linear text model can weigh them.
    sentiment = et.sentiment_label if et.sentiment_label != "unknown" else "unk"
    return (
        f" zztier{et.customer_tier} zzchannel{et.ticket.channel} zzsent{sentiment}"
        f" zzintent{et.intent or 'none'}"
    )


class TextModels:
    """The learned text models every worker predicts with; one copy learns.

    Args:
        apply_threshold: confidence at which a model's label is applied automatically.
        min_examples: human labels a model must have learned before it may auto-apply.
        n_features: hashed feature space of each text model (memory: labels × features).
        metric_every: a :class:`ModelMetric` every this many labels per model.
        seed: seed of every model.

    ``version`` counts the changes learned so far (labels, articles, feedback), so a
    worker can tell whether a published copy is newer than its own.

    Example:
        >>> models = TextModels(n_features=2**12, min_examples=1)
        >>> _ = models.learn(LabelExample(1, "refund my invoice", category="billing"))
        >>> models.version, models.category.predict_one("invoice refund").label
        (1, 'billing')
    """

    def __init__(
        self,
        *,
        apply_threshold: float = 0.7,
        min_examples: int = 30,
        n_features: int = 2**16,
        metric_every: int = 100,
        seed: int = 0,
    ) -> None:
        self.category = OnlineTextClassifier(
            None,
            n_features=n_features,
            seed=seed,
            apply_threshold=apply_threshold,
            min_examples=min_examples,
            name="category-arow",
            idf=True,
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
        self.kb = KbIndex()
        self.responses = ResponseSuggester()
        self.metric_every = metric_every
        self.version = 0
        self._learned: dict[str, int] = {}

    def version_of(self, model: str) -> str:
        return str(getattr(self, model).version)

    # -- learning (one copy, in stream order) -------------------------------------------

    def learn(self, example: LabelExample) -> list[ModelMetric]:
        """Score, then learn, the human labels of one ticket change."""
        metrics: list[ModelMetric] = []
        if example.category:
            self.category.learn_one(example.text, example.category)
            self.categories.learn_one(example.text, {example.category})
            metrics += self._metric("category")
        if example.intent:
            self.intent.learn_one(example.text, example.intent)
            metrics += self._metric("intent")
        if example.priority in PRIORITIES and example.priority_text is not None:
            self.priority.learn_one(example.priority_text, example.priority)
            metrics += self._metric("priority")
        self.version += 1
        return metrics

    def on_kb_article(self, event: ChangeEvent) -> None:
        """Keep the KB index current with ``kb_articles`` changes."""
        row = event.row or {}
        article_id = int(event.key.get("id", row.get("id", 0)))
        self.version += 1
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

    def record_feedback(self, feedback: KbFeedback) -> None:
        """Learn which suggested articles agents attach (linked in a reply) or ignore."""
        for article_id in feedback.suggested:
            self.kb.record_feedback(feedback.kb_key, article_id, article_id in feedback.linked)
        self.version += 1

    # -- prediction (any worker) ---------------------------------------------------------

    def predict(
        self, et: EnrichedTicket, text: str, budget: TimeBudget | None = None
    ) -> dict[str, object]:
        """Category, categories, intent, learned priority, KB articles and a draft reply.

        Category and intent always run; the multi-label categories, the learned priority
        and the KB suggestions with the draft are skipped once ``budget`` is spent (the
        skipped parts are in ``budget.skipped``).
        """
        ticket = et.ticket
        out: dict[str, object] = {}

        def allows(part: str) -> bool:
            return budget is None or budget.allows(part)

        # Category: a human label wins; a confident model applies; else keep keywords.
        if ticket.category:
            out.update(category=ticket.category, category_source="ticket", category_confidence=1.0)
        elif self.category.metrics.n_seen > 0:
            pred = self.category.predict_one(text)
            if pred.auto_apply:
                out.update(
                    category=pred.label,
                    category_source="model",
                    category_confidence=round(pred.confidence, 4),
                )
            else:
                out.update(category_suggestion=pred.label)
        if self.categories.n_seen > 0 and allows("categories"):
            out["categories"] = tuple(sorted(self.categories.labels_above(text)))
        if ticket.intent:
            out.update(intent=ticket.intent, intent_source="ticket", intent_confidence=1.0)
        else:
            pred = self.intent.predict_one(text)
            source = "model" if pred.auto_apply else "suggestion"
            out.update(
                intent=pred.label, intent_source=source, intent_confidence=round(pred.confidence, 4)
            )
        # Until agents have taught it enough to auto-apply, the model is not consulted.
        if (
            not ticket.priority
            and self.priority.metrics.n_seen >= self.priority.min_examples
            and allows("learned_priority")
        ):
            meta = evolve(et, **out)
            pred = self.priority.predict_one(text + _meta_tokens(meta))
            if pred.auto_apply and pred.label in PRIORITIES:
                reasons = (
                    *et.priority_reasons,
                    f"learned from agents: {pred.label} ({pred.confidence:.2f})",
                )
                out.update(priority=pred.label, priority_reasons=reasons)
        category = str(out.get("category", et.category))
        intent = str(out.get("intent") or "other")
        kb_key = f"{category}:{intent}"
        articles = (
            self.kb.suggest(text, language=et.language, k=3, feedback_key=kb_key)
            if allows("kb_suggestions")
            else []
        )
        out["kb_suggestions"] = tuple((a.article_id, a.title, round(a.score, 3)) for a in articles)
        best: KbSuggestion | None = articles[0] if articles else None
        draft = self.responses.suggest(
            intent=intent,
            language=et.language,
            customer_name=None,
            article=best,
            subject=ticket.subject,
        )
        out["response_suggestion"] = draft.text
        out["_kb_key"] = kb_key
        out["_suggested"] = tuple(a.article_id for a in articles)
        return out

    def _metric(self, model: str) -> list[ModelMetric]:
        count = self._learned.get(model, 0) + 1
        self._learned[model] = count
        if count % self.metric_every:
            return []
        clf: OnlineTextClassifier = getattr(self, model)
        m = clf.metrics
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


class ModelStore(Protocol):
    """Where the learning copy publishes :class:`TextModels` and predictors read them."""

    def publish(self, models: TextModels) -> None: ...

    def latest(self, have: int) -> TextModels | None:
        """A copy newer than version ``have``, or ``None`` when there is none."""
        ...


class LocalModelStore:
    """Models shared by reference between the workers of one process.

    The learner's own object is published, so predictions in this process always use
    the newest model (no copy, no lag). Across processes use a shared store (Redis).
    """

    def __init__(self) -> None:
        self._models: TextModels | None = None
        self._lock = threading.Lock()

    def publish(self, models: TextModels) -> None:
        with self._lock:
            self._models = models

    def latest(self, have: int) -> TextModels | None:
        models = self._models
        if models is None or models.version <= have:
            return None
        return models


class SnapshotModelStore:
    """Models passed between the worker threads of one process as immutable copies.

    With several workers in a process, sharing the learner's own object would let one
    thread read models another is updating. Here the learner publishes a pickled snapshot
    (at most every ``model_publish_interval``) and predictors get one unpickled copy per
    version, which nobody mutates. Predictions lag learning by up to that interval, as
    they do across processes.
    """

    def __init__(self) -> None:
        self._data: bytes | None = None
        self._version = -1
        self._copy: TextModels | None = None
        self._lock = threading.Lock()

    def publish(self, models: TextModels) -> None:
        data = pickle.dumps(models, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._data, self._version, self._copy = data, models.version, None

    def latest(self, have: int) -> TextModels | None:
        with self._lock:
            if self._data is None or self._version <= have:
                return None
            if self._copy is None:
                self._copy = pickle.loads(self._data)
            return self._copy


@dataclass
class TicketText:
    """What is kept per open ticket: its sticky queue, labels and suggestions.

    Also holds the ticket's comments that arrived before the ticket itself (they travel
    a shorter path through the dataflow), released with it.
    """

    queue: str = ""
    category: str = ""
    intent: str | None = None
    suggested: tuple[int, ...] = ()
    kb_key: str = ""
    insights: dict[str, object] | None = None
    early_comments: list[TicketComment] = field(default_factory=list)
    dropped_comments: int = 0
    # Comments wait here, briefly, for ticket changes committed before them (which take a
    # longer path through the dataflow): (release deadline, source version, comment, body).
    held: list[tuple[datetime, int, TicketComment, str]] = field(default_factory=list)
    last_version: int = -1

    @property
    def seen(self) -> bool:
        return self.insights is not None

    def is_empty(self) -> bool:
        return not self.queue and not self.seen and not self.early_comments and not self.held

    # Timed state: the dataflow wakes the key when a held comment's wait is over.
    def tick(self, now: datetime) -> list[object]:
        due = [h for h in self.held if h[0] <= now]
        self.held = [h for h in self.held if h[0] > now]
        return _comment_outputs(self, [(c, b) for _, _, c, b in sorted(due, key=_version)])

    def next_wakeup(self) -> datetime | None:
        return min(h[0] for h in self.held) if self.held else None

    def finish(self) -> list[object]:
        """A finite input ended (tests, replays): held comments go out now."""
        due, self.held = sorted(self.held, key=_version), []
        return _comment_outputs(self, [(c, b) for _, _, c, b in due])

    def is_idle(self) -> bool:
        return self.is_empty()


@dataclass(frozen=True)
class Classified:
    """What :func:`classify_ticket` gives: the final ticket and what the learner needs.

    ``earlier`` are the outputs of comments committed before this change (``(queue,
    comment)`` pairs and :class:`KbFeedback`), to be emitted before the ticket;
    ``comments`` those that waited for the ticket's queue, emitted after it.
    """

    ticket: EnrichedTicket
    example: LabelExample | None
    comments: tuple[TicketComment, ...]
    earlier: tuple[object, ...] = ()


def classify_ticket(
    state: TicketText | None,
    models: TextModels,
    policy: RoutingPolicy,
    et: EnrichedTicket,
    event: ChangeEvent,
    budget: TimeBudget | None = None,
) -> tuple[TicketText | None, Classified]:
    """Predict (for new or re-worded tickets), collect human labels, fix the queue.

    ``budget``: the event's time allowance in this step (see :class:`TimeBudget`); what
    it made the models skip is added to the ticket's ``degraded``.
    """
    state = state or TicketText()
    # Comments committed before this change go first, in commit order.
    earlier = sorted((h for h in state.held if h[1] < event.version), key=_version)
    state.held = [h for h in state.held if h[1] >= event.version]
    before_outputs = _comment_outputs(state, [(c, b) for _, _, c, b in earlier])
    state.last_version = max(state.last_version, event.version)
    ticket = et.ticket
    before = event.before or {}
    text = f"{ticket.subject}\n{ticket.description}"
    is_new = event.op in ("c", "r") or not state.seen
    reworded = event.op == "u" and (
        before.get("subject") not in (None, ticket.subject)
        or before.get("description") not in (None, ticket.description)
    )
    updates: dict[str, object] = {}
    if is_new or reworded or state.insights is None:
        updates.update(models.predict(et, text, budget))
        if budget is not None and budget.skipped:
            updates["degraded"] = (*et.degraded, *budget.skipped)
        updates["duplicates"] = et.duplicates
        state.suggested = tuple(updates.pop("_suggested"))  # type: ignore[arg-type]
        state.kb_key = str(updates.pop("_kb_key"))
        state.category = str(updates.get("category", et.category))
        state.intent = updates.get("intent")  # type: ignore[assignment]
        # Parts skipped for time are tried again at the ticket's next change.
        state.insights = None if "degraded" in updates else dict(updates)
    else:
        # Same text: keep what was derived when it was first seen.
        updates.update(state.insights)
    # Labels a human set on the ticket always win over what the models derived.
    if ticket.category:
        updates.update(
            category=ticket.category,
            category_source="ticket",
            category_confidence=1.0,
            category_suggestion=None,
        )
    if ticket.intent:
        updates.update(intent=ticket.intent, intent_source="ticket", intent_confidence=1.0)
    if ticket.priority:
        updates.pop("priority", None)
        updates.pop("priority_reasons", None)

    # Human labels: set at creation, or changed by an agent later.
    label_category = (
        ticket.category
        if ticket.category and (is_new or before.get("category") != ticket.category)
        else None
    )
    label_intent = (
        ticket.intent
        if ticket.intent and (is_new or before.get("intent") != ticket.intent)
        else None
    )
    label_priority = (
        ticket.priority
        if ticket.priority in PRIORITIES and (is_new or before.get("priority") != ticket.priority)
        else None
    )
    example = None
    if label_category or label_intent or label_priority:
        priority_text = text + _meta_tokens(evolve(et, **updates)) if label_priority else None
        example = LabelExample(
            ticket.id, text, label_category, label_intent, label_priority, priority_text
        )

    category = str(updates.get("category", et.category))
    queue = state.queue or policy.queue_for(category)
    updates["queue"] = queue
    updates["model_versions"] = (
        ("category", models.category.version),
        ("intent", models.intent.version),
        ("priority", models.priority.version),
    )
    final = evolve(et, **updates)
    released = tuple(state.early_comments)
    state.early_comments = []
    done = Classified(final, example, released, tuple(before_outputs))
    state.queue = queue
    if event.op == "d" or ticket.status == "closed":
        # Gone for good: forget it (its duplicate entry stays for the window); comments
        # still held go out with their own wait.
        if not state.held:
            return None, done
        state.insights, state.suggested = None, ()
    elif not ticket.is_open:
        # Solved: what was derived is dropped (a reopened ticket is analysed afresh), the
        # queue is kept, so a customer's reply, which may reopen it, reaches its SLA clocks.
        state.insights, state.suggested = None, ()
    return state, done


def _version(held: tuple[datetime, int, TicketComment, str]) -> int:
    return held[1]


def _comment_outputs(state: TicketText, comments: list[tuple[TicketComment, str]]) -> list[object]:
    """Process comments in order: ``(queue, comment)`` for the queue, and KB feedback."""
    out: list[object] = []
    for comment, body in comments:
        _, queue, feedback = on_ticket_comment(state, comment, body)
        if feedback is not None:
            out.append(feedback)
        if queue is not None:
            out.append((queue, comment))
    return out


def hold_comment(
    state: TicketText | None,
    comment: TicketComment,
    body: str,
    *,
    version: int,
    now: datetime,
    hold: timedelta,
) -> tuple[TicketText, list[object]]:
    """A comment arrives: process it now, or hold it for earlier ticket changes.

    Ticket changes reach a ticket's state later than its comments do (they are enriched
    first), so a comment committed after a status change could overtake it and, say,
    fulfil a clock that the change paused. A comment newer than every change seen so far
    therefore waits up to ``hold`` for a change committed before it; the change releases
    it in commit order, or the wait ends. With ``hold`` zero, comments are never held.
    """
    state = state or TicketText()
    if hold <= timedelta(0) or version <= state.last_version:
        return state, _comment_outputs(state, [(comment, body)])
    state.held.append((now + hold, version, comment, body))
    return state, []


def on_ticket_comment(
    state: TicketText | None, comment: TicketComment, body: str
) -> tuple[TicketText | None, str | None, KbFeedback | None]:
    """A comment on a ticket: its queue (for SLA clocks), or held until the ticket comes.

    Returns the new state, the queue to send the comment to (``None`` while held) and the
    KB feedback an agent's reply gives (articles linked among those suggested).
    """
    state = state or TicketText()
    feedback = None
    if comment.author == "agent" and state.suggested:
        linked = frozenset(int(m) for m in _KB_REF.findall(body or ""))
        if linked:
            feedback = KbFeedback(comment.ticket_id, state.kb_key, state.suggested, linked)
            state.suggested = ()  # judge each ticket's suggestions once
    if state.queue:
        return state, state.queue, feedback
    state.early_comments.append(comment)
    if len(state.early_comments) > MAX_EARLY_COMMENTS:
        state.early_comments.pop(0)
        state.dropped_comments += 1
    return state, None, feedback


def find_duplicates(
    detector: DuplicateDetector | None, et: EnrichedTicket, event: ChangeEvent
) -> tuple[DuplicateDetector | None, EnrichedTicket]:
    """Near-duplicates among the recent tickets of the same customer or organisation.

    Kept per organisation (else per customer), so the dataflow keys it that way. A ticket
    is checked when it is new, re-worded, or not yet in the index; other changes keep what
    was found then (the ticket's text state remembers it).
    """
    detector = detector or DuplicateDetector()
    ticket = et.ticket
    before = event.before or {}
    reworded = event.op == "u" and (
        before.get("subject") not in (None, ticket.subject)
        or before.get("description") not in (None, ticket.description)
    )
    if event.op in ("c", "r") or reworded or ticket.id not in detector:
        matches = detector.check_and_add(
            ticket.id,
            f"{ticket.subject}\n{ticket.description}",
            customer_id=ticket.customer_id,
            organization=et.organization,
            at=et.committed_at,
        )
        found = tuple((m.ticket_id, round(m.similarity, 3)) for m in matches)
        if found != et.duplicates:  # a copy of ~40 fields: only when needed
            et = evolve(et, duplicates=found)
    return (detector if len(detector) else None), et
