"""The text models' learning copy and the replicas that predict with it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.events import ChangeEvent, SourcePosition
from models.intelligence import LabelExample, LocalModelStore, TextModels
from pipelines.flow import ModelReplica, _LearnLogic


def _models() -> TextModels:
    return TextModels(n_features=2**12, min_examples=1)


def test_one_process_shares_the_learning_copy_itself() -> None:
    store = LocalModelStore()
    replica = ModelReplica(store, _models, refresh=0.0)
    before = replica.current()  # nothing published yet: fresh models
    learner = _models()
    store.publish(learner)
    assert replica.current() is learner is not before
    learner.learn(LabelExample(1, "refund my invoice", category="billing"))
    # No copy: the next prediction sees the lesson at once.
    assert replica.current().category.predict_one("invoice refund").label == "billing"


class CopyingStore:
    """A store that hands out copies, as a store shared between processes does."""

    def __init__(self) -> None:
        self.published: list[TextModels] = []
        self.reads = 0

    def publish(self, models: TextModels) -> None:
        import pickle

        self.published.append(pickle.loads(pickle.dumps(models)))

    def latest(self, have: int) -> TextModels | None:
        self.reads += 1
        if not self.published or self.published[-1].version <= have:
            return None
        return self.published[-1]


def test_a_replica_takes_newer_versions_only_and_asks_at_most_every_refresh() -> None:
    store = CopyingStore()
    learner = _models()
    learner.learn(LabelExample(1, "refund my invoice", category="billing"))
    store.publish(learner)
    replica = ModelReplica(store, _models, refresh=3600.0)
    first = replica.current()
    assert first.version == 1
    learner.learn(LabelExample(2, "parcel lost", category="shipping"))
    store.publish(learner)
    assert replica.current() is first  # within the refresh interval: no look-up
    assert store.reads == 1
    replica.refresh = 0.0
    assert replica.current().version == 2
    assert replica.current().version == 2 and store.reads == 3  # same version: kept


def test_worker_threads_get_an_immutable_copy_per_published_version() -> None:
    from models.intelligence import SnapshotModelStore

    store = SnapshotModelStore()
    replica = ModelReplica(store, _models, refresh=0.0)
    learner = _models()
    learner.learn(LabelExample(1, "refund my invoice", category="billing"))
    store.publish(learner)
    copy = replica.current()
    assert copy is not learner and copy.version == learner.version
    assert copy.category.predict_one("invoice refund").label == "billing"
    # The learner goes on learning; the copy other threads predict with does not change
    # until the next publication, which brings a new copy.
    for n in range(5):
        learner.learn(LabelExample(10 + n, "parcel lost in transit", category="shipping"))
    assert replica.current() is copy
    assert copy.category.metrics.n_seen == 1
    store.publish(learner)
    newer = replica.current()
    assert newer is not copy and newer.category.metrics.n_seen == 6
    assert store.latest(newer.version) is None


def _kb_change(article_id: int) -> ChangeEvent:
    row = {
        "id": article_id,
        "title": "Refund a double charge",
        "body": "We refund twice-charged cards.",
    }
    return ChangeEvent(
        table="kb_articles",
        op="r",
        key={"id": article_id},
        before=None,
        after=row | {"language": "en", "published": True},
        committed_at=datetime(2026, 3, 2, tzinfo=UTC),
        version=article_id,
        position=SourcePosition(lsn=article_id),
    )


def test_kb_changes_are_published_soon_or_when_their_epoch_ends_and_lessons_on_the_interval() -> (
    None
):
    """Across processes a replica only sees what was published: a KB change is published
    ``kb_delay`` after it arrived (one burst together), or at its epoch's snapshot when that
    comes first (before the epoch completes); lessons wait for the publishing interval."""
    store = CopyingStore()
    learner = _LearnLogic(_models(), store, timedelta(seconds=60), timedelta(milliseconds=250))
    assert len(store.published) == 1  # the starting models
    before = datetime.now(UTC)
    for article_id in (1, 2, 3):
        learner.on_item(_kb_change(article_id))
    due = learner.notify_at()
    assert len(store.published) == 1 and due is not None
    assert due - before < timedelta(seconds=1)  # not the lessons' minute
    learner.on_notify()  # the short delay after the burst ended
    assert len(store.published) == 2 and len(store.published[-1].kb) == 3
    learner.snapshot()  # the epoch ends: nothing new, nothing published again
    assert len(store.published) == 2
    learner.on_item(_kb_change(4))
    learner.snapshot()  # the epoch ended before the delay: published by the snapshot
    assert len(store.published) == 3 and len(store.published[-1].kb) == 4
    learner.on_item(LabelExample(1, "refund my invoice", category="billing"))
    lesson_due = learner.notify_at()
    assert lesson_due is not None and lesson_due - datetime.now(UTC) > timedelta(seconds=30)
    learner.on_item(_kb_change(5))  # a KB change brings the publication forward
    assert learner.notify_at() < lesson_due
    learner.on_notify()
    assert len(store.published) == 4 and learner.notify_at() is None
    learner.on_item(LabelExample(2, "refund my invoice again", category="billing"))
    learner.snapshot()
    assert len(store.published) == 4 and learner.notify_at() is not None
    learner.on_notify()  # the interval after the lesson ended
    assert len(store.published) == 5 and store.published[-1].version > store.published[3].version
