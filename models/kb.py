"""Knowledge-base article suggestions: BM25 over articles kept current through CDC.

Every insert, update or delete of a ``kb_articles`` row reaches :class:`KbIndex` as an
:meth:`KbIndex.upsert` or :meth:`KbIndex.remove`. The index keeps BM25's statistics
(document frequency per term, total length) incrementally instead of rebuilding a
``rank_bm25.BM25Okapi`` over the whole corpus: a change costs time proportional to the
article's length, a query touches only the postings of its own terms, and the state is
plain dicts and numpy arrays that pickle. A rebuild would cost O(corpus) on the first query
after every article edit, which a CDC stream makes frequent. Memory is proportional to the
published corpus plus a capped feedback table.

Kept as one module: the BM25 index, its updates from CDC and the feedback from
agents share one article state.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from models.events import ChangeEvent
from models.helpdesk import MAX_SUBJECT_CHARS, RowError, bounded_text, parse_timestamp

_WORD = re.compile(r"\w+")

# Small, accent-folded stop-word lists. They are applied together whatever the language
# (the language of a ticket is a guess), so index and query tokens always agree; the few
# words that are stop words in one language and content in another ("die", "son") matter
# little in support texts.
_STOP_WORDS_BY_LANGUAGE: dict[str, str] = {
    "en": "a about an and are as at be been but by can could do does for from had has have how "
    "i if in into is it its me my no not of on or our please so than that the their them then "
    "there these they this to too was we were what when where which who why will with would "
    "you your hi hello thanks thank",
    "de": "aber als am an auch auf aus bei bin bis bitte da das dass dem den der des die dies du "
    "ein eine einem einen einer es fur hallo hat habe ich ihr im in ist ja kann mein meine mit "
    "nach nicht noch nur oder sich sie sind so um und uns von war was wie wir zu zum zur",
    "fr": "au aux avec bonjour ce ces dans de des du elle en est et il ils je la le les leur ma "
    "mais me merci mes mon ne nous on ou par pas pour qu que qui sa se ses son sont sur ta te "
    "toi ton tu un une vos votre vous",
    "es": "al como con cual de del el ella ellos en es esta este gracias hola la las le lo los "
    "mas mi mis muy no nos o para pero por que se si sin su sus te tu un una uno y ya",
}
_STOP_WORDS = frozenset(" ".join(_STOP_WORDS_BY_LANGUAGE.values()).split())
# Inflectional endings shared by en/de/fr/es plurals and verb forms, longest first. This is
# deliberately lighter than a real stemmer: it only has to make "refunds" meet "refund" and
# "Rechnungen" meet "Rechnung"; index and query go through the same function.
_SUFFIXES: tuple[str, ...] = ("ing", "ed", "en", "er", "es", "s", "e")
_MIN_STEM = 4
_MAX_QUERY_TERMS = 256
MAX_KB_BODY_CHARS = 262_144
"""Longest article body indexed (256 Ki characters); longer ones are cut and marked."""


def tokenize(text: str) -> list[str]:
    """Lowercased, accent-folded, lightly stemmed word tokens without stop words.

    Example:
        >>> tokenize("Les factures ne sont pas arrivées")
        ['factur', 'arriv']
    """
    folded = _fold(text)
    tokens = []
    for word in _WORD.findall(folded):
        if word in _STOP_WORDS or word.strip("_") == "":
            continue
        tokens.append(_stem(word))
    return tokens


def content_words(text: str, *, min_length: int = 4, limit: int = 5) -> list[str]:
    """The first ``limit`` distinct content words of a text, folded but not stemmed.

    Readable keywords (for anomaly drivers): no stop words, digits or short words.

    Example:
        >>> content_words("Payment gateway TIMEOUT: payment failed at checkout")
        ['payment', 'gateway', 'timeout', 'failed', 'checkout']
    """
    folded = _fold(text)
    words: list[str] = []
    for word in _WORD.findall(folded):
        word = word.strip("_")
        if len(word) < min_length or word in _STOP_WORDS or word.isdigit() or word in words:
            continue
        words.append(word)
        if len(words) == limit:
            break
    return words


def _fold(text: str) -> str:
    """Casefolded, accents removed (ASCII text, the common case, skips the decomposition)."""
    folded = text.casefold()
    if folded.isascii():
        return folded
    folded = unicodedata.normalize("NFKD", folded)
    return "".join(ch for ch in folded if not unicodedata.combining(ch))


@functools.lru_cache(maxsize=65_536)
def _stem(word: str) -> str:
    # Pure and called for every word of every ticket: cached (words recur constantly).
    if word.isdigit():
        return word
    # Two passes so "chargers" and "charger" (and "charges", "charge") end up together.
    for _ in range(2):
        for suffix in _SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
                if suffix == "s" and word.endswith("ss"):
                    continue
                word = word[: -len(suffix)]
                break
        else:
            break
    return word


@dataclass(frozen=True)
class KbSuggestion:
    """A knowledge-base article proposed for a ticket, with why it was chosen."""

    article_id: int
    title: str
    score: float
    reasons: tuple[str, ...]


@dataclass(slots=True)
class _Article:
    row: int
    title: str
    language: str
    category: str | None
    length: int
    terms: dict[str, int]


class KbIndex:
    """BM25 search over published knowledge-base articles, with a learned feedback prior.

    Scoring is Okapi BM25 with Lucene's always-positive IDF,
    ``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))``, which stays meaningful on small
    corpora where the classic formula turns negative for common terms. Title words count
    ``title_weight`` times, since a title states what the article solves. Articles live in
    dense rows so a query scores each of its terms' postings in one vectorised step.

    Feedback: for each (key, article) the index counts suggestions that agents attached
    (``a``) or ignored (``i``). The prior ``p = (a + 1) / (a + i + 2)`` (Laplace smoothing,
    0.5 without evidence) scales the text score::

        score = bm25 * (1 + feedback_weight * (2 * p - 1))

    so with the default weight 0.5 the factor stays within (0.5, 1.5): feedback reorders
    articles the text matches but never surfaces one it does not. Counts are halved once
    their sum exceeds ``feedback_horizon`` so recent behaviour outweighs old, and at most
    ``max_feedback_pairs`` pairs are kept (least recently updated dropped first).

    Args:
        k1: BM25 term-frequency saturation.
        b: BM25 length normalisation.
        title_weight: How many times a title word counts.
        feedback_weight: Strength of the feedback prior, in [0, 1).
        feedback_horizon: Count sum above which a pair's counts are halved.
        max_feedback_pairs: Most (key, article) pairs remembered.

    Example:
        >>> index = KbIndex()
        >>> index.upsert(1, "Request a refund", "Refunds for duplicate charges take 5 days.")
        >>> index.upsert(2, "Reset your password", "Use the login page to reset a password.")
        >>> [s.article_id for s in index.suggest("I was charged twice, I want a refund")]
        [1]
    """

    def __init__(
        self,
        k1: float = 1.5,
        b: float = 0.75,
        *,
        title_weight: int = 2,
        feedback_weight: float = 0.5,
        feedback_horizon: int = 200,
        max_feedback_pairs: int = 20_000,
    ) -> None:
        if k1 < 0 or not 0.0 <= b <= 1.0:
            raise ValueError("k1 must be >= 0 and b within [0, 1]")
        if not 0.0 <= feedback_weight < 1.0:
            raise ValueError("feedback_weight must be within [0, 1)")
        self.k1 = k1
        self.b = b
        self.title_weight = title_weight
        self.feedback_weight = feedback_weight
        self.feedback_horizon = feedback_horizon
        self.max_feedback_pairs = max_feedback_pairs
        self._articles: dict[int, _Article] = {}
        # term -> {row: term frequency}; the document frequency is the dict's size.
        self._postings: dict[str, dict[int, int]] = {}
        self._total_length = 0
        # Row layout: lengths, language and category codes per row; freed rows are reused
        # so the arrays never outgrow the largest corpus seen.
        self._row_ids: list[int | None] = []
        self._free_rows: list[int] = []
        self._lengths = np.zeros(0, dtype=np.float64)
        self._language_codes = np.zeros(0, dtype=np.int32)
        self._category_codes = np.zeros(0, dtype=np.int32)
        self._codes: dict[str | None, int] = {None: 0}
        # (key, article id) -> [attached, ignored]; dict order is recency of update.
        self._feedback: dict[tuple[str, int], list[float]] = {}
        self._posting_arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __getstate__(self) -> dict[str, Any]:
        # The array form of the postings is a cache, rebuilt on demand after a restore.
        state = self.__dict__.copy()
        state["_posting_arrays"] = {}
        return state

    def __len__(self) -> int:
        return len(self._articles)

    def __contains__(self, article_id: object) -> bool:
        return article_id in self._articles

    def upsert(
        self,
        article_id: int,
        title: str,
        body: str,
        *,
        language: str = "en",
        category: str | None = None,
        published: bool = True,
    ) -> None:
        """Index an article, replacing its previous version; unpublished ones are dropped."""
        self.remove(article_id)
        if not published:
            return
        terms = Counter(tokenize(body))
        for term in tokenize(title):
            terms[term] += self.title_weight
        length = sum(terms.values())
        if length == 0:
            return
        row = self._allocate_row(article_id)
        lang = language.casefold()
        self._lengths[row] = length
        self._language_codes[row] = self._code(lang)
        self._category_codes[row] = self._code(category)
        self._articles[article_id] = _Article(row, title, lang, category, length, dict(terms))
        self._total_length += length
        for term, tf in terms.items():
            self._postings.setdefault(term, {})[row] = tf
            self._posting_arrays.pop(term, None)

    def remove(self, article_id: int) -> bool:
        """Drop an article (deleted or unpublished). Returns whether it was indexed.

        Its feedback counts are kept: an article unpublished for an edit keeps its history.
        """
        article = self._articles.pop(article_id, None)
        if article is None:
            return False
        self._total_length -= article.length
        for term in article.terms:
            postings = self._postings[term]
            del postings[article.row]
            if not postings:
                del self._postings[term]
            self._posting_arrays.pop(term, None)
        self._row_ids[article.row] = None
        self._lengths[article.row] = 0.0
        self._free_rows.append(article.row)
        return True

    def suggest(
        self,
        text: str,
        *,
        language: str | None = None,
        category: str | None = None,
        k: int = 3,
        feedback_key: str | None = None,
    ) -> list[KbSuggestion]:
        """Best ``k`` articles for a ticket text, best first (ties by article id).

        Args:
            text: Ticket subject and description.
            language: Only articles in this language.
            category: Only articles of this category; also the feedback key unless
                ``feedback_key`` is given.
            k: Most suggestions returned.
            feedback_key: Key of the learned prior (a category or an intent).
        """
        n_docs = len(self._articles)
        if n_docs == 0 or k <= 0:
            return []
        query = [t for t in dict.fromkeys(tokenize(text)) if t in self._postings]
        query = query[:_MAX_QUERY_TERMS]
        if not query:
            return []
        n_rows = len(self._row_ids)
        avg_length = self._total_length / n_docs
        norms = self.k1 * (1.0 - self.b + self.b * self._lengths[:n_rows] / avg_length)
        scores = np.zeros(n_rows, dtype=np.float64)
        for term in query:
            rows, tfs = self._term_arrays(term)
            scores[rows] += (
                self._idf(len(rows), n_docs) * tfs * (self.k1 + 1.0) / (tfs + norms[rows])
            )
        if language is not None:
            scores[self._language_codes[:n_rows] != self._codes.get(language.casefold(), -1)] = 0.0
        if category is not None:
            scores[self._category_codes[:n_rows] != self._codes.get(category, -1)] = 0.0
        candidates = np.flatnonzero(scores > 0.0)
        if candidates.size == 0:
            return []

        key = feedback_key if feedback_key is not None else category
        use_feedback = key is not None and self.feedback_weight > 0.0 and bool(self._feedback)
        if candidates.size > k:
            kth = np.partition(scores[candidates], -k)[-k]
            # Feedback scales scores by at most (1 ± weight), so nothing below this bound
            # can climb into the top k; ties at the bound stay in for a stable order.
            w = self.feedback_weight if use_feedback else 0.0
            candidates = candidates[scores[candidates] >= kth * (1.0 - w) / (1.0 + w)]

        ranked: list[tuple[float, int, str | None]] = []
        for row in candidates.tolist():
            article_id = self._row_ids[row]
            assert article_id is not None
            score = float(scores[row])
            note = None
            if use_feedback and key is not None and (key, article_id) in self._feedback:
                prior = self.feedback_prior(key, article_id)
                score *= 1.0 + self.feedback_weight * (2.0 * prior - 1.0)
                note = f"agents attached it {prior:.0%} of the time for {key}"
            ranked.append((score, article_id, note))
        ranked.sort(key=lambda r: (-r[0], r[1]))

        suggestions = []
        for score, article_id, note in ranked[:k]:
            article = self._articles[article_id]
            reasons = [self._matched_terms(article, query, n_docs, float(norms[article.row]))]
            if note is not None:
                reasons.append(note)
            suggestions.append(
                KbSuggestion(article_id, article.title, round(score, 4), tuple(reasons))
            )
        return suggestions

    def _idf(self, df: int, n_docs: int) -> float:
        return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))

    def _matched_terms(self, article: _Article, query: list[str], n_docs: int, norm: float) -> str:
        gains = []
        for term in query:
            tf = article.terms.get(term)
            if tf:
                idf = self._idf(len(self._postings[term]), n_docs)
                gains.append((idf * tf * (self.k1 + 1.0) / (tf + norm), term))
        gains.sort(key=lambda g: (-g[0], g[1]))
        return "matched " + ", ".join(term for _, term in gains[:3])

    def _term_arrays(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        arrays = self._posting_arrays.get(term)
        if arrays is None:
            postings = self._postings[term]
            arrays = (
                np.fromiter(postings.keys(), dtype=np.int64, count=len(postings)),
                np.fromiter(postings.values(), dtype=np.float64, count=len(postings)),
            )
            self._posting_arrays[term] = arrays
        return arrays

    def _code(self, value: str | None) -> int:
        return self._codes.setdefault(value, len(self._codes))

    def _allocate_row(self, article_id: int) -> int:
        if self._free_rows:
            row = self._free_rows.pop()
            self._row_ids[row] = article_id
            return row
        row = len(self._row_ids)
        self._row_ids.append(article_id)
        if row >= len(self._lengths):
            size = max(16, 2 * len(self._lengths))
            self._lengths = np.resize(self._lengths, size)
            self._language_codes = np.resize(self._language_codes, size)
            self._category_codes = np.resize(self._category_codes, size)
        return row

    def record_feedback(self, key: str, article_id: int, attached: bool) -> None:
        """Learn that agents attached (or ignored) an article suggested under ``key``.

        ``key`` is whatever :meth:`suggest` is given as ``feedback_key`` or ``category``:
        the ticket's category or intent.
        """
        pair = (key, article_id)
        counts = self._feedback.pop(pair, None) or [0.0, 0.0]
        counts[0 if attached else 1] += 1.0
        if counts[0] + counts[1] > self.feedback_horizon:
            counts[0] /= 2.0
            counts[1] /= 2.0
        self._feedback[pair] = counts
        while len(self._feedback) > self.max_feedback_pairs:
            del self._feedback[next(iter(self._feedback))]

    def feedback_prior(self, key: str, article_id: int) -> float:
        """The smoothed attach rate of an article under ``key`` (0.5 without evidence)."""
        attached, ignored = self._feedback.get((key, article_id), (0.0, 0.0))
        return (attached + 1.0) / (attached + ignored + 2.0)


@dataclass(frozen=True)
class KbArticle:
    """One ``kb_articles`` change as the stores outside the flow see it (e.g. search).

    ``deleted`` marks a deleted row; its other fields are then empty (a delete carries only
    the key). ``version`` is the change's LSN, like every other row a sink writes.
    """

    id: int
    version: int
    title: str
    body: str
    category: str | None
    language: str
    published: bool
    updated_at: datetime | None
    deleted: bool = False

    @classmethod
    def from_change(cls, event: ChangeEvent) -> KbArticle:
        """Parse a ``kb_articles`` change.

        As lenient as :meth:`KbIndex.upsert` is through the text step: only the id is
        required, so an article the suggestions know is never missing from search.

        Raises:
            RowError: Without an integer id, or with an unreadable ``updated_at``.
        """
        row = event.row or {}
        raw_id = event.key.get("id", row.get("id"))
        if raw_id is None:
            raise RowError("kb_articles row without an id")
        try:
            article_id = int(raw_id)
        except (TypeError, ValueError) as exc:
            raise RowError(f"kb_articles row without an integer id: {raw_id!r}") from exc
        if event.op == "d" or event.after is None:
            return cls(article_id, event.version, "", "", None, "", False, None, deleted=True)
        after = event.after
        category = after.get("category")
        return cls(
            id=article_id,
            version=event.version,
            title=bounded_text(after.get("title"), MAX_SUBJECT_CHARS),
            body=bounded_text(after.get("body"), MAX_KB_BODY_CHARS),
            category=None if category is None else str(category),
            language=str(after.get("language") or "en"),
            published=bool(after.get("published", True)),
            updated_at=parse_timestamp(after.get("updated_at"), name="updated_at"),
        )
