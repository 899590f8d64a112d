"""Ticket sentiment from VADER's bundled English lexicon (no downloads, no training).

VADER only knows English. For any other language the analyzer says ``unknown`` rather
than ``neutral``: a German complaint scored with an English lexicon would look neutral
(no known words), and a false "neutral" would hide an angry customer from dashboards.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Literal

SentimentLabel = Literal["negative", "neutral", "positive", "unknown"]

# VADER's authors classify compound >= 0.05 as positive and <= -0.05 as negative.
POLARITY_THRESHOLD = 0.05
# Share of sentiment-bearing text at which the evidence counts as complete: strongly
# worded complaints sit around a quarter of their words in VADER's lexicon.
_FULL_EVIDENCE_SHARE = 0.25
# A neutral verdict on a handful of words says little; from this many words on it is
# taken at face value.
_FULL_NEUTRAL_TOKENS = 8

# VADER re-lowercases the whole text for every sentiment-bearing word, so its cost grows
# with the square of the length (20k characters of complaints: 1.5 s). Only the first
# this many characters are scored: a ticket's tone is set at its start, and the work per
# ticket stays bounded (a few milliseconds).
MAX_SCORED_CHARS = 2_000

_WORD = re.compile(r"\w+", re.UNICODE)
_lock = threading.Lock()
_analyzer: object | None = None


def _vader() -> object:
    # Building the analyzer parses the lexicon file (~50 ms); share one per process.
    global _analyzer
    with _lock:
        if _analyzer is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            _analyzer = SentimentIntensityAnalyzer()
        return _analyzer


@dataclass(frozen=True)
class Sentiment:
    """Polarity of a text: ``score`` in -1..1, ``confidence`` in 0..1 and a label."""

    score: float
    confidence: float
    label: SentimentLabel


UNKNOWN_SENTIMENT = Sentiment(0.0, 0.0, "unknown")


class SentimentAnalyzer:
    """Scores ticket text with VADER for English; other languages are ``unknown``.

    ``score`` is VADER's compound score. ``confidence`` is strength times support:

    - polar labels: strength is ``|score|``; support is ``0.5 + 0.5 * e`` where ``e`` is
      the share of sentiment-bearing text (VADER's ``pos + neg``) relative to 25 %, capped
      at 1, so one mildly negative word in a long neutral text is not a confident verdict;
    - neutral: strength is how far the score is from tipping polar
      (``1 - |score| / 0.05``); support grows with length up to 8 words.

    Only the first :data:`MAX_SCORED_CHARS` characters are scored.

    The analyzer holds no state of its own (the lexicon is shared per process), so it
    pickles to a few bytes.

    Example:
        >>> analyzer = SentimentAnalyzer()
        >>> analyzer.score("This is terrible, I am very angry", "en").label
        'negative'
        >>> analyzer.score("Das ist furchtbar", "de")
        Sentiment(score=0.0, confidence=0.0, label='unknown')
    """

    def __init__(self, languages: tuple[str, ...] = ("en",)) -> None:
        self.languages = tuple(languages)

    def supports(self, language: str | None) -> bool:
        """Whether texts in ``language`` (e.g. ``en`` or ``en-GB``) can be scored."""
        if not language:
            return False
        return language.lower().split("-")[0].split("_")[0] in self.languages

    def score(self, text: str, language: str | None) -> Sentiment:
        """Sentiment of ``text`` written in ``language`` (ISO 639-1 code)."""
        if not self.supports(language):
            return UNKNOWN_SENTIMENT
        text = _head(text, MAX_SCORED_CHARS)
        n_tokens = len(_WORD.findall(text))
        if n_tokens == 0:
            return Sentiment(0.0, 0.0, "neutral")
        scores: dict[str, float] = _vader().polarity_scores(text)  # type: ignore[attr-defined]
        compound = float(scores["compound"])
        magnitude = abs(compound)
        if magnitude >= POLARITY_THRESHOLD:
            share = float(scores["pos"]) + float(scores["neg"])
            evidence = min(1.0, share / _FULL_EVIDENCE_SHARE)
            confidence = magnitude * (0.5 + 0.5 * evidence)
            label: SentimentLabel = "positive" if compound > 0 else "negative"
        else:
            strength = 1.0 - magnitude / POLARITY_THRESHOLD
            confidence = strength * min(1.0, n_tokens / _FULL_NEUTRAL_TOKENS)
            label = "neutral"
        return Sentiment(round(compound, 4), round(confidence, 4), label)


def _head(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text``, not cutting a word in two where avoidable."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    if not text[limit].isspace():
        words = head.rsplit(maxsplit=1)
        if len(words) == 2:
            head = words[0]
    return head
