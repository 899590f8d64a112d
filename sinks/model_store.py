"""Redis as the model store of a cluster: the learning copy publishes, predictors read.

The dataflow keeps one learning copy of the text models (``learn_text``, one key) and
lets every worker predict with the newest published version (:mod:`models.intelligence`).
Inside one process the copy is shared by reference; across processes, and across hosts,
it travels through Redis, which every deployment already runs for the live state.

Keys, with prefix ``p`` and flow id ``f``: ``{p}:models:{f}:text`` holds the compressed
pickle and ``{p}:models:{f}:text:version`` its version, written together in one
transaction, so a reader that sees a version finds at least that version's bytes.

Only processes of the same deployment read these bytes (pickle executes code on load):
give Redis a password and do not share the key space with untrusted writers.
"""

from __future__ import annotations

import logging
import pickle
import zlib

import redis

from models.intelligence import TextModels

log = logging.getLogger(__name__)


class RedisModelStore:
    """A :class:`models.intelligence.ModelStore` in Redis.

    Args:
        url: Redis URL.
        prefix: key prefix shared with the live store.
        flow_id: the dataflow's id, so two flows on one Redis keep their models apart.
    """

    def __init__(self, url: str, *, prefix: str = "triage", flow_id: str = "triage") -> None:
        self.url = url
        self.key = f"{prefix}:models:{flow_id}:text"
        self._client: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.url, socket_timeout=10)
        return self._client

    def publish(self, models: TextModels) -> None:
        blob = zlib.compress(pickle.dumps(models, protocol=pickle.HIGHEST_PROTOCOL), 1)
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.set(self.key, blob)
            pipe.set(f"{self.key}:version", models.version)
            pipe.execute()
        except redis.RedisError as exc:
            # Predictors keep the version they have; the next change publishes again.
            log.warning("cannot publish text models version %s: %s", models.version, exc)

    def latest(self, have: int) -> TextModels | None:
        try:
            raw = self.client.get(f"{self.key}:version")
            if raw is None or int(raw) <= have:
                return None
            blob = self.client.get(self.key)
        except redis.RedisError as exc:
            log.warning("cannot read text models: %s", exc)
            return None
        if not isinstance(blob, bytes):
            return None
        models: TextModels = pickle.loads(zlib.decompress(blob))
        return models

    def clear(self) -> None:
        """Forget the published models (a fresh deployment, tests)."""
        self.client.delete(self.key, f"{self.key}:version")
