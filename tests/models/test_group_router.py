"""The resolving-group model: keeps the initial group until a path is learned, backs off
from specific contexts to general ones, and stays bounded."""

from __future__ import annotations

from models.group_router import GroupRouter


def test_the_initial_group_stands_until_enough_tickets_took_another_path() -> None:
    router = GroupRouter(contexts=(("category",),), min_support=3, min_support_initial=10)
    fields = {"category": "network"}
    assert router.predict_one(fields, "desk") == ["desk"]
    router.learn_one(fields, "desk", "network-team")
    router.learn_one(fields, "desk", "network-team")
    assert router.predict_one(fields, "desk") == ["desk"]  # two are not enough
    router.learn_one(fields, "desk", "network-team")
    assert router.predict_one(fields, "desk")[0] == "network-team"
    assert router.predict_one(fields, "other-desk") == ["other-desk"]  # paths are per group


def test_specific_contexts_win_and_unseen_ones_back_off() -> None:
    router = GroupRouter(
        contexts=(("category", "location"), ("category",)), min_support=2, min_support_initial=50
    )
    for _ in range(3):
        router.learn_one({"category": "hw", "location": "berlin"}, "desk", "berlin-field")
        router.learn_one({"category": "hw", "location": "paris"}, "desk", "paris-field")
    router.learn_one({"category": "hw", "location": "paris"}, "desk", "paris-field")
    assert router.predict_one({"category": "hw", "location": "berlin"}, "desk")[0] == "berlin-field"
    # A new location: the category alone decides (paris-field resolved most hw tickets).
    assert router.predict_one({"category": "hw", "location": "rome"}, "desk")[0] == "paris-field"
    top = router.predict_one({"category": "hw", "location": "rome"}, "desk", k=3)
    assert top[:2] == ["paris-field", "berlin-field"] and "desk" in top


def test_memory_is_bounded() -> None:
    router = GroupRouter(contexts=(("caller",),), min_support=1, max_keys=100)
    for n in range(1_000):
        router.learn_one({"caller": f"c{n}"}, "desk", "desk")
    assert len(router._counts) <= 100
    assert router.predict_one({"caller": "c999"}, "desk") == ["desk"]


def test_a_placeholder_initial_group_soon_points_to_the_usual_destination() -> None:
    router = GroupRouter(contexts=(("category",),), min_support=20, min_support_initial=3)
    for n in range(3):
        router.learn_one({"category": f"c{n}"}, "unassigned", "service-desk")
    assert router.predict_one({"category": "new"}, "unassigned")[0] == "service-desk"
