"""Finding personal data in free text that is not meant to hold any (device and plant fields)."""

from __future__ import annotations

import re

from schemas.validators import is_personnummer, normalise_phone
from shared.logging import EMAIL, PERSONNUMMER, PHONE


def _valid_phone(candidate: str) -> bool:
    try:
        normalise_phone(candidate)
    except ValueError:
        return False
    return True


def _spans(pattern: re.Pattern[str], text: str, accept: object) -> tuple[bool, str]:
    """Whether an accepted match exists, and the text with accepted matches blanked out."""
    found = False

    def blank(match: re.Match[str]) -> str:
        nonlocal found
        if accept(match.group(0)):  # type: ignore[operator]
            found = True
            return " "
        return match.group(0)

    return found or False, pattern.sub(blank, text)


def personal_data_in(text: str) -> set[str]:
    """Kinds of personal data in a text: 'email', 'phone' and/or 'personnummer'.

    Matches are blanked once found, so the digits of an e-mail or personnummer are not reported as a phone
    number too; a personnummer must also pass its date and Luhn check, so serial numbers are not flagged.
    """
    kinds: set[str] = set()
    for kind, pattern, accept in (
        ("email", EMAIL, lambda _m: True),
        ("personnummer", PERSONNUMMER, is_personnummer),
        ("phone", PHONE, _valid_phone),
    ):
        found, text = _spans(pattern, text, accept)
        if found:
            kinds.add(kind)
    return kinds
