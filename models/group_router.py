"""Where a ticket will end up: the resolving group, predicted when it opens.

Helpdesks route a new ticket to a first group (by rule or by the service desk), and a
third of tickets are then passed on, often along the same few paths (a category the
first-line desk cannot fix, a location served by another team). This model learns those
paths online from closed tickets: for the ticket's initial group and its other opening
fields it counts where tickets like it were finally resolved, from the most specific
context it has seen often enough down to the initial group alone; a ticket with no initial
group falls back to the opening fields alone. It predicts before it learns (prequential)
and never needs a batch fit.

Example:
    >>> router = GroupRouter(contexts=(("category",),), min_support=2)
    >>> for _ in range(3):
    ...     router.learn_one({"category": "network"}, "desk", "network-team")
    >>> router.predict_one({"category": "network"}, "desk")  # most likely first
    ['network-team', 'desk']
    >>> router.predict_one({"category": "network"}, "field")  # nothing learned: stays
    ['field']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

Fields = Mapping[str, str | None]


class GroupRouter:
    """Counts of final groups per (initial group, context) with back-off; see the module.

    Args:
        contexts: Field-name tuples from most to least specific; each is combined with
            the initial group. The initial group alone is always the last context.
        min_support: Closed tickets a context of opening fields needs before it is trusted.
        min_support_initial: The same for the initial group alone (one table per group,
            trusted sooner: it turns a placeholder group into the usual destination).
        max_keys: Contexts remembered; the least used half is dropped beyond it, so
            memory stays bounded on an endless stream.
    """

    def __init__(
        self,
        contexts: Sequence[tuple[str, ...]] = (
            ("category", "subcategory", "u_symptom"),
            ("subcategory", "location"),
            ("subcategory",),
            ("category",),
            ("opened_by",),
            ("location",),
        ),
        *,
        min_support: int = 20,
        min_support_initial: int = 3,
        max_keys: int = 500_000,
    ) -> None:
        self.contexts = [tuple(c) for c in contexts]
        self.min_support = min_support
        self.min_support_initial = min_support_initial
        self.max_keys = max_keys
        self._counts: dict[tuple[object, ...], Counter[str]] = {}

    def _keys(self, fields: Fields, initial: str | None) -> list[tuple[object, ...]]:
        keys: list[tuple[object, ...]] = []
        for context in self.contexts:
            values = tuple(fields.get(name) for name in context)
            if all(v is None for v in values):
                continue
            keys.append((initial, context, values))
        keys.append((initial, (), ()))
        return keys

    def predict_one(self, fields: Fields, initial: str | None, k: int = 3) -> list[str]:
        """Up to ``k`` groups, most likely first (the initial group when nothing is known)."""
        for key in self._keys(fields, initial):
            counts = self._counts.get(key)
            needed = self.min_support if key[1] else self.min_support_initial
            if counts is not None and sum(counts.values()) >= needed:
                ranked = [group for group, _ in counts.most_common(k)]
                if initial is not None and initial not in ranked and len(ranked) < k:
                    ranked.append(initial)
                return ranked
        return [initial] if initial is not None else []

    def learn_one(self, fields: Fields, initial: str | None, final: str) -> None:
        """Record that a ticket with these opening fields and initial group ended at ``final``."""
        for key in self._keys(fields, initial):
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = Counter()
            counts[final] += 1
        if len(self._counts) > self.max_keys:
            keep = sorted(self._counts, key=lambda k: -sum(self._counts[k].values()))
            self._counts = {k: self._counts[k] for k in keep[: self.max_keys // 2]}
