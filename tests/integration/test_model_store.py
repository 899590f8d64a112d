"""The Redis model store that carries text models between the processes of a cluster."""

from __future__ import annotations

import pytest

from models.intelligence import LabelExample, TextModels
from sinks.model_store import RedisModelStore

pytestmark = pytest.mark.integration


def test_published_models_round_trip_through_redis_by_version(redis_url: str, unique: str) -> None:
    store = RedisModelStore(redis_url, prefix=f"t{unique}", flow_id="flow")
    other = RedisModelStore(redis_url, prefix=f"t{unique}", flow_id="other")
    assert store.latest(-1) is None
    models = TextModels(n_features=2**12, min_examples=1)
    models.learn(LabelExample(1, "refund my invoice", category="billing"))
    store.publish(models)
    copy = store.latest(-1)
    assert copy is not None and copy is not models and copy.version == 1
    assert copy.category.predict_one("invoice refund").label == "billing"
    assert store.latest(1) is None  # nothing newer than what the reader has
    assert other.latest(-1) is None  # flows keep their models apart
    store.clear()
    assert store.latest(-1) is None
