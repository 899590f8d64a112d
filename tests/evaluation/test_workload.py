"""Workload planning: determinism, arrival rhythm, skill-dependent service, realistic text."""

from __future__ import annotations

import random
import statistics
from datetime import timedelta
from itertools import islice

import pytest
from pydantic import ValidationError

from evaluation.workload import (
    DEFAULT_CATEGORY_TEAMS,
    WorkloadConfig,
    draw_service_seconds,
    iter_arrival_offsets,
    mean_service_seconds,
    plan_agents,
    plan_customers,
    plan_kb_articles,
    plan_lifecycle,
    plan_tickets,
    rhythm_factor,
)

CATEGORY_WORDS = {
    "billing": ("invoice", "charge", "refund", "payment", "billing", "billed", "subscription"),
    "technical": ("error", "crash", "bug", "timeout", "times out", "sync", "update", "fails"),
    "account": ("log in", "login", "password", "account", "two-factor", "email address"),
    "shipping": ("order", "parcel", "package", "delivery", "delivered", "tracking", "box"),
    "general": ("question", "documentation", "training", "feedback", "enquiry", "user guide"),
}


def test_same_seed_same_plan_different_seed_different_plan() -> None:
    cfg = WorkloadConfig(seed=11, customers=50, agents=10)
    assert plan_customers(cfg) == plan_customers(WorkloadConfig(seed=11, customers=50, agents=10))
    assert plan_agents(cfg) == plan_agents(cfg)
    assert plan_kb_articles(cfg) == plan_kb_articles(cfg)
    assert plan_tickets(cfg, 200) == plan_tickets(cfg, 200)

    other = cfg.model_copy(update={"seed": 12})
    assert plan_customers(other) != plan_customers(cfg)
    assert plan_agents(other) != plan_agents(cfg)
    assert plan_tickets(other, 50) != plan_tickets(cfg, 50)


def test_ticket_content_does_not_depend_on_how_many_are_planned() -> None:
    cfg = WorkloadConfig(seed=3, customers=30)
    assert plan_tickets(cfg, 40)[:10] == plan_tickets(cfg, 10)


def test_unbounded_config_keeps_producing() -> None:
    from evaluation.workload import iter_ticket_specs

    cfg = WorkloadConfig(seed=3, customers=10, tickets=None)
    specs = list(islice(iter_ticket_specs(cfg), 300))
    assert [s.seq for s in specs] == list(range(300))
    offsets = [s.wall_offset for s in specs]
    assert offsets == sorted(offsets)


def test_rhythm_weekday_daytime_busier_than_nights_and_weekends() -> None:
    # 20 tickets per simulated hour on average, over 8 simulated weeks.
    cfg = WorkloadConfig(seed=5, rate=20.0, time_compression=3600.0)
    weeks = 8
    horizon = weeks * 7 * 86400.0
    counts = {"weekday_day": 0, "night": 0, "weekend_day": 0}
    total = 0
    for offset in iter_arrival_offsets(cfg):
        if offset > horizon:
            break
        total += 1
        at = cfg.sim_start + timedelta(seconds=offset)
        if at.hour < 6:
            counts["night"] += 1
        elif 9 <= at.hour < 17:
            counts["weekday_day" if at.weekday() < 5 else "weekend_day"] += 1
    per_hour = {
        "weekday_day": counts["weekday_day"] / (weeks * 5 * 8),
        "night": counts["night"] / (weeks * 7 * 6),
        "weekend_day": counts["weekend_day"] / (weeks * 2 * 8),
    }
    assert per_hour["weekday_day"] > 5 * per_hour["night"]
    assert per_hour["weekday_day"] > 2 * per_hour["weekend_day"]
    # The configured rate is the mean over the week: 20/hour here.
    assert total / (horizon / 3600.0) == pytest.approx(20.0, rel=0.05)


def test_rhythm_factor_averages_to_one_over_a_week() -> None:
    cfg = WorkloadConfig()
    start = cfg.sim_start.replace(hour=0)
    factors = [rhythm_factor(start + timedelta(hours=h)) for h in range(168)]
    assert statistics.fmean(factors) == pytest.approx(1.0)


def test_without_rhythm_arrivals_are_homogeneous_at_the_configured_rate() -> None:
    cfg = WorkloadConfig(seed=9, rate=50.0, time_compression=1.0, rhythm=False)
    offsets = list(islice(iter_arrival_offsets(cfg), 20000))
    assert len(offsets) / offsets[-1] == pytest.approx(50.0, rel=0.03)


def test_service_time_is_shorter_for_skilled_agents() -> None:
    cfg = WorkloadConfig()
    rng = random.Random(1)
    skilled = [draw_service_seconds(rng, cfg, 0.9) for _ in range(5000)]
    novice = [draw_service_seconds(rng, cfg, 0.2) for _ in range(5000)]
    assert statistics.fmean(skilled) < 0.6 * statistics.fmean(novice)
    assert statistics.fmean(skilled) == pytest.approx(mean_service_seconds(cfg, 0.9), rel=0.05)
    assert min(skilled + novice) > 0


def test_lifecycle_shape_and_csat_rewards_speed() -> None:
    cfg = WorkloadConfig(seed=2, reopen_probability=0.2, pending_probability=0.3)
    kinds: set[str] = set()
    csat_by_skill: dict[float, list[int]] = {0.95: [], 0.1: []}
    for skill, scores in csat_by_skill.items():
        for ticket_id in range(2000):
            steps = plan_lifecycle(cfg, ticket_id=ticket_id, agent_id=1, skill=skill)
            assert steps[0].kind == "first_reply"
            assert steps[-1].kind == "solve"
            assert [s.offset for s in steps] == sorted(s.offset for s in steps)
            kinds.update(s.kind for s in steps)
            final = steps[-1].csat
            assert final is not None and 1 <= final <= 5
            scores.append(final)
    assert kinds == {"first_reply", "follow_up", "ask_info", "customer_reply", "solve", "reopen"}
    assert statistics.fmean(csat_by_skill[0.95]) > statistics.fmean(csat_by_skill[0.1]) + 0.3
    again = plan_lifecycle(cfg, ticket_id=7, agent_id=1, skill=0.5)
    assert again == plan_lifecycle(cfg, ticket_id=7, agent_id=1, skill=0.5)


def test_english_text_names_category_vocabulary() -> None:
    cfg = WorkloadConfig(seed=4, languages={"en": 1.0})
    for spec in plan_tickets(cfg, 400):
        text = f"{spec.subject} {spec.description}".lower()
        assert any(word in text for word in CATEGORY_WORDS[spec.category]), (spec.category, text)


def test_ticket_mix_languages_urgency_pii_and_hidden_labels() -> None:
    cfg = WorkloadConfig(seed=8, customers=300)
    specs = plan_tickets(cfg, 2000)
    assert {s.language for s in specs} == {"en", "de", "fr", "es"}
    assert sum(s.language == "en" for s in specs) > len(specs) / 2
    assert {s.category for s in specs} == set(DEFAULT_CATEGORY_TEAMS)
    labelled = [s for s in specs if s.labelled_category is not None]
    assert len(labelled) / len(specs) == pytest.approx(0.3, abs=0.04)
    assert all(s.labelled_category == s.category for s in labelled)
    urgent = [s for s in specs if s.urgent]
    assert len(urgent) / len(specs) == pytest.approx(0.1, abs=0.03)
    urgent_words = ("urgent", "asap", "outage", "data loss", "dringend", "ausfall", "urgente")
    for spec in urgent:
        if spec.language == "en":
            text = f"{spec.subject} {spec.description}".lower()
            assert any(word in text for word in urgent_words), text
    with_pii = [s for s in specs if s.has_pii]
    assert with_pii and all("+" in s.description for s in with_pii if "@" not in s.description)
    german = next(s for s in specs if s.language == "de")
    assert any(ch in german.description for ch in "äöüßÄÖÜ") or "Sie" in german.description


def test_agents_skills_languages_capacity_and_shift_coverage() -> None:
    cfg = WorkloadConfig(seed=6, agents=20)
    agents = plan_agents(cfg)
    assert len(agents) == 20
    assert {a.team for a in agents} == set(cfg.teams)
    for agent in agents:
        own = [c for c, team in cfg.category_teams.items() if team == agent.team]
        assert all(agent.skills[c] >= 0.7 for c in own)
        assert min(agent.skills[c] for c in own) > statistics.fmean(agent.skills.values()) - 0.01
        assert all(0.0 <= v <= 1.0 for v in agent.skills.values())
        assert agent.languages[0] == "en"
        assert 3 <= agent.capacity <= 8
        assert agent.status == "online"
    assert {"de", "fr", "es"} <= {lang for a in agents for lang in a.languages}
    for team in cfg.teams:
        members = [a for a in agents if a.team == team]
        for hour in range(24):
            assert any(_on_shift(a.shift_start, a.shift_end, hour) for a in members), (team, hour)
    # Two agents per team (fewer than three shifts): they work all day.
    small = plan_agents(cfg.model_copy(update={"agents": 10}))
    assert all((a.shift_start, a.shift_end) == (0, 24) for a in small)


def _on_shift(start: int, end: int, hour: int) -> bool:
    return start <= hour < end if start <= end else hour >= start or hour < end


def test_kb_articles_cover_categories_and_languages() -> None:
    articles = plan_kb_articles(WorkloadConfig())
    assert {a.category for a in articles} == set(DEFAULT_CATEGORY_TEAMS)
    assert {a.language for a in articles} == {"en", "de", "fr", "es"}
    assert len({(a.title, a.language) for a in articles}) == len(articles)


def test_customer_emails_unique_and_tiers_valid() -> None:
    customers = plan_customers(WorkloadConfig(customers=500))
    assert len({c.email for c in customers}) == 500
    assert {c.tier for c in customers} == {"free", "standard", "premium", "enterprise"}
    assert all(c.email.isascii() for c in customers)


@pytest.mark.parametrize(
    "bad",
    [
        {"tiers": {"gold": 1.0}},
        {"channels": {"fax": 1.0}},
        {"category_teams": {}},
        {"languages": {"en": -1.0}},
        {"shifts": ((25, 3),)},
        {"rate": 0},
    ],
)
def test_config_rejects_invalid_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        WorkloadConfig.model_validate(bad)


def test_rich_progress_renders_updates() -> None:
    import io
    from datetime import UTC, datetime

    from rich.console import Console

    from evaluation.workload import WorkloadProgress, rich_progress

    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=120)
    with rich_progress(console=console) as update:
        for done in (False, True):
            update(
                WorkloadProgress(
                    tickets_created=10,
                    tickets_target=10,
                    events_written=3,
                    elapsed_seconds=2.0,
                    sim_time=datetime(2024, 1, 1, 9, tzinfo=UTC),
                    lag_seconds=0.004,
                    done=done,
                )
            )
    assert "10/10" in out.getvalue()
    assert "5.0/s" in out.getvalue()
