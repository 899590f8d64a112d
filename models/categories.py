"""Keyword category scoring: the baseline used until a learned classifier takes over.

A human-set category on the ticket always wins; otherwise the category whose keyword set
matches most often is chosen, and ``general`` when nothing matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "billing": (
        "invoice", "charge", "charged", "refund", "payment", "billing", "bill", "credit card",
        "subscription", "price", "rechnung", "zahlung", "abbuchung", "erstattung", "facture",
        "paiement", "remboursement", "factura", "pago", "reembolso", "cobro",
    ),
    "technical": (
        "error", "bug", "crash", "crashes", "not working", "broken", "api", "timeout", "slow",
        "outage", "down", "install", "sync", "fehler", "absturz", "funktioniert nicht",
        "erreur", "plantage", "ne fonctionne pas", "fallo", "no funciona",
    ),
    "account": (
        "password", "login", "log in", "sign in", "account", "2fa", "two-factor", "locked",
        "email address", "username", "passwort", "konto", "anmelden", "mot de passe",
        "compte", "connexion", "contraseña", "cuenta", "iniciar sesión",
    ),
    "shipping": (
        "delivery", "shipping", "shipment", "package", "parcel", "tracking", "courier",
        "arrived", "lieferung", "paket", "sendung", "livraison", "colis", "envío", "paquete",
        "entrega",
    ),
}  # fmt: skip


def _keyword_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    # The lookahead on the possible first letters skips most word starts before the
    # alternation is tried, which keeps long pasted texts cheap (linear either way).
    first = "".join(sorted({w[0].lower() for w in words}))
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"\b(?=[{re.escape(first)}])({alternatives})\b", re.IGNORECASE)


_PATTERNS = {category: _keyword_pattern(words) for category, words in _CATEGORY_WORDS.items()}

FALLBACK_CATEGORY = "general"
CATEGORIES: tuple[str, ...] = (*_CATEGORY_WORDS, FALLBACK_CATEGORY)


@dataclass(frozen=True)
class CategoryGuess:
    category: str
    confidence: float
    source: str  # "ticket" (set by a human), "keywords", "fallback"


def guess_category(subject: str, description: str, *, explicit: str | None = None) -> CategoryGuess:
    """Category of a ticket from its text; ``explicit`` (set on the ticket) wins.

    Example:
        >>> guess_category("Refund for invoice 42", "I was charged twice").category
        'billing'
    """
    if explicit:
        return CategoryGuess(explicit, 1.0, "ticket")
    text = f"{subject}\n{description}"
    # The subject states the problem most directly, so its matches count double.
    counts = {
        c: 2 * len(p.findall(subject)) + len(p.findall(description)) for c, p in _PATTERNS.items()
    }
    best = max(counts, key=lambda c: counts[c])
    total = sum(counts.values())
    if total == 0 or not text.strip():
        return CategoryGuess(FALLBACK_CATEGORY, 0.0, "fallback")
    return CategoryGuess(best, round(counts[best] / total, 3), "keywords")
