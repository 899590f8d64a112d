"""Response drafts: templates per intent and language, article reference, provider."""

from __future__ import annotations

import pytest

from models.kb import KbSuggestion
from models.responses import INTENTS, ResponseSuggester

ARTICLE = KbSuggestion(42, "Request a refund", 4.2, ("matched refund",))


class FakeProvider:
    """Stands in for an external generator: records prompts, answers a fixed text."""

    def __init__(self, answer: str = "Generated reply") -> None:
        self.answer = answer
        self.prompts: list[str] = []

    def draft(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.answer


class FailingProvider:
    def draft(self, prompt: str) -> str:
        raise TimeoutError("generator unavailable")


@pytest.mark.parametrize(
    ("language", "greeting", "body_word"),
    [
        ("en", "Hello Anna,", "refund"),
        ("de", "Guten Tag Anna,", "Erstattung"),
        ("fr", "Bonjour Anna,", "remboursement"),
        ("es", "Hola, Anna:", "reembolso"),
    ],
)
def test_intent_template_in_customer_language(language: str, greeting: str, body_word: str) -> None:
    draft = ResponseSuggester().suggest(
        intent="refund",
        language=language,
        customer_name="Anna",
        article=ARTICLE,
        subject="Charged twice",
    )
    assert draft.source == "template"
    assert draft.article_id == 42
    assert draft.text.startswith(greeting)
    assert body_word in draft.text
    assert "Request a refund" in draft.text
    assert "KB-42" in draft.text
    assert "Charged twice" in draft.text


@pytest.mark.parametrize("language", ["en", "de", "fr", "es"])
def test_every_intent_has_a_distinct_template(language: str) -> None:
    suggester = ResponseSuggester()
    texts = {
        suggester.suggest(
            intent=intent, language=language, customer_name=None, article=None, subject="x"
        ).text
        for intent in INTENTS
    }
    assert len(texts) == len(INTENTS)


def test_unknown_language_falls_back_to_english() -> None:
    draft = ResponseSuggester().suggest(
        intent="bug_report", language="ja", customer_name=None, article=None, subject="Crash"
    )
    assert draft.text.startswith("Hello,")
    assert "reporting this problem" in draft.text
    assert draft.article_id is None


def test_regional_language_code_uses_base_language() -> None:
    draft = ResponseSuggester().suggest(
        intent="other", language="de-AT", customer_name=None, article=None, subject=""
    )
    assert draft.text.startswith("Guten Tag,")
    assert "Vielen Dank für Ihre Nachricht." in draft.text


def test_unknown_intent_uses_generic_template() -> None:
    draft = ResponseSuggester().suggest(
        intent="spaceship", language="en", customer_name=None, article=None, subject="?"
    )
    assert "We have received your request" in draft.text


def test_article_url_template_builds_the_link() -> None:
    suggester = ResponseSuggester(article_url="https://help.example.com/kb/{article_id}")
    draft = suggester.suggest(
        intent="how_to", language="fr", customer_name="Luc", article=ARTICLE, subject="Aide"
    )
    assert "« Request a refund » (https://help.example.com/kb/42)" in draft.text


def test_long_subject_is_flattened_and_shortened() -> None:
    subject = "line one\nline two " + "x" * 500
    draft = ResponseSuggester().suggest(
        intent="other", language="en", customer_name=None, article=None, subject=subject
    )
    first_paragraph = draft.text.split("\n\n")[1]
    assert "line one line two" in first_paragraph
    assert len(first_paragraph) < 300


def test_provider_is_used_when_given() -> None:
    provider = FakeProvider("  Dear Anna, here is your refund status.  ")
    draft = ResponseSuggester(provider).suggest(
        intent="refund", language="es", customer_name="Anna", article=ARTICLE, subject="Cobro"
    )
    assert draft.source == "provider"
    assert draft.text == "Dear Anna, here is your refund status."
    assert draft.article_id == 42
    (prompt,) = provider.prompts
    assert "Spanish" in prompt
    assert "refund" in prompt
    assert "Request a refund" in prompt


@pytest.mark.parametrize("provider", [FakeProvider("   "), FailingProvider()])
def test_provider_failure_or_empty_answer_falls_back_to_template(provider: object) -> None:
    draft = ResponseSuggester(provider).suggest(  # type: ignore[arg-type]
        intent="complaint", language="en", customer_name=None, article=None, subject="Late"
    )
    assert draft.source == "template"
    assert "We are sorry" in draft.text
