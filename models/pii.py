"""Personal data in free text: e-mail addresses and phone numbers replaced by fixed tokens.

Pure and shared by every store that keeps ticket text (the warehouse, the search index),
so that what counts as personal data is decided in one place.
"""

from __future__ import annotations

import re

EMAIL_TOKEN = "[email]"
PHONE_TOKEN = "[phone]"

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# International numbers (+ and digits with single separators) or local ones in groups,
# optionally with an area code in parentheses; 7 to 15 digits (E.164 allows 15) in all.
# Not the digits of a reference such as INV-2024-12345 or ORD-88-1234567.
_PHONE = re.compile(
    r"(?<![\w+])(?<!\w-)"
    r"(?:\+\d[\d .-]{5,18}\d|(?:\(\d{1,4}\) ?)?\d{2,5}(?:[ .-]\d{2,5}){1,4})(?!\w)"
)
# Dates look like phone numbers to the pattern above but are not personal data.
_NOT_PHONE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}[./-]\d{2}[./-]\d{4}")
_PHONE_DIGITS = range(7, 16)


def mask_pii(text: str) -> str:
    """Replace e-mail addresses and phone numbers in ``text`` with fixed tokens.

    Example:
        >>> mask_pii("Reach me at ana@example.com or +49 30 123 4567 before 2024-05-01.")
        'Reach me at [email] or [phone] before 2024-05-01.'
    """
    masked = _EMAIL.sub(EMAIL_TOKEN, text)
    return _PHONE.sub(_phone_token, masked)


def _phone_token(match: re.Match[str]) -> str:
    found = match[0]
    digits = sum(c.isdigit() for c in found)
    if digits not in _PHONE_DIGITS or _NOT_PHONE.fullmatch(found):
        return found
    return PHONE_TOKEN
