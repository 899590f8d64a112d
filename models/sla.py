"""SLA policies and per-ticket SLA clocks that emit metric events.

The model follows the idea of Zendesk's SLA policies and ticket metric events (and of
ServiceNow's SLA start/pause/stop conditions): each ticket runs up to three metric clocks,

- ``first_reply``: from creation until the first public agent reply;
- ``next_reply``: from each customer comment that follows an agent reply until the next
  public agent reply (one cycle at a time; the earliest unanswered comment starts it);
- ``resolution``: from creation until the ticket is solved. A reopen resumes it with the
  business time already used kept; the time spent solved counts as paused time.

A clock pauses while the ticket's status is one of its policy's ``pause_statuses``
(``pending`` — waiting on the customer — always; ``on_hold`` for the tiers whose policy
says so) and resumes when the ticket returns to an open status. Solving the ticket
fulfils every running metric. When the tier, priority or region changes, the business
time used and the paused time are kept and deadlines are recomputed with the new targets
and calendar.

Each change is reported as an ``SlaEvent`` (``apply``, ``pause``, ``resume``, ``fulfill``,
``breach``, ``update``). Breaches are found both when an input for the ticket arrives after
a deadline and by ``SlaTracker.tick(now)``, so a quiet ticket still breaches on time.

Default policies (``SlaPolicySet.default()``): targets of the *standard* tier, scaled by
tier (enterprise ×0.5, premium ×0.75, standard ×1, free ×2):

========  ===========  ==========  ==========  ===========================
priority  first_reply  next_reply  resolution  hours
========  ===========  ==========  ==========  ===========================
urgent    1 h          2 h         8 h         calendar (24×7)
high      4 h          8 h         24 h        business (region calendar)
normal    8 h          16 h        40 h        business
low       24 h         40 h        80 h        business
========  ===========  ==========  ==========  ===========================

``pending`` pauses every tier; ``on_hold`` pauses free and standard only, because premium
and enterprise customers are promised that third-party waits are on the helpdesk.
Unknown tiers use standard, unknown or missing priorities use normal.

Example:
    >>> from datetime import UTC, datetime
    >>> tracker = SlaTracker()
    >>> t0 = datetime(2024, 3, 4, 14, 0, tzinfo=UTC)  # Monday 09:00 in New York
    >>> [e.kind for e in tracker.apply(TicketUpdate(1, t0, "new", "high", "standard", "us"))]
    ['apply', 'apply']
    >>> tracker.next_deadline(1)  # 4 business hours: 13:00 New York
    datetime.datetime(2024, 3, 4, 18, 0, tzinfo=datetime.timezone.utc)

Kept as one module: the policies, business-time arithmetic and per-ticket clocks
emit one event stream whose replay guarantees depend on all three.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from models.calendar import ALWAYS_OPEN, BusinessCalendar, calendar_for_region
from models.helpdesk import DONE_STATUSES, PRIORITIES

Metric = Literal["first_reply", "next_reply", "resolution"]
SlaEventKind = Literal["apply", "pause", "resume", "fulfill", "breach", "update"]
ClockState = Literal["running", "paused", "fulfilled"]

METRICS: tuple[Metric, ...] = ("first_reply", "next_reply", "resolution")
TIERS = ("free", "standard", "premium", "enterprise")

_BASE_TARGETS_HOURS: dict[str, tuple[float, float, float]] = {
    "urgent": (1, 2, 8),
    "high": (4, 8, 24),
    "normal": (8, 16, 40),
    "low": (24, 40, 80),
}
_TIER_FACTORS = {"enterprise": 0.5, "premium": 0.75, "standard": 1.0, "free": 2.0}
_TIERS_PAUSED_ON_HOLD = frozenset({"free", "standard"})
_STATE_EVENTS: dict[ClockState, SlaEventKind] = {
    "fulfilled": "fulfill",
    "paused": "pause",
    "running": "resume",
}


@dataclass(frozen=True)
class SlaPolicy:
    """Targets of one tier × priority and the rules of its clocks.

    Args:
        name: Shown on every SLA event, e.g. ``standard-high``.
        first_reply: Target of the first public agent reply; None = not measured.
        next_reply: Target of each later reply to a customer comment; None = not measured.
        resolution: Target of solving the ticket; None = not measured.
        business_hours: Measure in the customer region's business calendar; False means
            calendar hours (24×7).
        pause_statuses: Ticket statuses during which the clocks stop.

    Example:
        >>> SlaPolicy("p", timedelta(hours=1), None, None).target("first_reply")
        datetime.timedelta(seconds=3600)
    """

    name: str
    first_reply: timedelta | None
    next_reply: timedelta | None
    resolution: timedelta | None
    business_hours: bool = True
    pause_statuses: frozenset[str] = frozenset({"pending"})

    def target(self, metric: Metric) -> timedelta | None:
        """The target of ``metric`` under this policy."""
        target: timedelta | None = getattr(self, metric)
        return target


@dataclass(frozen=True)
class SlaPolicySet:
    """Policies keyed by (customer tier, priority) with fallbacks for unknown values.

    Example:
        >>> SlaPolicySet.default().policy_for("enterprise", "urgent").first_reply
        datetime.timedelta(seconds=1800)
    """

    policies: Mapping[tuple[str, str], SlaPolicy]
    default_tier: str = "standard"
    default_priority: str = "normal"

    @classmethod
    def default(cls) -> SlaPolicySet:
        """The documented default table (see the module docstring)."""
        policies: dict[tuple[str, str], SlaPolicy] = {}
        for tier, factor in _TIER_FACTORS.items():
            for priority, hours in _BASE_TARGETS_HOURS.items():
                first, nxt, resolve = (timedelta(hours=h * factor) for h in hours)
                pauses = {"pending"} | ({"on_hold"} if tier in _TIERS_PAUSED_ON_HOLD else set())
                policies[(tier, priority)] = SlaPolicy(
                    name=f"{tier}-{priority}",
                    first_reply=first,
                    next_reply=nxt,
                    resolution=resolve,
                    business_hours=priority != "urgent",
                    pause_statuses=frozenset(pauses),
                )
        return cls(policies)

    def policy_for(self, tier: str | None, priority: str | None) -> SlaPolicy:
        """The policy of ``tier`` × ``priority``, falling back to the defaults."""
        tier = tier if tier in TIERS else self.default_tier
        priority = priority if priority in PRIORITIES else self.default_priority
        policy = self.policies.get((tier, priority))
        if policy is None:
            policy = self.policies[(self.default_tier, self.default_priority)]
        return policy


@dataclass(frozen=True)
class TicketUpdate:
    """A ticket row as created or updated (one CDC change of ``tickets``).

    ``created_at`` starts the clocks when the tracker first sees the ticket (a snapshot
    may show it long after creation); it defaults to ``at``.
    """

    ticket_id: int
    at: datetime
    status: str
    priority: str | None
    tier: str
    region: str = "us"
    created_at: datetime | None = None
    deleted: bool = False


@dataclass(frozen=True)
class TicketComment:
    """A comment on a ticket (one ``ticket_events`` row of kind ``comment``)."""

    ticket_id: int
    at: datetime
    author: Literal["agent", "customer", "system"]
    public: bool = True


SlaInput = TicketUpdate | TicketComment


@dataclass(frozen=True)
class SlaEvent:
    """One change of a metric clock, after Zendesk's ticket metric events.

    ``deadline`` is set while the clock runs (for ``breach`` it is the deadline missed);
    ``business_seconds_elapsed`` is the target time used so far and ``paused_seconds`` the
    wall-clock time the metric spent paused (including time solved before a reopen).
    ``breached`` tells, on ``fulfill`` events, whether the target had been missed.
    """

    ticket_id: int
    metric: Metric
    kind: SlaEventKind
    at: datetime
    deadline: datetime | None
    policy: str
    business_seconds_elapsed: float
    paused_seconds: float
    breached: bool = False

    @property
    def clock_state(self) -> str:
        """The metric clock's state right after this event.

        Apply, resume and breach leave it running; an ``update`` (policy change) keeps the
        state, told apart by the deadline: a running clock carries one, a paused one not.
        """
        if self.kind == "update":
            return "running" if self.deadline is not None else "paused"
        return {"fulfill": "fulfilled", "pause": "paused"}.get(self.kind, "running")


@dataclass(frozen=True)
class SlaDeadline:
    """A running metric's deadline (see ``SlaTracker.open_deadlines``)."""

    ticket_id: int
    metric: Metric
    deadline: datetime
    policy: str
    breached: bool


@dataclass(frozen=True)
class SlaProgress:
    """How far a metric has come at a given instant (inputs for breach-risk models)."""

    metric: Metric
    state: ClockState
    target_seconds: float
    business_seconds_elapsed: float
    remaining_business_seconds: float
    paused_seconds: float
    breached: bool

    @property
    def fraction_elapsed(self) -> float:
        return self.business_seconds_elapsed / self.target_seconds if self.target_seconds else 1.0


@dataclass
class MetricClock:
    """State of one metric of one ticket (plain data so that it pickles)."""

    metric: Metric
    started_at: datetime
    checkpoint: datetime
    state: ClockState = "running"
    elapsed: float = 0.0
    paused_seconds: float = 0.0
    deadline: datetime | None = None
    breached: bool = False
    epoch: int = 0


@dataclass
class TicketSla:
    """SLA state of one ticket: its policy inputs, status and metric clocks."""

    ticket_id: int
    tier: str
    priority: str | None
    region: str
    status: str
    policy: SlaPolicy
    clocks: dict[str, MetricClock] = field(default_factory=dict)
    done_at: datetime | None = None


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware datetime")
    return value.astimezone(UTC)


HOLIDAY_YEARS = range(2015, 2041)
"""Years whose public holidays the region calendars know, unless a tracker is told otherwise."""


@dataclass
class SlaTracker:
    """SLA clocks of every live ticket, fed by ticket changes and comments.

    State is bounded by the live tickets: closed and deleted tickets are dropped at once
    (after their ``fulfill`` events), solved ones after ``solved_retention`` (so that a
    reopen within that time resumes the same resolution clock; a ticket reopened later
    starts fresh clocks). Inputs for one ticket should arrive in commit order; an input
    older than the clock's last change is treated as happening at that change.

    Args:
        policies: The policy table.
        holiday_years: Years whose public holidays the region calendars know.
        solved_retention: How long solved tickets are kept for a possible reopen.

    Example:
        >>> from datetime import UTC, datetime, timedelta
        >>> tracker = SlaTracker()
        >>> t0 = datetime(2024, 3, 4, 14, 0, tzinfo=UTC)
        >>> _ = tracker.apply(TicketUpdate(7, t0, "new", "urgent", "standard", "us"))
        >>> [(e.metric, e.kind) for e in tracker.tick(t0 + timedelta(hours=2))]
        [('first_reply', 'breach')]
    """

    policies: SlaPolicySet = field(default_factory=SlaPolicySet.default)
    holiday_years: range = HOLIDAY_YEARS
    solved_retention: timedelta = timedelta(days=4)
    tickets: dict[int, TicketSla] = field(default_factory=dict)
    _calendars: dict[str, BusinessCalendar] = field(default_factory=dict, repr=False)
    _due: list[tuple[datetime, int, str, int]] = field(default_factory=list, repr=False)
    _evictions: list[tuple[datetime, int]] = field(default_factory=list, repr=False)
    _epoch: int = 0
    _due_limit: int = 1024
    _evictions_limit: int = 1024

    # ----------------------------------------------------------------- public API

    def apply(self, event: SlaInput) -> list[SlaEvent]:
        """Update the ticket's clocks with one input and return what changed."""
        at = _utc(event.at)
        ticket = self.tickets.get(event.ticket_id)
        out: list[SlaEvent] = []
        if ticket is not None:
            self._breaches_before(ticket, at, out)
        if isinstance(event, TicketUpdate):
            self._apply_update(ticket, event, at, out)
        elif ticket is not None:
            self._apply_comment(ticket, event, at, out)
        return out

    def tick(self, now: datetime) -> list[SlaEvent]:
        """Breach events for deadlines passed by ``now``; also evicts old solved tickets."""
        now = _utc(now)
        out: list[SlaEvent] = []
        while self._due and self._due[0][0] < now:
            deadline, ticket_id, metric, epoch = heapq.heappop(self._due)
            ticket = self.tickets.get(ticket_id)
            clock = ticket.clocks.get(metric) if ticket else None
            if ticket is None or clock is None or clock.epoch != epoch:
                continue  # superseded by a later change of that clock
            if clock.state == "running" and not clock.breached:
                self._breach(ticket, clock, deadline, out)
        while self._evictions and self._evictions[0][0] + self.solved_retention <= now:
            done_at, ticket_id = heapq.heappop(self._evictions)
            ticket = self.tickets.get(ticket_id)
            if ticket is not None and ticket.done_at == done_at:
                del self.tickets[ticket_id]
        return out

    def open_deadlines(self) -> list[SlaDeadline]:
        """Deadlines of every running metric, earliest first (breached ones included)."""
        rows = [
            SlaDeadline(t.ticket_id, c.metric, c.deadline, t.policy.name, c.breached)
            for t in self.tickets.values()
            for c in t.clocks.values()
            if c.state == "running" and c.deadline is not None
        ]
        return sorted(rows, key=lambda d: (d.deadline, d.ticket_id, d.metric))

    def next_due(self) -> datetime | None:
        """The earliest deadline :meth:`tick` may act on (cheap: the top of a heap).

        Superseded heap entries are dropped on the way, so this is amortised O(log n).
        """
        while self._due:
            deadline, ticket_id, metric, epoch = self._due[0]
            ticket = self.tickets.get(ticket_id)
            clock = ticket.clocks.get(metric) if ticket else None
            live = clock is not None and clock.epoch == epoch and clock.state == "running"
            if live and clock is not None and not clock.breached:
                return deadline
            heapq.heappop(self._due)
        return None

    def running_deadline(self, ticket_id: int) -> tuple[datetime, str] | None:
        """The ticket's earliest running deadline and its metric, if any."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            return None
        running = [
            (c.deadline, c.metric)
            for c in ticket.clocks.values()
            if c.state == "running" and c.deadline is not None
        ]
        return min(running, default=None)

    def next_deadline(self, ticket_id: int) -> datetime | None:
        """The earliest deadline among the ticket's running metrics (overdue ones too)."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            return None
        deadlines = [
            c.deadline
            for c in ticket.clocks.values()
            if c.state == "running" and c.deadline is not None
        ]
        return min(deadlines, default=None)

    def clock_running(self, ticket_id: int) -> bool:
        """True while some SLA clock of the ticket runs (the ticket waits on an agent)."""
        ticket = self.tickets.get(ticket_id)
        return ticket is not None and any(c.state == "running" for c in ticket.clocks.values())

    def progress(self, ticket_id: int, at: datetime) -> list[SlaProgress]:
        """Each unfulfilled metric's progress at ``at`` without changing any state."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            return []
        at = _utc(at)
        calendar = self._calendar(ticket)
        rows: list[SlaProgress] = []
        for clock in ticket.clocks.values():
            target = ticket.policy.target(clock.metric)
            if clock.state == "fulfilled" or target is None:
                continue
            elapsed, paused = clock.elapsed, clock.paused_seconds
            if at > clock.checkpoint:
                if clock.state == "running":
                    elapsed += calendar.business_time_between(clock.checkpoint, at).total_seconds()
                else:
                    paused += (at - clock.checkpoint).total_seconds()
            target_s = target.total_seconds()
            rows.append(
                SlaProgress(
                    clock.metric,
                    clock.state,
                    target_s,
                    elapsed,
                    target_s - elapsed,
                    paused,
                    clock.breached,
                )
            )
        return rows

    def __len__(self) -> int:
        return len(self.tickets)

    # ----------------------------------------------------------------- inputs

    def _apply_update(
        self, ticket: TicketSla | None, event: TicketUpdate, at: datetime, out: list[SlaEvent]
    ) -> None:
        if ticket is None:
            if event.deleted or event.status in DONE_STATUSES:
                return  # nothing to measure on a ticket first seen finished
            start = _utc(event.created_at) if event.created_at else at
            ticket = TicketSla(
                ticket_id=event.ticket_id,
                tier=event.tier,
                priority=event.priority,
                region=event.region,
                status=event.status,
                policy=self.policies.policy_for(event.tier, event.priority),
            )
            self.tickets[event.ticket_id] = ticket
            opening: tuple[Metric, ...] = ("first_reply", "resolution")
            for metric in opening:
                if ticket.policy.target(metric) is not None:
                    self._start(ticket, metric, start, out)
            self._breaches_before(ticket, at, out)
            self._reconcile(ticket, at, out)
            return
        if event.deleted:
            del self.tickets[ticket.ticket_id]
            return
        if (event.tier, event.priority, event.region) != (
            ticket.tier,
            ticket.priority,
            ticket.region,
        ):
            self._change_policy(ticket, event, at, out)
        reopening = ticket.status in DONE_STATUSES and event.status not in DONE_STATUSES
        ticket.status = event.status
        self._reconcile(ticket, at, out, reopening=reopening)
        if event.status == "closed":
            del self.tickets[ticket.ticket_id]

    def _apply_comment(
        self, ticket: TicketSla, event: TicketComment, at: datetime, out: list[SlaEvent]
    ) -> None:
        if event.author == "agent" and event.public:
            replies: tuple[Metric, ...] = ("first_reply", "next_reply")
            for metric in replies:
                clock = ticket.clocks.get(metric)
                if clock is not None and clock.state != "fulfilled":
                    self._set_state(ticket, clock, "fulfilled", at, out)
        elif event.author == "customer":
            first = ticket.clocks.get("first_reply")
            nxt = ticket.clocks.get("next_reply")
            waiting = [c for c in (first, nxt) if c is not None and c.state != "fulfilled"]
            if waiting or ticket.policy.next_reply is None:
                return  # the customer already waits for a reply: the earliest comment counts
            self._start(ticket, "next_reply", at, out)
            if ticket.status in DONE_STATUSES:
                # A comment on a solved ticket reopens it; until that status change
                # arrives the new cycle waits paused rather than being fulfilled at once.
                clock = ticket.clocks["next_reply"]
                self._set_state(ticket, clock, "paused", at, out)
            else:
                self._reconcile(ticket, at, out)

    # ----------------------------------------------------------------- clock mechanics

    def _calendar(self, ticket: TicketSla) -> BusinessCalendar:
        if not ticket.policy.business_hours:
            return ALWAYS_OPEN
        calendar = self._calendars.get(ticket.region)
        if calendar is None:
            calendar = calendar_for_region(ticket.region, self.holiday_years)
            self._calendars[ticket.region] = calendar
        return calendar

    def _desired(self, ticket: TicketSla) -> ClockState:
        if ticket.status in DONE_STATUSES:
            return "fulfilled"
        if ticket.status in ticket.policy.pause_statuses:
            return "paused"
        return "running"

    def _start(self, ticket: TicketSla, metric: Metric, at: datetime, out: list[SlaEvent]) -> None:
        clock = MetricClock(metric=metric, started_at=at, checkpoint=at)
        ticket.clocks[metric] = clock
        self._schedule(ticket, clock)
        out.append(self._event(ticket, clock, "apply", at))

    def _reconcile(
        self, ticket: TicketSla, at: datetime, out: list[SlaEvent], *, reopening: bool = False
    ) -> None:
        """Bring every clock to the state the ticket's status asks for."""
        want = self._desired(ticket)
        if want == "fulfilled":
            if ticket.done_at is None:
                ticket.done_at = at
                heapq.heappush(self._evictions, (at, ticket.ticket_id))
                self._compact_evictions()
        else:
            ticket.done_at = None
        for clock in ticket.clocks.values():
            if clock.state == "fulfilled":
                if not (reopening and clock.metric == "resolution"):
                    continue
                # The time solved counts as paused: the checkpoint stayed at the solve.
                clock.state = "paused"
                self._checkpoint(ticket, clock, at)
                clock.state = want
                self._schedule(ticket, clock)
                out.append(
                    self._event(ticket, clock, "resume" if want == "running" else "pause", at)
                )
                self._breach_if_over(ticket, clock, at, out)
                continue
            if clock.state != want:
                self._set_state(ticket, clock, want, at, out)

    def _set_state(
        self,
        ticket: TicketSla,
        clock: MetricClock,
        state: ClockState,
        at: datetime,
        out: list[SlaEvent],
    ) -> None:
        self._checkpoint(ticket, clock, at)
        clock.state = state
        self._schedule(ticket, clock)
        out.append(self._event(ticket, clock, _STATE_EVENTS[state], at))
        if state == "running":
            self._breach_if_over(ticket, clock, at, out)

    def _change_policy(
        self, ticket: TicketSla, event: TicketUpdate, at: datetime, out: list[SlaEvent]
    ) -> None:
        # Bring elapsed time up to date under the old calendar before switching: time
        # already used stays used, only the remainder is measured under the new rules.
        for clock in ticket.clocks.values():
            if clock.state != "fulfilled":
                self._checkpoint(ticket, clock, at)
        ticket.tier, ticket.priority, ticket.region = event.tier, event.priority, event.region
        ticket.policy = self.policies.policy_for(event.tier, event.priority)
        for clock in ticket.clocks.values():
            if clock.state == "fulfilled":
                continue
            if ticket.policy.target(clock.metric) is None:
                clock.state = "fulfilled"  # the new policy does not measure this metric
                clock.epoch = self._next_epoch()
                continue
            self._schedule(ticket, clock)
            out.append(self._event(ticket, clock, "update", at))
            self._breach_if_over(ticket, clock, at, out)

    def _checkpoint(self, ticket: TicketSla, clock: MetricClock, at: datetime) -> None:
        if at <= clock.checkpoint:
            return
        if clock.state == "running":
            used = self._calendar(ticket).business_time_between(clock.checkpoint, at)
            clock.elapsed += used.total_seconds()
        elif clock.state == "paused":
            clock.paused_seconds += (at - clock.checkpoint).total_seconds()
        else:
            return  # a fulfilled clock keeps its checkpoint so a reopen can count the gap
        clock.checkpoint = at

    def _schedule(self, ticket: TicketSla, clock: MetricClock) -> None:
        """Recompute the deadline of ``clock`` and queue it for ``tick``."""
        clock.epoch = self._next_epoch()
        target = ticket.policy.target(clock.metric)
        if clock.state != "running" or target is None:
            clock.deadline = None
            return
        remaining = target.total_seconds() - clock.elapsed
        if remaining < 0:
            if not clock.breached:
                clock.deadline = clock.checkpoint  # a shorter target is already used up
            return  # a breached clock keeps the deadline it missed
        clock.deadline = self._calendar(ticket).add_business_time(
            clock.checkpoint, timedelta(seconds=remaining)
        )
        if not clock.breached:
            heapq.heappush(self._due, (clock.deadline, ticket.ticket_id, clock.metric, clock.epoch))
            self._compact()

    def _breach_if_over(
        self, ticket: TicketSla, clock: MetricClock, at: datetime, out: list[SlaEvent]
    ) -> None:
        target = ticket.policy.target(clock.metric)
        if target is not None and not clock.breached and clock.elapsed > target.total_seconds():
            self._breach(ticket, clock, at, out)

    def _breaches_before(self, ticket: TicketSla, at: datetime, out: list[SlaEvent]) -> None:
        for clock in sorted(ticket.clocks.values(), key=lambda c: c.deadline or at):
            if (
                clock.state == "running"
                and not clock.breached
                and clock.deadline is not None
                and clock.deadline < at
            ):
                self._breach(ticket, clock, clock.deadline, out)

    def _breach(
        self, ticket: TicketSla, clock: MetricClock, at: datetime, out: list[SlaEvent]
    ) -> None:
        clock.breached = True
        target = ticket.policy.target(clock.metric)
        event = self._event(ticket, clock, "breach", at)
        if target is not None and clock.checkpoint < at:
            # At the deadline exactly the whole target has been used.
            elapsed = max(clock.elapsed, target.total_seconds())
            event = SlaEvent(
                event.ticket_id,
                event.metric,
                "breach",
                at,
                clock.deadline,
                event.policy,
                elapsed,
                event.paused_seconds,
                True,
            )
        out.append(event)

    def _event(
        self, ticket: TicketSla, clock: MetricClock, kind: SlaEventKind, at: datetime
    ) -> SlaEvent:
        return SlaEvent(
            ticket_id=ticket.ticket_id,
            metric=clock.metric,
            kind=kind,
            at=at,
            deadline=clock.deadline,
            policy=ticket.policy.name,
            business_seconds_elapsed=clock.elapsed,
            paused_seconds=clock.paused_seconds,
            breached=clock.breached,
        )

    def _next_epoch(self) -> int:
        self._epoch += 1
        return self._epoch

    def _compact_evictions(self) -> None:
        # A closed or deleted ticket leaves at once, but its eviction entry stays until the
        # retention has passed: a busy helpdesk closes many thousands within it. When stale
        # entries dominate, rebuild from the solved tickets still kept (amortised as above).
        if len(self._evictions) <= self._evictions_limit:
            return
        self._evictions = [
            (t.done_at, t.ticket_id) for t in self.tickets.values() if t.done_at is not None
        ]
        heapq.heapify(self._evictions)
        self._evictions_limit = 2 * len(self._evictions) + 1024

    def _compact(self) -> None:
        # Superseded heap entries wait for their deadline before ``tick`` drops them; when
        # the heap outgrows its limit, rebuild it from the live clocks so that it stays
        # bounded by the live tickets (the limit doubles with them, keeping this amortised).
        if len(self._due) <= self._due_limit:
            return
        self._due = [
            (c.deadline, t.ticket_id, c.metric, c.epoch)
            for t in self.tickets.values()
            for c in t.clocks.values()
            if c.state == "running" and not c.breached and c.deadline is not None
        ]
        heapq.heapify(self._due)
        self._due_limit = 2 * len(self._due) + 1024
