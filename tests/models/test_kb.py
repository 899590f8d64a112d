"""KB suggestions: BM25 ranking, CDC upserts and deletes, filters, feedback prior."""

from __future__ import annotations

import math
import pickle

import pytest

from models.kb import KbIndex, tokenize


@pytest.fixture
def index() -> KbIndex:
    kb = KbIndex()
    kb.upsert(
        1,
        "Request a refund for a duplicate charge",
        "If your card was charged twice, open the invoice and request a refund. "
        "Refunds reach your card within 5 business days.",
        category="billing",
    )
    kb.upsert(
        2,
        "Reset your password",
        "Use 'Forgot password' on the login page. The reset link expires after one hour.",
        category="account",
    )
    kb.upsert(
        3,
        "Track your delivery",
        "Every shipment has a tracking number in the confirmation email.",
        category="shipping",
    )
    kb.upsert(
        4,
        "Rückerstattung bei doppelter Abbuchung",
        "Wurde Ihre Karte doppelt belastet, können Sie die Rückerstattung in der Rechnung "
        "anfordern.",
        language="de",
        category="billing",
    )
    kb.upsert(
        5,
        "Update your payment card",
        "Change the card used for invoices under Billing settings.",
        category="billing",
    )
    return kb


def ids(suggestions: list) -> list[int]:
    return [s.article_id for s in suggestions]


def test_tokenize_folds_case_accents_stop_words_and_plurals() -> None:
    assert tokenize("The REFUNDS were charged") == ["refund", "charg"]
    assert tokenize("Die Rechnungen") == ["rechnung"]
    assert tokenize("contraseña") == tokenize("CONTRASENA")


def test_score_follows_the_documented_bm25_formula() -> None:
    kb = KbIndex(k1=1.5, b=0.75)
    kb.upsert(1, "", "refund refund card")
    kb.upsert(2, "", "password reset")
    (suggestion,) = kb.suggest("refund")
    idf = math.log(1 + (2 - 1 + 0.5) / (1 + 0.5))
    norm = 1.5 * (1 - 0.75 + 0.75 * 3 / 2.5)
    assert suggestion.score == pytest.approx(round(idf * 2 * 2.5 / (2 + norm), 4))


def test_relevant_article_ranks_first(index: KbIndex) -> None:
    suggestions = index.suggest("I was charged twice on my card, I want a refund")
    assert ids(suggestions)[0] == 1
    assert suggestions[0].title == "Request a refund for a duplicate charge"
    assert suggestions[0].score > 0
    assert any("refund" in reason for reason in suggestions[0].reasons)
    assert ids(index.suggest("cannot log in, forgot my password"))[0] == 2
    assert ids(index.suggest("where is my package? tracking number missing"))[0] == 3


def test_scores_are_descending_and_k_limits(index: KbIndex) -> None:
    suggestions = index.suggest("card invoice refund charged", k=2)
    assert len(suggestions) == 2
    assert suggestions[0].score >= suggestions[1].score


def test_no_match_gives_no_suggestion(index: KbIndex) -> None:
    assert index.suggest("xylophone quartet") == []
    assert KbIndex().suggest("refund") == []


def test_upsert_replaces_previous_version(index: KbIndex) -> None:
    index.upsert(3, "Change your shipping address", "Edit the address before dispatch.")
    assert len(index) == 5
    assert 3 not in ids(index.suggest("tracking number for my shipment"))
    assert ids(index.suggest("change shipping address"))[0] == 3


def test_remove_removes(index: KbIndex) -> None:
    assert index.remove(1) is True
    assert index.remove(1) is False
    assert 1 not in ids(index.suggest("refund duplicate charge"))
    # Statistics follow: no postings are left for words only article 1 had.
    assert "twic" not in index._postings


def test_unpublished_articles_are_excluded(index: KbIndex) -> None:
    index.upsert(2, "Reset your password", "Use the login page.", published=False)
    assert 2 not in index
    assert 2 not in ids(index.suggest("reset password"))
    index.upsert(2, "Reset your password", "Use the login page.", published=True)
    assert ids(index.suggest("reset password"))[0] == 2


def test_language_filter(index: KbIndex) -> None:
    assert ids(index.suggest("Karte doppelt belastet, Rückerstattung", language="de")) == [4]
    assert 4 not in ids(index.suggest("Karte doppelt belastet, Rückerstattung", language="en"))


def test_category_filter(index: KbIndex) -> None:
    suggestions = index.suggest("card", category="billing", k=10)
    assert set(ids(suggestions)) == {1, 5}
    assert ids(index.suggest("password reset", category="billing")) == []


def test_feedback_moves_an_article_up(index: KbIndex) -> None:
    query = "card charged on invoice"
    before = index.suggest(query, category="billing")
    assert ids(before)[:2] == [1, 5]
    for _ in range(10):
        index.record_feedback("billing", 5, attached=True)
        index.record_feedback("billing", 1, attached=False)
    after = index.suggest(query, category="billing")
    assert ids(after)[:2] == [5, 1]
    assert ids(index.suggest(query, category="billing", k=1)) == [5]
    assert any("attached" in reason for reason in after[0].reasons)
    # The prior belongs to its key: other categories or intents are unaffected.
    assert ids(index.suggest(query, feedback_key="refund"))[:2] == [1, 5]


def test_feedback_prior_is_bounded_and_counts_are_bounded() -> None:
    kb = KbIndex(feedback_horizon=20, max_feedback_pairs=3)
    for _ in range(1000):
        kb.record_feedback("billing", 1, attached=True)
    assert 0.5 < kb.feedback_prior("billing", 1) < 1.0
    assert sum(kb._feedback[("billing", 1)]) <= 21
    for article in range(2, 10):
        kb.record_feedback("billing", article, attached=False)
    assert len(kb._feedback) == 3
    assert kb.feedback_prior("never", 1) == 0.5


def test_feedback_never_surfaces_an_unmatched_article(index: KbIndex) -> None:
    for _ in range(50):
        index.record_feedback("billing", 3, attached=True)
    assert 3 not in ids(index.suggest("refund", feedback_key="billing", k=10))


def test_pickle_round_trip(index: KbIndex) -> None:
    index.record_feedback("billing", 5, attached=True)
    restored = pickle.loads(pickle.dumps(index))
    query = "card charged twice refund"
    assert restored.suggest(query, category="billing") == index.suggest(query, category="billing")
    restored.upsert(6, "Refund timelines", "Refunds take five days.")
    assert 6 not in index
