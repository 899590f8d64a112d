"""VADER-based sentiment for English, ``unknown`` for other languages."""

from __future__ import annotations

import pickle

import pytest

from models.sentiment import Sentiment, SentimentAnalyzer


def test_negative_english_text_scores_below_zero() -> None:
    result = SentimentAnalyzer().score("This is awful, I am furious and very disappointed", "en")
    assert result.score < 0
    assert result.label == "negative"
    assert 0 < result.confidence <= 1


def test_positive_english_text_scores_above_zero() -> None:
    result = SentimentAnalyzer().score("Thank you, great support, problem solved!", "en-GB")
    assert result.score > 0
    assert result.label == "positive"


def test_plain_question_is_neutral() -> None:
    result = SentimentAnalyzer().score("How do I export my data to a csv file from the app", "en")
    assert result.label == "neutral"
    assert result.score == 0.0
    assert result.confidence > 0.5


@pytest.mark.parametrize("language", ["de", "fr", "es", None, ""])
def test_other_languages_are_unknown_not_neutral(language: str | None) -> None:
    result = SentimentAnalyzer().score("Das ist furchtbar, ich bin sehr wütend", language)
    assert result == Sentiment(0.0, 0.0, "unknown")


def test_stronger_wording_is_more_confident() -> None:
    analyzer = SentimentAnalyzer()
    mild = analyzer.score("the export is a bit slow today but otherwise fine", "en")
    strong = analyzer.score("terrible, horrible, useless service, I hate it", "en")
    assert strong.confidence > mild.confidence


def test_empty_text_is_neutral_without_confidence() -> None:
    assert SentimentAnalyzer().score("  ", "en") == Sentiment(0.0, 0.0, "neutral")


def test_analyzer_pickles() -> None:
    analyzer = pickle.loads(pickle.dumps(SentimentAnalyzer()))
    assert analyzer.score("I love it", "en").label == "positive"
