"""Near-duplicate detection: scopes, window and cap eviction, removal, snapshots."""

from __future__ import annotations

import copy
import pickle
from datetime import UTC, datetime, timedelta

import pytest

from models.duplicates import DuplicateDetector, DuplicateMatch

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TEXT = (
    "Hello, my card was charged twice for invoice 4711 this month. "
    "Please refund the duplicate charge as soon as possible."
)
REWORDED = (
    "Hi, my card was charged twice for invoice 4711 this month. "
    "Please refund the duplicate charge as soon as possible, thanks."
)
UNRELATED = "I cannot log in to the mobile app since the last update, it says session expired."


def test_near_duplicate_of_same_customer_is_found() -> None:
    detector = DuplicateDetector()
    assert detector.check_and_add(1, TEXT, customer_id=10, organization=None, at=T0) == []
    matches = detector.check_and_add(
        2, REWORDED, customer_id=10, organization=None, at=T0 + timedelta(hours=1)
    )
    assert [(m.ticket_id, m.scope) for m in matches] == [(1, "customer")]
    assert matches[0].similarity >= detector.threshold


def test_unrelated_text_of_same_customer_is_not_a_duplicate() -> None:
    detector = DuplicateDetector()
    detector.check_and_add(1, TEXT, customer_id=10, organization=None, at=T0)
    assert detector.check_and_add(2, UNRELATED, customer_id=10, organization=None, at=T0) == []


def test_same_text_from_unrelated_customers_is_not_a_duplicate() -> None:
    detector = DuplicateDetector()
    detector.check_and_add(1, TEXT, customer_id=10, organization="Acme", at=T0)
    assert detector.check_and_add(2, TEXT, customer_id=11, organization=None, at=T0) == []
    assert detector.check_and_add(3, TEXT, customer_id=12, organization="Globex", at=T0) == []


def test_colleague_in_same_organisation_is_found_with_organisation_scope() -> None:
    detector = DuplicateDetector()
    detector.check_and_add(1, TEXT, customer_id=10, organization="Acme Corp", at=T0)
    # Organisation names from the customer profile differ in case and spacing.
    matches = detector.check_and_add(2, REWORDED, customer_id=11, organization=" acme  corp", at=T0)
    assert [(m.ticket_id, m.scope) for m in matches] == [(1, "organization")]


def test_same_customer_match_is_reported_once_with_customer_scope() -> None:
    detector = DuplicateDetector()
    detector.check_and_add(1, TEXT, customer_id=10, organization="Acme", at=T0)
    detector.check_and_add(2, REWORDED, customer_id=11, organization="Acme", at=T0)
    matches = detector.check_and_add(3, TEXT, customer_id=10, organization="Acme", at=T0)
    assert matches == [
        DuplicateMatch(1, 1.0, "customer"),
        DuplicateMatch(2, matches[1].similarity, "organization"),
    ]
    assert matches[1].similarity < 1.0


def test_rechecking_a_ticket_replaces_it_instead_of_matching_itself() -> None:
    detector = DuplicateDetector()
    detector.check_and_add(1, TEXT, customer_id=10, organization=None, at=T0)
    assert detector.check_and_add(1, REWORDED, customer_id=10, organization=None, at=T0) == []
    assert len(detector) == 1


def test_remove_forgets_the_ticket() -> None:
    detector = DuplicateDetector()
    detector.check_and_add(1, TEXT, customer_id=10, organization="Acme", at=T0)
    assert detector.remove(1) is True
    assert detector.remove(1) is False
    assert detector.check_and_add(2, TEXT, customer_id=10, organization="Acme", at=T0) == []
    assert len(detector) == 1
    assert detector.scope_count == 2


def test_tickets_older_than_the_window_are_evicted_and_not_matched() -> None:
    detector = DuplicateDetector(window=timedelta(days=7))
    detector.check_and_add(1, TEXT, customer_id=10, organization=None, at=T0)
    late = T0 + timedelta(days=8)
    assert detector.check_and_add(2, TEXT, customer_id=10, organization=None, at=late) == []
    assert 1 not in detector
    assert len(detector) == 1


def test_late_ticket_does_not_match_outside_its_own_window() -> None:
    detector = DuplicateDetector(window=timedelta(days=1))
    detector.check_and_add(1, TEXT, customer_id=10, organization=None, at=T0 + timedelta(days=2))
    assert detector.check_and_add(2, TEXT, customer_id=10, organization=None, at=T0) == []


def test_explicit_evict() -> None:
    detector = DuplicateDetector()
    for i in range(10):
        detector.check_and_add(
            i, f"{TEXT} {i}", customer_id=i, organization=None, at=T0 + timedelta(hours=i)
        )
    assert detector.evict(T0 + timedelta(hours=4)) == 4
    assert len(detector) == 6
    assert detector.scope_count == 6


def test_memory_is_bounded_by_the_window() -> None:
    detector = DuplicateDetector(window=timedelta(hours=1))
    # 3000 tickets over 10 hours from 500 customers of 5 organisations.
    for i in range(3000):
        detector.check_and_add(
            i,
            f"ticket {i} about order {i * 7} that never arrived at warehouse {i % 13}",
            customer_id=i % 500,
            organization=f"org{i % 5}",
            at=T0 + timedelta(seconds=12 * i),
        )
    # One hour of event time holds 300 tickets (301 counting both ends of the window).
    assert len(detector) <= 301
    assert detector.scope_count <= 301 + 5
    assert len(detector._by_time) <= 2 * len(detector) + 64


def test_memory_is_bounded_by_the_per_scope_cap() -> None:
    detector = DuplicateDetector(window=timedelta(days=365), max_per_scope=20)
    for i in range(3000):
        detector.check_and_add(
            i,
            f"ticket {i} about order {i * 7} that never arrived at warehouse {i % 13}",
            customer_id=i % 3,
            organization="Acme",
            at=T0 + timedelta(seconds=12 * i),
        )
    # Three customers keep 20 each; the organisation's 20 are among them.
    assert len(detector) == 3 * 20
    assert max(len(s) for s in detector._scopes.values()) == 20
    assert all(i in detector for i in range(2940, 3000))
    assert len(detector._by_time) <= 2 * len(detector) + 64


def test_per_scope_cap_evicts_oldest_first() -> None:
    detector = DuplicateDetector(max_per_scope=3)
    for i in range(5):
        detector.check_and_add(
            i, f"{TEXT} {i}", customer_id=10, organization=None, at=T0 + timedelta(minutes=i)
        )
    assert [i for i in range(5) if i in detector] == [2, 3, 4]
    matches = detector.check_and_add(9, TEXT, customer_id=10, organization=None, at=T0)
    assert {m.ticket_id for m in matches} <= {2, 3, 4}


def test_organisation_cap_keeps_the_customer_history() -> None:
    detector = DuplicateDetector(max_per_scope=2)
    detector.check_and_add(1, TEXT, customer_id=10, organization="Acme", at=T0)
    for i in range(2, 5):
        detector.check_and_add(
            i, f"{UNRELATED} {i}", customer_id=i * 100, organization="Acme", at=T0
        )
    matches = detector.check_and_add(9, REWORDED, customer_id=10, organization="Acme", at=T0)
    assert [(m.ticket_id, m.scope) for m in matches] == [(1, "customer")]


def test_empty_text_is_ignored() -> None:
    detector = DuplicateDetector()
    assert detector.check_and_add(1, " ... ", customer_id=10, organization=None, at=T0) == []
    assert len(detector) == 0


def test_pickle_round_trip_keeps_state_and_results() -> None:
    detector = DuplicateDetector()
    for i in range(20):
        detector.check_and_add(
            i, f"{TEXT} {i}", customer_id=i % 3, organization="Acme", at=T0 + timedelta(hours=i)
        )
    restored = pickle.loads(pickle.dumps(detector))
    assert len(restored) == len(detector)
    at = T0 + timedelta(hours=21)
    expected = detector.check_and_add(99, REWORDED, customer_id=1, organization="Acme", at=at)
    assert expected
    assert restored.check_and_add(99, REWORDED, customer_id=1, organization="Acme", at=at) == (
        expected
    )


def test_snapshots_carry_only_used_rows_and_restored_scopes_keep_growing() -> None:
    detector = DuplicateDetector()
    for i in range(5):  # one customer: a scope grown from 4 to 8 rows, 5 used
        detector.check_and_add(
            i, f"{TEXT} {i}", customer_id=1, organization=None, at=T0 + timedelta(minutes=i)
        )
    scope = detector._scopes[next(iter(detector._scopes))]
    assert len(scope.ats) > len(scope)
    restored = pickle.loads(pickle.dumps(detector))
    again = restored._scopes[next(iter(restored._scopes))]
    assert len(again.ats) == len(again) == 5
    # Restored full scopes grow on the next add; an emptied one starts again.
    for i in range(5, 12):
        restored.check_and_add(
            i, f"{UNRELATED} {i}", customer_id=1, organization=None, at=T0 + timedelta(minutes=i)
        )
    assert len(restored) == 12
    assert restored.check_and_add(
        99, REWORDED, customer_id=1, organization=None, at=T0 + timedelta(minutes=20)
    )
    for i in [*range(12), 99]:
        restored.remove(i)
    empty = pickle.loads(pickle.dumps(restored))
    assert (
        empty.check_and_add(
            100, TEXT, customer_id=1, organization=None, at=T0 + timedelta(minutes=30)
        )
        == []
    )


@pytest.mark.parametrize("verify", [True, False])
def test_results_are_deterministic_across_instances(verify: bool) -> None:
    def run() -> list[list[DuplicateMatch]]:
        detector = DuplicateDetector(verify=verify, seed=7)
        return [
            detector.check_and_add(i, f"{TEXT} {i % 4}", customer_id=1, organization=None, at=T0)
            for i in range(8)
        ]

    assert run() == run()


def test_naive_datetimes_are_utc() -> None:
    detector = DuplicateDetector(window=timedelta(hours=1))
    detector.check_and_add(1, TEXT, customer_id=10, organization=None, at=T0)
    naive = T0.replace(tzinfo=None) + timedelta(minutes=30)
    assert detector.check_and_add(2, TEXT, customer_id=10, organization=None, at=naive)


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="threshold"):
        DuplicateDetector(threshold=0.0)
    with pytest.raises(ValueError, match="window"):
        DuplicateDetector(window=timedelta(0))


def test_snapshots_hold_entries_as_columns_and_older_snapshots_still_load() -> None:
    detector = DuplicateDetector(max_per_scope=6)
    for i in range(30):  # the organisation's cap drops entries from one scope only
        detector.check_and_add(
            i, f"{TEXT} {i}", customer_id=i % 4, organization="Acme", at=T0 + timedelta(hours=i)
        )
    detector.remove(27)
    state = detector.__getstate__()
    assert not isinstance(state["_entries"], dict)  # columns, not hundreds of objects
    restored = pickle.loads(pickle.dumps(detector))
    assert restored._by_time == detector._by_time
    for tid, entry in detector._entries.items():
        again = restored._entries[tid]
        assert (again.at, again.customer_id, again.organization) == (
            entry.at,
            entry.customer_id,
            entry.organization,
        )
        assert (again.in_customer, again.in_organization) == (
            entry.in_customer,
            entry.in_organization,
        )
        assert again.shingles == entry.shingles
    # A snapshot written before the columns (entries as a dict) resumes the same.
    older = {**state, "_entries": dict(detector._entries), "_by_time": list(detector._by_time)}
    legacy = DuplicateDetector.__new__(DuplicateDetector)
    legacy.__setstate__(copy.deepcopy(older))  # its own scopes, not the detector's
    at = T0 + timedelta(hours=31)
    expected = detector.check_and_add(99, REWORDED, customer_id=1, organization="Acme", at=at)
    assert expected
    for other in (restored, legacy):
        assert other.check_and_add(99, REWORDED, customer_id=1, organization="Acme", at=at) == (
            expected
        )


def test_exact_similarity_of_many_candidates_equals_the_set_formula() -> None:
    import numpy as np

    from models.duplicates import _jaccard_many

    rng = np.random.default_rng(7)
    # A small universe so that sets overlap from nothing to everything.
    universe = np.arange(40, dtype=np.uint32)
    query = np.unique(rng.choice(universe, 15, replace=False))
    others = [
        np.unique(rng.choice(universe, int(k), replace=False)) for k in rng.integers(1, 40, 60)
    ]
    others += [query.copy(), np.array([universe[-1]], dtype=np.uint32)]
    got = _jaccard_many(query, [o.tobytes() for o in others]).tolist()
    q = set(query.tolist())
    expected = [len(q & set(o.tolist())) / len(q | set(o.tolist())) for o in others]
    assert got == expected  # exact: the same integer counts divided the same way
    assert got[-2] == 1.0 and _jaccard_many(query, []).size == 0


def test_many_near_duplicates_in_one_scope_come_back_most_similar_first() -> None:
    detector = DuplicateDetector(max_matches=3)
    base = "the invoice for march was charged twice to my card and i need one refund"
    words = base.split()
    for i in range(12):  # i words changed at the end: similarity falls as i grows
        text = " ".join(words[: len(words) - i] + [f"extra{i}{j}" for j in range(i)])
        detector.check_and_add(100 + i, text, customer_id=1, organization=None, at=T0)
    matches = detector.check_and_add(1, base, customer_id=1, organization=None, at=T0)
    assert [m.ticket_id for m in matches] == [100, 101, 102]
    assert matches[0].similarity == 1.0
    assert matches[0].similarity > matches[1].similarity > matches[2].similarity


def _edited_texts(count: int, seed: int, max_edits: int = 18) -> list[str]:
    """Texts from a few templates with random word edits: pairs at every similarity."""
    import random

    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(400)]
    templates = [[rng.choice(vocabulary) for _ in range(30)] for _ in range(6)]
    texts = []
    for _ in range(count):
        words = list(rng.choice(templates))
        for _ in range(rng.randint(0, max_edits)):
            words[rng.randrange(len(words))] = rng.choice(vocabulary)
        texts.append(" ".join(words))
    return texts


def test_byte_signatures_find_exactly_what_full_signatures_find(monkeypatch) -> None:
    import numpy as np

    import models.duplicates as duplicates

    texts = _edited_texts(400, seed=3)

    def run() -> list[list[DuplicateMatch]]:
        detector = DuplicateDetector(max_per_scope=200)
        return [
            detector.check_and_add(
                i, text, customer_id=i % 3, organization="Acme", at=T0 + timedelta(minutes=i)
            )
            for i, text in enumerate(texts)
        ]

    compact = run()
    monkeypatch.setattr(duplicates, "_SIGNATURE_DTYPE", np.uint32)
    full = run()
    assert sum(map(len, full)) > 100  # the stream has duplicates at many similarities
    assert compact == full


def test_byte_signature_estimates_are_as_close_as_full_ones_without_the_exact_check(
    monkeypatch,
) -> None:
    import numpy as np

    import models.duplicates as duplicates

    texts = _edited_texts(300, seed=5)
    shingles = [set(zip(*(t.split()[k:] for k in range(3)), strict=False)) for t in texts]

    def errors() -> dict[tuple[int, int], float]:
        detector = DuplicateDetector(
            max_per_scope=300, verify=False, threshold=0.3, max_matches=1000
        )
        found = {}
        for i, text in enumerate(texts):
            at = T0 + timedelta(minutes=i)
            for m in detector.check_and_add(i, text, customer_id=1, organization=None, at=at):
                a, b = shingles[i], shingles[m.ticket_id]
                found[(i, m.ticket_id)] = m.similarity - len(a & b) / len(a | b)
        return found

    compact = errors()
    monkeypatch.setattr(duplicates, "_SIGNATURE_DTYPE", np.uint32)
    full = errors()
    both = compact.keys() & full.keys()
    assert len(both) > 800
    # Accidental byte agreements would bias every estimate up by about (1 - J) / 256 if
    # they were not taken out; what is left is MinHash's own error, the same for both.
    bias = sum(compact[k] - full[k] for k in both) / len(both)
    assert abs(bias) < 0.0008
    assert (
        abs(
            sum(map(abs, compact.values())) / len(compact)
            - sum(map(abs, full.values())) / len(full)
        )
        < 0.01
    )


def test_the_match_limit_only_truncates_the_full_ranking() -> None:
    texts = _edited_texts(300, seed=11, max_edits=4)
    few, every = DuplicateDetector(max_matches=3), DuplicateDetector(max_matches=10**6)
    truncated = 0
    for i, text in enumerate(texts):
        at = T0 + timedelta(minutes=i)
        org = "Acme" if i % 2 else None
        got = few.check_and_add(i, text, customer_id=i % 4, organization=org, at=at)
        ranked = every.check_and_add(i, text, customer_id=i % 4, organization=org, at=at)
        assert ranked == sorted(ranked, key=lambda m: (-m.similarity, m.ticket_id))
        assert len({m.ticket_id for m in ranked}) == len(ranked)  # one scope per ticket
        assert got == ranked[:3]
        truncated += len(ranked) > 3
    assert truncated > 50


@pytest.mark.parametrize("width", [1, 8, 48, 64, 100, 128])
def test_agreements_count_equal_values_whatever_the_signature_width(width: int) -> None:
    import numpy as np

    from models.duplicates import _agreements

    rng = np.random.default_rng(width)
    rows = rng.integers(0, 4, (37, width), dtype=np.uint8)  # many equal values
    signature = rng.integers(0, 4, width, dtype=np.uint8)
    expected = np.count_nonzero(rows == signature, axis=1)
    assert _agreements(rows, signature).tolist() == expected.tolist()
