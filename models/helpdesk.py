"""Helpdesk entities (customers, agents, tickets) and the enriched ticket / routing decision.

Rows arrive from CDC with Debezium's value encodings (timestamps as ISO strings or epoch
numbers, JSON columns as strings, arrays as lists); the ``from_row`` parsers accept every
one of those so that both inbound paths produce the same entities.

Kept as one module: it is the domain's vocabulary: the records every room
shares.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from models.roster import Roster, RosterError

UNAVAILABLE = "__debezium_unavailable_value"
"""Debezium's placeholder for an unchanged TOASTed column it could not read."""

OPEN_STATUSES = frozenset({"new", "open", "pending", "on_hold"})
DONE_STATUSES = frozenset({"solved", "closed"})
PRIORITIES = ("urgent", "high", "normal", "low")
# The values the source schema's CHECK constraints allow (sql/source/001_helpdesk.sql).
TICKET_STATUSES = ("new", "open", "pending", "on_hold", "solved", "closed")
CHANNELS = ("email", "web", "chat", "phone", "api")
CUSTOMER_TIERS = ("free", "standard", "premium", "enterprise")
AGENT_STATUSES = ("online", "away", "offline")

BIGINT_MAX = 2**63 - 1

MAX_SUBJECT_CHARS = 1_024
"""Longest subject kept; longer ones are cut and end with :data:`TRUNCATION_MARKER`."""
MAX_DESCRIPTION_CHARS = 65_536
"""Longest description kept (64 Ki characters), so text work per ticket is bounded."""
TRUNCATION_MARKER = " [truncated]"


class RowError(ValueError):
    """A CDC row lacks a required column or holds a value of the wrong kind."""


_R = TypeVar("_R")


@functools.cache
def _plain_fields(cls: type) -> frozenset[str]:
    if not is_dataclass(cls) or hasattr(cls, "__post_init__") or hasattr(cls, "__slots__"):
        raise TypeError(
            f"{cls.__name__}: evolve() needs a dataclass without __post_init__ or slots"
        )
    return frozenset(f.name for f in fields(cls) if f.init)


def evolve(record: _R, **changes: Any) -> _R:
    """``dataclasses.replace`` for the plain records of the hot path, about nine times faster.

    ``replace`` calls the class's ``__init__`` with every field (a frozen class sets each
    through ``object.__setattr__``); a record without ``__post_init__`` has nothing that
    ``__init__`` would compute, so its attributes are copied and ``changes`` applied.

    Example:
        >>> t = Ticket(1, 2, "Refund", "Please refund order 7", "email", "new", None,
        ...     None, None, None, datetime(2026, 1, 5, tzinfo=UTC), None, None, None, None)
        >>> from dataclasses import replace
        >>> evolve(t, status="open") == replace(t, status="open")
        True
        >>> evolve(t, colour="red")
        Traceback (most recent call last):
        TypeError: Ticket has no field colour
    """
    cls: type = type(record)
    unknown = changes.keys() - _plain_fields(cls)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
    new: _R = object.__new__(cls)
    new.__dict__.update(record.__dict__)
    new.__dict__.update(changes)
    return new


@dataclass(frozen=True)
class TimestampRange:
    """The instants a helpdesk row may hold: ``earliest <= t < latest``.

    Values outside it (``1970-01-01`` from a zeroed column, ``9999-12-31`` or
    ``infinity`` as "never") are rejected when a row is parsed, so that no SLA
    arithmetic downstream meets a date near the ends of the calendar.
    """

    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    latest: datetime = datetime(2100, 1, 1, tzinfo=UTC)

    def __post_init__(self) -> None:
        if self.earliest.tzinfo is None or self.latest.tzinfo is None:
            raise ValueError("timestamp range bounds must be aware datetimes")
        if self.latest <= self.earliest:
            raise ValueError("timestamp range: latest must be after earliest")

    def check(self, value: datetime, name: str = "timestamp") -> datetime:
        """``value`` itself when it lies in the range, else a :class:`RowError`."""
        if not self.earliest <= value < self.latest:
            raise RowError(
                f"{name} {value.isoformat()} is outside the accepted range "
                f"[{self.earliest.date()}, {self.latest.date()})"
            )
        return value


DEFAULT_TIMESTAMP_RANGE = TimestampRange()

# PostgreSQL's special timestamp values as text (its epoch sentinels fall outside any range).
_INFINITE = frozenset({"infinity", "+infinity", "-infinity"})


def parse_timestamp(
    value: Any, *, name: str = "timestamp", valid: TimestampRange | None = DEFAULT_TIMESTAMP_RANGE
) -> datetime | None:
    """Parse a timestamp in any of Debezium's encodings into an aware datetime.

    Accepts datetimes, ISO-8601 strings (ZonedTimestamp, with ``Z`` or an offset) and epoch
    numbers, whose unit (s, ms, µs, ns) is inferred from the magnitude, which is
    unambiguous for dates between 1973 and 2286.

    Args:
        value: The column value; ``None`` and Debezium's unavailable placeholder give ``None``.
        name: The column, named in the error.
        valid: Accepted range; ``None`` accepts every representable instant.

    Raises:
        RowError: not a timestamp, ``infinity``, or outside ``valid``.
    """
    parsed = _parse_timestamp(value, name)
    if parsed is None or valid is None:
        return parsed
    return valid.check(parsed, name)


def _parse_timestamp(value: Any, name: str) -> datetime | None:
    if value is None or value == UNAVAILABLE:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        raise RowError(f"{name} is not a timestamp: {value!r}")
    if isinstance(value, int | float):
        try:
            return _from_epoch(value)
        except (OverflowError, ValueError) as exc:  # inf, NaN, or beyond year 9999
            raise RowError(f"{name} is not a representable timestamp: {value!r}") from exc
    if isinstance(value, str):
        text = value.strip().replace(" ", "T", 1)
        if text.lower() in _INFINITE:
            raise RowError(f"{name} is {text.lower()!r}, not an instant")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise RowError(f"{name} is not a timestamp: {value[:80]!r}") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise RowError(f"{name} is not a timestamp: {value!r}")


def _from_epoch(value: float) -> datetime:
    magnitude = abs(value)
    if magnitude >= 1e17:
        seconds = value / 1e9
    elif magnitude >= 1e14:
        seconds = value / 1e6
    elif magnitude >= 1e11:
        seconds = value / 1e3
    else:
        seconds = float(value)
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


def parse_json(value: Any) -> Any:
    """JSON columns come as strings from Debezium (io.debezium.data.Json)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise RowError(f"not JSON: {value[:80]!r}") from exc
    return value


def _req(row: Mapping[str, Any], name: str) -> Any:
    if name not in row or row[name] is None:
        raise RowError(f"missing column {name!r}")
    return row[name]


def _int(value: Any, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """An integer column, within ``lo..hi`` when given (the schema's CHECK constraints)."""
    if value is None:
        raise RowError(f"column {name!r} is empty")
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise RowError(f"column {name!r} is not an integer: {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise RowError(f"column {name!r} is not an integer: {str(value)[:80]!r}") from exc
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise RowError(f"column {name!r} is {number}, outside {lo}..{hi}")
    return number


def _opt_int(value: Any, name: str, lo: int | None = None, hi: int | None = None) -> int | None:
    return None if value is None else _int(value, name, lo, hi)


def _id(value: Any, name: str) -> int:
    """A row id: a positive PostgreSQL bigint."""
    return _int(value, name, 1, BIGINT_MAX)


def parse_id(value: Any, name: str) -> int:
    """A row id column's value, or a :class:`RowError` naming the column.

    >>> parse_id("42", "customer_id")
    42
    >>> parse_id(None, "customer_id")
    Traceback (most recent call last):
    ...
    models.helpdesk.RowError: column 'customer_id' is empty
    """
    return _id(value, name)


def _opt_id(value: Any, name: str) -> int | None:
    return None if value is None else _id(value, name)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _enum(value: Any, name: str, allowed: tuple[str, ...], default: str) -> str:
    """The column's value, which must be one of ``allowed``; missing or empty → ``default``."""
    if value is None or value == "":
        return default
    if isinstance(value, str) and value in allowed:
        return value
    raise RowError(
        f"column {name!r} has unknown value {str(value)[:80]!r}; allowed: {', '.join(allowed)}"
    )


def _opt_enum(value: Any, name: str, allowed: tuple[str, ...]) -> str | None:
    return None if value is None else _enum(value, name, allowed, "")


def bounded_text(value: Any, limit: int) -> str:
    """``value`` as text of at most ``limit`` characters plus :data:`TRUNCATION_MARKER`.

    Example:
        >>> bounded_text("x" * 10, 4)
        'xxxx [truncated]'
    """
    text = str(value or "")
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATION_MARKER


@dataclass(frozen=True)
class Customer:
    id: int
    name: str
    organization: str | None
    tier: str
    language: str
    region: str
    version: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, version: int = 0) -> Customer:
        return cls(
            id=_id(_req(row, "id"), "id"),
            name=str(row.get("name") or ""),
            organization=_opt_str(row.get("organization")),
            tier=_enum(row.get("tier"), "tier", CUSTOMER_TIERS, "standard"),
            language=str(row.get("language") or "en"),
            region=str(row.get("region") or "us"),
            version=version,
        )


def _text_array(value: Any, name: str) -> tuple[str, ...]:
    """A text[] column: a list (Debezium, the embedded reader) or a PostgreSQL literal."""
    if value is None or value == UNAVAILABLE:
        return ()
    if isinstance(value, str):
        value = [x.strip('"') for x in value.strip("{}").split(",") if x]
    if not isinstance(value, list | tuple):
        raise RowError(f"column {name!r} is not a list of text: {str(value)[:80]!r}")
    return tuple(str(x) for x in value if str(x))


def _roster(value: Any) -> Roster | None:
    if value is None or value == "" or value == {}:
        return None
    try:
        return Roster.from_json(value)
    except RosterError as exc:
        raise RowError(f"column 'roster': {exc}") from exc


@dataclass(frozen=True)
class Agent:
    id: int
    name: str
    team: str
    skills: Mapping[str, float]
    languages: tuple[str, ...]
    capacity: int
    status: str
    shift_start: int = 0
    shift_end: int = 24
    version: int = 0
    # Dated working hours in the agent's time zone (models.roster); when set, they replace
    # shift_start/shift_end. Agents saved before rosters existed read the class default.
    roster: Roster | None = None
    # Queues the agent also serves besides its team's (``agents.queues``); they count only
    # within the team's routing pool, where one load per agent covers all its queues.
    queues: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, version: int = 0) -> Agent:
        skills_raw = parse_json(row.get("skills") or {})
        if not isinstance(skills_raw, Mapping):
            raise RowError(f"column 'skills' is not an object: {skills_raw!r}")
        try:
            skills = {str(k): float(v) for k, v in skills_raw.items()}
        except (TypeError, ValueError) as exc:
            raise RowError(f"column 'skills' has a non-numeric level: {skills_raw!r}") from exc
        languages = row.get("languages") or ["en"]
        if isinstance(languages, str):  # a Postgres array literal such as {en,de}
            languages = [x for x in languages.strip("{}").split(",") if x]
        return cls(
            id=_id(_req(row, "id"), "id"),
            name=str(row.get("name") or ""),
            team=str(_req(row, "team")),
            skills=skills,
            languages=tuple(str(x) for x in languages),
            capacity=_int(row.get("capacity", 5), "capacity", 0, 2**31 - 1),
            status=_enum(row.get("status"), "status", AGENT_STATUSES, "online"),
            shift_start=_int(row.get("shift_start", 0), "shift_start", 0, 23),
            shift_end=_int(row.get("shift_end", 24), "shift_end", 1, 24),
            version=version,
            roster=_roster(row.get("roster")),
            queues=_text_array(row.get("queues"), "queues"),
        )

    def serves(self, queue: str) -> bool:
        """Whether the agent takes work of ``queue``: its team's, or one it lists."""
        return queue == self.team or queue in self.queues

    def on_shift(self, at: datetime) -> bool:
        """True when ``at`` falls inside the agent's roster or, without one, inside its
        daily shift hours (UTC; shifts may wrap midnight)."""
        if self.roster is not None:
            return self.roster.on_shift(at)
        hour = at.astimezone(UTC).hour
        if self.shift_start <= self.shift_end:
            return self.shift_start <= hour < self.shift_end
        return hour >= self.shift_start or hour < self.shift_end

    def next_shift_start(self, after: datetime) -> datetime | None:
        """When the agent's next working interval (or daily shift) starts after ``after``;
        None when the roster has no work in the next week.

        Example:
            >>> from datetime import UTC, datetime
            >>> agent = Agent(1, "a", "t", {}, ("en",), 1, "online", shift_start=9, shift_end=17)
            >>> agent.next_shift_start(datetime(2026, 3, 2, 10, 15, tzinfo=UTC)).isoformat()
            '2026-03-03T09:00:00+00:00'
        """
        if self.roster is not None:
            return self.roster.next_start(after)
        if self.shift_start == 0 and self.shift_end == 24:
            return None  # always on shift: no start to wait for
        at = after.astimezone(UTC)
        start = at.replace(hour=self.shift_start, minute=0, second=0, microsecond=0)
        return start if start > at else start + timedelta(days=1)


def _opt_float(
    value: Any, name: str, lo: float = 0.0, hi: float = math.inf, *, required: bool = False
) -> float | None:
    """A finite real column within ``lo..hi``; None when NULL (an error when required)."""
    if value is None or value == UNAVAILABLE:
        if required:
            raise RowError(f"missing column {name!r}")
        return None
    if isinstance(value, bool):
        raise RowError(f"column {name!r} is not a number: {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise RowError(f"column {name!r} is not a number: {str(value)[:80]!r}") from exc
    if not (math.isfinite(number) and lo <= number <= hi):
        raise RowError(f"column {name!r} is {number}, outside {lo:g}..{hi:g}")
    return number


@dataclass(frozen=True)
class WorkOutcome:
    """One ``work_outcomes`` row: item X, handled by agent A in queue Q, took N seconds.

    Example:
        >>> o = WorkOutcome.from_row({"id": 3, "ticket_id": 42, "agent_id": 7, "queue": "calls",
        ...     "work_type": None, "handling_seconds": 184.5, "wait_seconds": 20,
        ...     "quality": None, "completed_at": "2026-03-02T09:15:00Z"})
        >>> o.ticket_id, o.queue, o.work_type, o.handling_seconds, o.completed_at.hour
        (42, 'calls', '', 184.5, 9)
        >>> WorkOutcome.from_row({"ticket_id": 42, "agent_id": 7, "queue": "calls",
        ...     "handling_seconds": -1, "completed_at": "2026-03-02T09:15:00Z"})
        Traceback (most recent call last):
        ...
        models.helpdesk.RowError: column 'handling_seconds' is -1.0, outside 0..inf
    """

    ticket_id: int | None  # None: history to learn from, no live item (warm start)
    agent_id: int
    queue: str
    work_type: str  # empty: the category the item was routed with
    handling_seconds: float
    completed_at: datetime
    wait_seconds: float | None = None
    quality: float | None = None
    origin: str = "api"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WorkOutcome:
        queue = str(_req(row, "queue")).strip()
        if not queue:
            raise RowError("column 'queue' is empty")
        completed_at = parse_timestamp(_req(row, "completed_at"), name="completed_at")
        assert completed_at is not None  # _req rejects NULL
        ticket_id = _opt_id(row.get("ticket_id"), "ticket_id")
        work_type = str(row.get("work_type") or "").strip()
        if ticket_id is None and not work_type:
            raise RowError("a history outcome (no ticket_id) needs a work_type")
        return cls(
            ticket_id=ticket_id,
            agent_id=_id(_req(row, "agent_id"), "agent_id"),
            queue=queue,
            work_type=work_type,
            handling_seconds=_opt_float(
                row.get("handling_seconds"), "handling_seconds", required=True
            )
            or 0.0,
            completed_at=completed_at,
            wait_seconds=_opt_float(row.get("wait_seconds"), "wait_seconds"),
            quality=_opt_float(row.get("quality"), "quality", 0.0, 1.0),
            origin=str(row.get("origin") or "api"),
        )


@dataclass(frozen=True)
class Ticket:
    id: int
    customer_id: int
    subject: str
    description: str
    channel: str
    status: str
    priority: str | None
    category: str | None
    intent: str | None
    assigned_agent_id: int | None
    created_at: datetime
    updated_at: datetime | None
    first_reply_at: datetime | None
    solved_at: datetime | None
    csat: int | None
    version: int = 0

    @classmethod
    def from_row(
        cls,
        row: Mapping[str, Any],
        *,
        version: int = 0,
        valid: TimestampRange = DEFAULT_TIMESTAMP_RANGE,
    ) -> Ticket:
        """Parse and validate a ``tickets`` row.

        Subjects and descriptions longer than :data:`MAX_SUBJECT_CHARS` /
        :data:`MAX_DESCRIPTION_CHARS` are cut and marked, not rejected.

        Raises:
            RowError: a required column is missing, a status, channel or priority is not
                one the schema allows, or a timestamp is outside ``valid``.
        """

        def timestamp(column: str) -> datetime | None:
            return parse_timestamp(row.get(column), name=column, valid=valid)

        created = parse_timestamp(_req(row, "created_at"), name="created_at", valid=valid)
        assert created is not None
        return cls(
            id=_id(_req(row, "id"), "id"),
            customer_id=_id(_req(row, "customer_id"), "customer_id"),
            subject=bounded_text(row.get("subject"), MAX_SUBJECT_CHARS),
            description=bounded_text(row.get("description"), MAX_DESCRIPTION_CHARS),
            channel=_enum(row.get("channel"), "channel", CHANNELS, "email"),
            status=_enum(row.get("status"), "status", TICKET_STATUSES, "new"),
            priority=_opt_enum(row.get("priority"), "priority", PRIORITIES),
            category=_opt_str(row.get("category")),
            intent=_opt_str(row.get("intent")),
            assigned_agent_id=_opt_id(row.get("assigned_agent_id"), "assigned_agent_id"),
            created_at=created,
            updated_at=timestamp("updated_at"),
            first_reply_at=timestamp("first_reply_at"),
            solved_at=timestamp("solved_at"),
            csat=_opt_int(row.get("csat"), "csat", 1, 5),
            version=version,
        )

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True)
class EnrichedTicket:
    """A ticket with everything the enrichment step derived, ready for routing and sinks."""

    ticket: Ticket
    op: str
    committed_at: datetime
    customer_tier: str
    customer_language: str
    language: str
    language_confidence: float
    priority: str
    priority_reasons: tuple[str, ...]
    category: str
    queue: str
    enriched_at: datetime
    previous_status: str | None = None
    organization: str | None = None
    region: str = "us"
    sentiment: float | None = None
    sentiment_label: str = "unknown"
    sentiment_confidence: float = 0.0
    intent: str | None = None
    intent_confidence: float = 0.0
    intent_source: str = "none"  # ticket (human), model (auto-applied), suggestion, none
    category_confidence: float = 0.0
    category_source: str = "keywords"  # ticket, model, keywords, fallback
    category_suggestion: str | None = None  # the model's label when not confident enough
    categories: tuple[str, ...] = ()  # every category the multi-label model assigns
    duplicates: tuple[tuple[int, float], ...] = ()  # (ticket id, similarity)
    kb_suggestions: tuple[tuple[int, str, float], ...] = ()  # (article id, title, score)
    response_suggestion: str | None = None
    first_reply_due: datetime | None = None
    resolution_due: datetime | None = None
    sla_policy: str | None = None
    sla_breached: bool = False
    model_versions: tuple[tuple[str, str], ...] = ()
    # Optional parts skipped to keep within the per-event time budget, with the reason.
    degraded: tuple[str, ...] = ()

    @property
    def ticket_id(self) -> int:
        return self.ticket.id

    @property
    def version(self) -> int:
        return self.ticket.version

    def for_routing(self) -> EnrichedTicket:
        """The ticket as routing, SLA clocks and breach risk see it: its text, suggestions
        and explanations left out (none of them reads those), so that what crosses to a
        queue's worker and what its state journals is about half the size.

        Example:
            >>> t = Ticket(1, 2, "Refund", "Please refund order 7", "email", "new", None,
            ...     None, None, None, datetime(2026, 1, 5, tzinfo=UTC), None, None, None, None)
            >>> et = EnrichedTicket(t, "c", t.created_at, "gold", "en", "en", 1.0, "high",
            ...     ("keyword refund",), "billing", "billing", t.created_at,
            ...     kb_suggestions=((3, "Refunds", 0.9),))
            >>> slim = et.for_routing()
            >>> slim.ticket.description, slim.kb_suggestions, slim.priority, slim.queue
            ('', (), 'high', 'billing')
        """
        return evolve(
            self,
            ticket=evolve(self.ticket, subject="", description=""),
            priority_reasons=(),
            duplicates=(),
            kb_suggestions=(),
            response_suggestion=None,
            model_versions=(),
            degraded=(),
        )


DecisionStatus = Literal["assigned", "queued", "released"]


@dataclass(frozen=True)
class RoutingDecision:
    """Where a ticket goes and why.

    ``status`` is ``assigned`` (an agent was chosen), ``queued`` (nobody eligible: the
    ticket waits in its queue's holding list) or ``released`` (the ticket left routing
    because it was solved, closed or deleted, freeing the agent's capacity).
    ``version`` is the source version of the ticket change that produced the decision.
    """

    ticket_id: int
    version: int
    queue: str
    status: DecisionStatus
    agent_id: int | None
    score: float
    confidence: float
    reasons: tuple[str, ...]
    priority: str
    sla_deadline: datetime | None
    model_version: str
    decided_at: datetime
    source_committed_at: datetime
    candidates: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
