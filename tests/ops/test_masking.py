"""Masking personal data stays linear in the input size and masks exactly what the address pattern matches."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.logging import EMAIL, PERSONNUMMER, PERSONNUMMER_MASKED, _mask_emails, mask_personal, mask_text

MIB = 1 << 20
# Inputs on which a backtracking scan of the address pattern is quadratic (minutes at 1 MiB), and neighbours.
PATHOLOGICAL = {
    "digits": "1" * MIB,
    "letters": "a" * MIB,
    "at signs": "@" * MIB,
    "letter-at pairs": "a@" * (MIB // 2),
    "dotted labels": "a." * (MIB // 2),
    "one @ then a long domain": "a@" + "b." * (MIB // 2),
    "long local part then @": "a" * MIB + "@",
    "addresses back to back": "a@b.cc" * (MIB // 6),
    "phone-like groups": "0 12 " * (MIB // 5),
    "country codes": "+46 " * (MIB // 4),
    "personnummer-like": "19121212-1212 " * (MIB // 14),
    "punctuation soup": "a1@.-+ " * (MIB // 7),
}
# Generous: a linear pass takes well under a second on one loaded core; the quadratic one took minutes.
BUDGET_S = 5.0


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_mask_text_is_linear_on_pathological_mebibytes(name: str) -> None:
    text = PATHOLOGICAL[name]
    started = time.perf_counter()
    masked = mask_text(text)
    elapsed = time.perf_counter() - started
    assert elapsed < BUDGET_S, f"{name}: {elapsed:.1f} s for 1 MiB"
    assert ("[email]" in masked) == (name == "addresses back to back")


def test_a_mebibyte_of_addresses_is_masked_whole() -> None:
    text = "anna.lindqvist+u-1001@example.com, " * (MIB // 35)
    masked = mask_text(text)
    assert "@" not in masked and masked.count("[email]") == text.count("@")


def test_addresses_next_to_each_other_are_each_masked() -> None:
    assert mask_text("a@b.com9x@d.org") == "[email][email]"
    assert mask_text("mail anna@example.com, or erik@example.se.") == "mail [email], or [email]."
    assert mask_text("@@x@@ a@b @c.se") == "@@x@@ a@b @c.se"


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="ab1.@-_+%' x9Z.c0mö", max_size=40))
def test_emails_are_masked_exactly_where_the_address_pattern_matches(text: str) -> None:
    assert _mask_emails(text) == EMAIL.sub("[email]", text)


def test_a_mebibyte_event_document_is_masked_in_under_a_second() -> None:
    document = {"data": {"user_id": "u-1001", "note": "1" * MIB, "email": "a@" * 1000, "name": "Anna"}}
    started = time.perf_counter()
    masked = mask_personal(document)
    assert time.perf_counter() - started < 1.0
    assert masked["data"]["name"] == "[redacted]" and masked["data"]["note"] == "1" * MIB


def _plausible_personnummer(match: re.Match[str]) -> str:
    """The rule as first written, a callback on PERSONNUMMER: plausible month and day, or an organisation number."""
    month, day = int(match.group(2)), int(match.group(3))
    plausible = 1 <= month <= 12 and (1 <= day <= 31 or 61 <= day <= 91)
    return "[personnummer]" if plausible or int(match.group(2)[0]) >= 2 else match.group(0)


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="0123456789012345678912 -+a", max_size=30))
def test_personnummer_are_masked_exactly_where_the_plausibility_rule_says(text: str) -> None:
    assert PERSONNUMMER_MASKED.sub("[personnummer]", text) == PERSONNUMMER.sub(_plausible_personnummer, text)


@pytest.mark.parametrize("number", ["19121212-1212", "121212-1212", "121272+1212", "5566778899", "20001231 0000"])
def test_plausible_personnummer_and_organisation_numbers_are_masked(number: str) -> None:
    assert mask_text(f"id {number}.") == "id [personnummer]."


@pytest.mark.parametrize("number", ["19991399-1234", "991340-1234", "121200-1234"])
def test_implausible_dates_are_left_alone(number: str) -> None:
    assert mask_text(f"serial {number}") == f"serial {number}"
