"""Finding personal data in free text that is not meant to hold any (device and plant fields)."""

from __future__ import annotations

import re
from collections.abc import Callable

from schemas.validators import is_personnummer, normalise_phone
from shared.logging import EMAIL, PERSONNUMMER, PHONE


def _any(_candidate: str) -> bool:
    return True


def _real_personnummer(candidate: str) -> bool:
    # The log masker also accepts a space as separator; the validator knows only '-' and '+'.
    return is_personnummer(candidate.replace(" ", "-"))


def _real_phone(candidate: str) -> bool:
    try:
        normalise_phone(candidate)
    except ValueError:
        return False
    return True


CHECKS: tuple[tuple[str, re.Pattern[str], Callable[[str], bool]], ...] = (
    ("email", EMAIL, _any),
    ("personnummer", PERSONNUMMER, _real_personnummer),
    ("phone", PHONE, _real_phone),
)


def personal_data_in(text: str) -> set[str]:
    """Kinds of personal data in a text: 'email', 'phone' and/or 'personnummer'.

    Each match is blanked once found, so the digits of an e-mail address or personnummer are not reported
    as a phone number too; a personnummer must pass its date and Luhn check, so serial numbers are not.
    """
    kinds: set[str] = set()
    for kind, pattern, accept in CHECKS:
        hits = [m for m in pattern.finditer(text) if accept(m.group(0))]
        if hits:
            kinds.add(kind)
            for match in reversed(hits):
                text = text[:match.start()] + " " + text[match.end():]
    return kinds
