"""Agent rosters: local hours, breaks, split and overnight shifts, date exceptions, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from models.helpdesk import Agent, RowError
from models.roster import Roster, RosterError

BERLIN = {
    "tz": "Europe/Berlin",
    "weekly": {
        "mon": [["08:00", "12:00"], ["12:30", "16:30"]],
        "fri": [["22:00", "06:00"]],
    },
    "dates": {"2026-03-09": [], "2026-03-10": [["10:00", "24:00"]]},
}


def utc(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def test_split_shift_with_a_break_in_local_time() -> None:
    roster = Roster.from_json(BERLIN)
    # Monday 2 March 2026, Berlin is UTC+1.
    assert not roster.on_shift(utc(2, 6, 59))  # 07:59 local
    assert roster.on_shift(utc(2, 7, 0))  # 08:00
    assert not roster.on_shift(utc(2, 11, 0))  # 12:00: the break starts
    assert roster.on_shift(utc(2, 11, 30))  # 12:30: back
    assert not roster.on_shift(utc(2, 15, 30))  # 16:30: the end is exclusive
    assert not roster.on_shift(utc(3, 8, 0))  # Tuesday: no weekly hours


def test_local_hours_hold_across_daylight_saving() -> None:
    roster = Roster.from_json(BERLIN)
    # Monday 30 March 2026 is summer time (UTC+2): 08:00 local is 06:00 UTC.
    assert roster.on_shift(utc(30, 6, 0))
    assert not roster.on_shift(utc(30, 5, 30))


def test_overnight_shift_runs_into_the_next_day() -> None:
    roster = Roster.from_json(BERLIN)
    # Friday 6 March 22:00 local → Saturday 06:00 local.
    assert not roster.on_shift(utc(6, 20, 30))  # 21:30
    assert roster.on_shift(utc(6, 21, 0))  # 22:00
    assert roster.on_shift(utc(7, 4, 59))  # Saturday 05:59
    assert not roster.on_shift(utc(7, 5, 0))  # Saturday 06:00


def test_dates_replace_the_weekly_hours() -> None:
    roster = Roster.from_json(BERLIN)
    assert not roster.on_shift(utc(9, 8, 0))  # a Monday given the day off
    assert roster.on_shift(utc(10, 22, 30))  # a Tuesday worked until midnight
    assert not roster.on_shift(utc(10, 23, 0))  # midnight local: over


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "JSON object"),
        ({"tz": "Mars/Olympus"}, "unknown time zone"),
        ({"weekly": {"someday": []}}, "not a weekday"),
        ({"weekly": {"mon": [["8 am", "12:00"]]}}, "not a time"),
        ({"weekly": {"mon": [["24:00", "12:00"]]}}, "cannot start at 24:00"),
        ({"dates": {"March 9": []}}, "not a date"),
        ({"shifts": []}, "unknown keys"),
    ],
)
def test_a_bad_roster_says_what_is_wrong(value: object, message: str) -> None:
    with pytest.raises(RosterError, match=message):
        Roster.from_json(value)


def agent_row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {"id": 7, "name": "Ana", "team": "billing", "skills": "{}"}
    return row | changes


def test_agent_uses_its_roster_over_its_daily_hours() -> None:
    # Debezium delivers a jsonb column as its JSON text.
    agent = Agent.from_row(agent_row(shift_start=0, shift_end=24, roster=json.dumps(BERLIN)))
    assert agent.roster is not None
    assert not agent.on_shift(utc(3, 8, 0))  # Tuesday: off by the roster, on by the hours
    plain = Agent.from_row(agent_row(shift_start=8, shift_end=16, roster=None))
    assert plain.roster is None and plain.on_shift(utc(3, 8, 0))
    assert not plain.on_shift(utc(3, 16, 0))


def test_a_bad_roster_rejects_the_agent_row_with_the_column_named() -> None:
    with pytest.raises(RowError, match=r"column 'roster'.*unknown time zone"):
        Agent.from_row(agent_row(roster={"tz": "Nowhere/Else"}))


def test_router_assigns_only_agents_on_their_roster() -> None:
    from models.routing import QueueRouter
    from tests.models.test_routing import NOON, agent, ticket

    rostered = Agent.from_row(
        agent_row(
            id=1,
            skills={"billing": 0.99},
            capacity=5,
            roster={"weekly": {"tue": [["09:00", "11:00"]]}},
        )
    )
    router = QueueRouter("billing")
    router.upsert_agent(rostered, version=1, at=NOON)
    router.upsert_agent(agent(2, skill=0.5, capacity=5), version=2, at=NOON)

    def assignee(tid: int, at: datetime) -> int | None:
        decisions = router.on_ticket(ticket(tid, version=10 + tid), at=at)
        return next(d.agent_id for d in decisions if d.ticket_id == tid)

    # Tuesday 10:00 UTC, inside the roster: the better-skilled agent takes it.
    assert assignee(50, NOON - timedelta(hours=2)) == 1
    # Tuesday 12:00 UTC, after the roster's hours: only the other agent is eligible.
    assert assignee(51, NOON) == 2


def test_a_bad_roster_in_the_stream_becomes_a_dead_letter_with_the_reason() -> None:
    from models.events import ChangeEvent, DeadLetter, SourcePosition
    from pipelines.flow import agent_changes, guarded

    event = ChangeEvent(
        table="agents",
        op="c",
        key={"id": 3},
        before=None,
        after=agent_row(id=3, roster='{"tz": "Nowhere/Else"}'),
        committed_at=utc(2, 9),
        version=5,
        position=SourcePosition(lsn=5),
    )
    (letter,) = guarded("select_agent_changes", agent_changes)(event)
    assert isinstance(letter, DeadLetter)
    assert "column 'roster'" in letter.reason and "Nowhere/Else" in letter.reason


def test_next_start_follows_breaks_days_off_and_the_time_zone() -> None:
    roster = Roster.from_json(
        {
            "tz": "America/New_York",
            "weekly": {
                "mon": [["09:00", "12:00"], ["13:00", "17:00"]],
                "tue": [["22:00", "06:00"]],
            },
            "dates": {"2026-03-16": []},
        }
    )
    monday = datetime(2026, 3, 9, 15, 0, tzinfo=UTC)  # 11:00 in New York (EDT from 8 March)
    assert roster.next_start(monday) == datetime(2026, 3, 9, 17, 0, tzinfo=UTC)
    assert roster.next_start(datetime(2026, 3, 9, 17, 0, tzinfo=UTC)) == datetime(
        2026, 3, 11, 2, 0, tzinfo=UTC
    )  # the overnight Tuesday shift, 22:00 local
    # Monday 16 March is off, so the next start is Tuesday's overnight shift.
    after_tuesday = datetime(2026, 3, 11, 3, 0, tzinfo=UTC)
    assert roster.next_start(after_tuesday) == datetime(2026, 3, 11, 2, 0, tzinfo=UTC) + timedelta(
        days=7
    )
    assert Roster.from_json({"weekly": {}}).next_start(monday) is None
