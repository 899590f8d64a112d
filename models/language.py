"""Language identification for ticket text, using py3langid's bundled model (no downloads)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "it", "pt", "nl")

_lock = threading.Lock()
_identifiers: dict[tuple[str, ...], object] = {}


@dataclass(frozen=True)
class LanguageGuess:
    language: str
    confidence: float
    source: str  # "text" (detected), "customer" (profile fallback)


def _identifier(languages: tuple[str, ...]) -> object:
    # Loading the model takes ~0.5 s; share one identifier per language set per process.
    with _lock:
        ident = _identifiers.get(languages)
        if ident is None:
            from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

            ident = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)
            ident.set_languages(list(languages))
            _identifiers[languages] = ident
        return ident


def preload(languages: tuple[str, ...]) -> threading.Thread:
    """Load the identifier for ``languages`` in a background thread.

    Decompressing the model (LZMA, ~0.8 s) releases the GIL, so a process that starts
    this first loads it while it imports the rest of its code; the first detection then
    finds it loaded (or waits for the load already under way).
    """
    thread = threading.Thread(
        target=_identifier, args=(languages,), name="load-language-model", daemon=True
    )
    thread.start()
    return thread


class LanguageDetector:
    """Detects the language of a ticket, falling back to the customer's profile language.

    Short or ambiguous texts (below ``min_confidence`` or ``min_chars``) are unreliable for
    character n-gram models, so the customer's stated language wins there.

    Example:
        >>> LanguageDetector().detect("Meine Rechnung ist doppelt belastet worden").language
        'de'
    """

    def __init__(
        self,
        languages: tuple[str, ...] = DEFAULT_LANGUAGES,
        *,
        min_confidence: float = 0.8,
        min_chars: int = 12,
    ) -> None:
        self.languages = tuple(languages)
        self.min_confidence = min_confidence
        self.min_chars = min_chars
        self._ident: object | None = None

    def detect(self, text: str, *, fallback: str | None = None) -> LanguageGuess:
        cleaned = " ".join(text.split())
        if len(cleaned) >= self.min_chars:
            if self._ident is None:
                self._ident = _identifier(self.languages)
            lang, prob = self._ident.classify(cleaned)  # type: ignore[attr-defined]
            if prob >= self.min_confidence or fallback is None:
                return LanguageGuess(str(lang), round(float(prob), 4), "text")
        if fallback is not None:
            return LanguageGuess(fallback, 0.5, "customer")
        return LanguageGuess("en", 0.0, "default")
