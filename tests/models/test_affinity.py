"""Affinity model and the learned / round-robin rankers."""

from __future__ import annotations

import itertools
import pickle
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from models.affinity import (
    AffinityModel,
    ExpectedTimeRanker,
    HandlingTimeModel,
    LearnedRanker,
    RoundRobinRanker,
)
from models.helpdesk import Agent
from models.routing import HandlingOutcome, QueueRouter, RoutingOutcome, RoutingRequest

AT = datetime(2024, 1, 1, 9, tzinfo=UTC)


def agent(aid: int, *, capacity: int = 5) -> Agent:
    return Agent(aid, f"a{aid}", "billing", {"billing": 0.8}, ("en",), capacity, "online")


def request(
    tid: int,
    *,
    priority: str = "normal",
    status: str = "new",
    assigned: int | None = None,
    at: datetime = AT,
    solved_at: datetime | None = None,
) -> RoutingRequest:
    return RoutingRequest(
        ticket_id=tid,
        version=tid * 10 + (status != "new"),
        queue="billing",
        op="c" if status == "new" else "u",
        status=status,
        assigned_agent_id=assigned,
        language="en",
        category="billing",
        priority=priority,
        customer_tier="standard",
        created_at=AT,
        committed_at=at,
        solved_at=solved_at,
    )


def outcome(
    tid: int, aid: int, seconds: float | None, *, csat: int | None = None, reopened: bool = False
) -> RoutingOutcome:
    return RoutingOutcome(
        ticket_id=tid,
        agent_id=aid,
        category="billing",
        language="en",
        priority="normal",
        customer_tier="standard",
        resolution_seconds=seconds,
        first_reply_seconds=None,
        csat=csat,
        reopened=reopened,
        at=AT,
    )


def train(model: AffinityModel, n: int = 40) -> None:
    for i in range(n):
        jitter = 1.0 + 0.2 * ((i % 5) - 2) / 2
        model.learn_one(agent_id=1, category="billing", language="en", seconds=1800 * jitter)
        model.learn_one(agent_id=2, category="billing", language="en", seconds=4200 * jitter)


def test_learns_that_a_is_faster_than_b_on_a_category() -> None:
    model = AffinityModel(seed=1)
    train(model)
    a, b = model.estimate(1, "billing", "en"), model.estimate(2, "billing", "en")
    assert a.mean > 0 > b.mean
    assert a.outcomes == b.outcomes == 40
    assert a.std < model.estimate(3, "billing", "en").std  # evidence narrows the posterior
    assert model.n_scored > 0 and model.error.get() < 1.0  # prequential error is tracked


def test_ranker_routes_to_the_faster_agent_after_learning() -> None:
    ranker = LearnedRanker(AffinityModel(seed=2))
    train(ranker.model)
    wins = Counter(
        ranker.rank(request(i), [agent(1), agent(2)], {1: 1, 2: 1}, at=AT)[0].agent.id
        for i in range(200)
    )
    assert wins[1] > 180


def test_exploration_gives_a_new_agent_some_tickets_and_decays() -> None:
    ranker = LearnedRanker(AffinityModel(seed=3))
    train(ranker.model, n=10)
    newcomer = agent(9)
    wins = Counter(
        ranker.rank(request(i), [agent(1), newcomer], {}, at=AT)[0].agent.id for i in range(300)
    )
    assert 0 < wins[9] < 300
    # Urgent tickets are not experimented on: the posterior mean decides.
    urgent = {
        ranker.rank(request(i, priority="urgent"), [agent(1), newcomer], {}, at=AT)[0].agent.id
        for i in range(50)
    }
    assert urgent == {1}
    # Once the newcomer has shown to be slow, it stops winning.
    for _ in range(60):
        ranker.model.learn_one(agent_id=9, category="billing", language="en", seconds=6000)
    later = Counter(
        ranker.rank(request(i), [agent(1), newcomer], {}, at=AT)[0].agent.id for i in range(300)
    )
    assert later[9] < wins[9]


def test_reopens_and_csat_move_the_affinity() -> None:
    base, reopened, happy = AffinityModel(), AffinityModel(), AffinityModel()
    for model in (base, reopened, happy):
        for i in range(30):
            model.learn_one(
                agent_id=1 + i % 2, category="billing", language="en", seconds=3600, csat=4
            )
    for _ in range(8):
        reopened.learn_one(
            agent_id=1, category="billing", language="en", seconds=None, reopened=True
        )
    for _ in range(15):
        happy.learn_one(agent_id=1, category="billing", language="en", seconds=3600, csat=5)
    assert reopened.estimate(1, "billing", "en").mean < base.estimate(1, "billing", "en").mean
    assert reopened.estimate(1, "billing", "en").reopen_rate > 0.1
    assert happy.estimate(1, "billing", "en").mean > base.estimate(1, "billing", "en").mean


def test_handling_time_excludes_the_wait_before_assignment() -> None:
    ranker = LearnedRanker(AffinityModel(seed=4))
    later = AT + timedelta(hours=5)  # the ticket waited five hours in the holding list
    ranker.rank(request(1), [agent(1)], {}, at=later)
    ranker.learn(outcome(1, 1, seconds=5 * 3600 + 1800))
    baseline = ranker.model.categories["billing"].baseline()
    assert baseline is not None and baseline < 8.0  # log(1800) ≈ 7.5, log(19800) ≈ 9.9


def test_router_with_learned_ranker_pickles_and_replays_deterministically() -> None:
    def run(router: QueueRouter) -> list[int | None]:
        chosen = []
        for tid in range(1, 30):
            d = router.on_ticket(request(tid), at=AT)[0]
            chosen.append(d.agent_id)
            solved = AT + timedelta(minutes=30 + tid)
            router.on_ticket(
                request(tid, status="solved", assigned=d.agent_id, at=solved, solved_at=solved),
                at=solved,
            )
        return chosen

    def fresh() -> QueueRouter:
        r = QueueRouter(queue="billing", ranker=LearnedRanker(AffinityModel(seed=5)))
        for aid in (1, 2, 3):
            r.upsert_agent(agent(aid), version=aid, at=AT)
        return r

    one, two = fresh(), fresh()
    assert run(one) == run(two)
    restored = pickle.loads(pickle.dumps(one))
    assert isinstance(restored.ranker, LearnedRanker)
    assert restored.ranker.version == one.ranker.version == "affinity-29"
    assert run(restored) == run(one)  # the restored state continues exactly like the original


def test_ranked_agents_carry_reasons_confidence_and_version() -> None:
    ranker = LearnedRanker(AffinityModel(seed=6))
    train(ranker.model)
    ranked = ranker.rank(request(1, priority="urgent"), [agent(1), agent(2)], {1: 2}, at=AT)
    top = ranked[0]
    assert top.agent.id == 1
    assert top.reasons[0].startswith("learned affinity billing: 0.")
    assert "(40 outcomes)" in top.reasons[0]
    assert "load 2/5" in top.reasons
    assert "priority urgent favours expertise" in top.reasons
    assert 0.5 < top.confidence <= 1.0
    assert ranker.version == "affinity-80"


def test_round_robin_rotates_per_queue_and_skips_ineligible() -> None:
    rr = RoundRobinRanker()
    agents = [agent(1), agent(2), agent(3)]
    assert [rr.rank(request(i), agents, {}, at=AT)[0].agent.id for i in range(4)] == [1, 2, 3, 1]
    assert rr.rank(request(9), [agent(1), agent(3)], {}, at=AT)[0].agent.id == 3
    assert pickle.loads(pickle.dumps(rr)).pointers == {"billing": 3}


# -- expected handling time -------------------------------------------------------------


def test_unseen_pair_starts_at_type_mean_times_agent_speed() -> None:
    m = HandlingTimeModel(prior_strength=3.0, agent_prior_strength=5.0)
    for _ in range(50):
        m.learn_one(agent_id=1, work_type="sales", seconds=100.0)
        m.learn_one(agent_id=2, work_type="sales", seconds=300.0)
        m.learn_one(agent_id=2, work_type="tech", seconds=600.0)
    tech_mean = m.types["tech"].mean.get()
    assert tech_mean == 600.0
    fast, slow = m.estimate(1, "tech"), m.estimate(2, "tech")
    # Agent 1 never took a tech call: its estimate is the tech mean at its usual pace.
    assert fast.outcomes == 0 and fast.agent_speed < 1.0 < slow.agent_speed
    assert fast.mean == pytest.approx(tech_mean * fast.agent_speed)
    assert fast.mean < 0.75 * tech_mean
    # A pair with plenty of evidence sits at its own mean.
    assert slow.mean == pytest.approx(600.0, rel=0.05)
    # An agent nobody has seen is typical (speed 1) with the widest spread.
    stranger = m.estimate(9, "sales")
    assert stranger.agent_speed == 1.0 and stranger.std > m.estimate(1, "sales").std


def test_a_rare_pair_moves_from_the_prior_to_its_own_mean() -> None:
    m = HandlingTimeModel(prior_strength=3.0)
    for _ in range(40):
        m.learn_one(agent_id=1, work_type="sales", seconds=200.0)
    before = m.estimate(2, "sales").mean
    assert before == pytest.approx(200.0)
    means = []
    for _ in range(6):
        m.learn_one(agent_id=2, work_type="sales", seconds=800.0)
        means.append(m.estimate(2, "sales").mean)
    assert all(a < b for a, b in itertools.pairwise(means))
    # After 6 outcomes against a prior worth 3: two thirds of the way from prior to data,
    # give or take what the agent's speed ratio already moved the prior.
    assert 550.0 < means[-1] < 800.0


def test_long_contacts_count_in_full() -> None:
    # Same median, different tails: the geometric mean ties them, the mean must not.
    m = HandlingTimeModel(prior_strength=1.0)
    for i in range(60):
        m.learn_one(agent_id=1, work_type="t", seconds=300.0)
        m.learn_one(agent_id=2, work_type="t", seconds=3000.0 if i % 10 == 0 else 300.0)
    assert m.estimate(2, "t").mean == pytest.approx(570.0, rel=0.05)
    assert m.estimate(1, "t").mean == pytest.approx(300.0, rel=0.05)


def test_thompson_draws_replay_with_the_seed_and_explore_unknown_agents() -> None:
    def picks(seed: int) -> list[int]:
        ranker = ExpectedTimeRanker(HandlingTimeModel(seed=seed))
        for i in range(5):
            ranker.learn_handling(HandlingOutcome(i, 1, "billing", 300.0, AT))
        out = []
        for tid in range(100, 160):
            ranked = ranker.rank(request(tid), [agent(1), agent(2)], {}, at=AT)
            out.append(ranked[0].agent.id)
        return out

    assert picks(3) == picks(3)
    counts = Counter(picks(3))
    assert counts[2] > 0 and counts[1] > 0  # the unseen agent gets tried, not always


def test_expected_time_ranker_learns_handling_time_from_a_helpdesk_solve() -> None:
    ranker = ExpectedTimeRanker(HandlingTimeModel(exploration=0.0))
    waited = AT + timedelta(minutes=30)
    ranked = ranker.rank(request(1), [agent(1)], {}, at=waited)
    assert ranked[0].agent.id == 1
    # Solved 90 minutes after creation, 30 of which it waited: 3600 s of handling.
    ranker.learn(outcome(1, 1, 5400.0))
    assert ranker.model.pairs[(1, "billing")].get() == 3600.0
    ranker.learn(outcome(1, 1, None, reopened=True))
    assert ranker.model.n_outcomes == 1
    assert ranker.version == "expected-time-1"


def test_expected_time_ranker_state_pickles() -> None:
    ranker = ExpectedTimeRanker(HandlingTimeModel(seed=2))
    ranker.learn_handling(HandlingOutcome(1, 1, "billing", 120.0, AT))
    copy = pickle.loads(pickle.dumps(ranker))
    assert copy.model.estimate(1, "billing") == ranker.model.estimate(1, "billing")
