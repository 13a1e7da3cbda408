"""The validated value types: Swedish identifiers, contact details, money and instants."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from schemas import (
    CorporateId,
    Email,
    Money,
    OrganisationNumber,
    Personnummer,
    Phone,
    SwedishPostalCode,
    UserId,
    UtcDateTime,
    VatRate,
    is_organisation_number,
    is_personnummer,
    luhn_check_digit,
    luhn_valid,
)
from schemas.validators import normalise_personnummer

# Century inference depends on the day; fix it so the table means the same every year.
TODAY = date(2026, 11, 25)


def _accepts(annotated: Any, value: Any) -> Any:
    return TypeAdapter(annotated).validate_python(value)


def _rejects(annotated: Any, value: Any) -> str:
    with pytest.raises(ValidationError) as info:
        TypeAdapter(annotated).validate_python(value)
    return str(info.value)


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("79927398713", True),
        ("79927398710", False),
        ("5560360793", True),
        ("8112189876", True),
        ("8112189875", False),
        ("00", True),
        ("1", False),
        ("", False),
        ("81121898 6", False),
        ("\uff18\uff11", False),  # full-width digits are not ASCII digits
    ],
)
def test_luhn_accepts_exactly_correct_check_digits(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


def test_luhn_check_digit_completes_a_valid_number() -> None:
    assert luhn_check_digit("7992739871") == "3"
    assert luhn_check_digit("811218987") == "6"


@given(st.text(alphabet="0123456789", min_size=1, max_size=20))
def test_appending_the_check_digit_always_gives_a_luhn_valid_number(payload: str) -> None:
    assert luhn_valid(payload + luhn_check_digit(payload))


@pytest.mark.parametrize(
    ("given_value", "normalised"),
    [
        ("811218-9876", "198112189876"),
        ("8112189876", "198112189876"),
        ("19811218-9876", "198112189876"),
        ("198112189876", "198112189876"),
        (" 811218-9876 ", "198112189876"),
        ("121212-1212", "201212121212"),  # under 100: the latest matching century
        ("121212+1212", "191212121212"),  # '+' marks 100 years or older
        ("261231-1239", "192612311239"),  # 31 Dec 2026 is still to come, so 1926
        ("251126-1238", "202511261238"),
        ("000229-1235", "200002291235"),  # 2000 was a leap year
        ("701063-2391", "197010632391"),  # samordningsnummer: day 63 is the 3rd
    ],
)
def test_valid_personnummer_is_normalised_to_twelve_digits(given_value: str, normalised: str) -> None:
    assert normalise_personnummer(given_value, today=TODAY) == normalised


@pytest.mark.parametrize(
    ("given_value", "reason"),
    [
        ("811218-9875", "check digit"),
        ("19811218-9875", "check digit"),
        ("811318-9875", "valid date"),  # month 13, correct Luhn
        ("810230-9872", "valid date"),  # 30 February, correct Luhn
        ("811292-9875", "valid date"),  # samordningsnummer day 92 - 60 = 32
        ("010229-1234", "valid date"),  # 2001 was not a leap year
        ("000229+1235", "valid date"),  # 1900 was not a leap year
        ("261231+1239", "impossible"),  # 1826
        ("20991218-1238", "impossible"),  # born in the future
        ("19811218+9876", "10-digit form"),
        ("811218*9876", "must be"),
        ("81121-9876", "must be"),
        ("811218-98765", "must be"),
        ("", "must be"),
        ("abcdef-ghij", "must be"),
    ],
)
def test_invalid_personnummer_is_rejected_with_the_reason(given_value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalise_personnummer(given_value, today=TODAY)


def test_personnummer_type_and_predicate_agree_with_the_normaliser() -> None:
    assert _accepts(Personnummer, "811218-9876") == "198112189876"
    assert is_personnummer("811218-9876")
    assert not is_personnummer("811218-9875")
    message = _rejects(Personnummer, "811218-9875")
    assert "check digit" in message


@st.composite
def _personnummer_parts(draw: st.DrawFn) -> tuple[date, str, bool]:
    born = draw(st.dates(min_value=date(1927, 1, 1), max_value=TODAY))
    serial = draw(st.text(alphabet="0123456789", min_size=3, max_size=3))
    coordination = draw(st.booleans())
    return born, serial, coordination


@given(_personnummer_parts())
def test_any_correctly_built_personnummer_normalises_stably(parts: tuple[date, str, bool]) -> None:
    born, serial, coordination = parts
    day = born.day + (60 if coordination else 0)
    nine = f"{born:%y%m}{day:02d}{serial}"
    ten = nine + luhn_check_digit(nine)
    normalised = normalise_personnummer(f"{ten[:6]}-{ten[6:]}", today=TODAY)
    assert normalised == f"{born.year}{ten[2:]}"
    assert normalise_personnummer(normalised, today=TODAY) == normalised


@pytest.mark.parametrize(
    ("given_value", "normalised"),
    [
        ("556036-0793", "556036-0793"),
        ("5560360793", "556036-0793"),
        ("165560360793", "556036-0793"),  # the Tax Agency's 16-prefixed 12-digit form
        ("556677-8899", "556677-8899"),
        ("202100-5406", "202100-5406"),
        ("212000-0142", "212000-0142"),
        ("559123-4561", "559123-4561"),
    ],
)
def test_valid_organisation_number_is_normalised_with_a_dash(given_value: str, normalised: str) -> None:
    assert _accepts(OrganisationNumber, given_value) == normalised
    assert is_organisation_number(given_value)


@pytest.mark.parametrize(
    ("given_value", "reason"),
    [
        ("556036-0794", "check digit"),
        ("811218-9876", "third digit"),  # a personnummer is not an organisation number
        ("551234-5678", "third digit"),
        ("556036-079", "10 digits"),
        ("55603607931", "10 digits"),
        ("556036 0793", "10 digits"),
        ("orgnr", "10 digits"),
    ],
)
def test_invalid_organisation_number_is_rejected_with_the_reason(given_value: str, reason: str) -> None:
    assert reason in _rejects(OrganisationNumber, given_value)
    assert not is_organisation_number(given_value)


@given(st.text(alphabet="0123456789", min_size=8, max_size=8), st.sampled_from("23456789"), st.data())
def test_a_single_wrong_digit_in_an_organisation_number_is_caught(rest: str, third: str, data: st.DataObject) -> None:
    nine = rest[:2] + third + rest[2:]
    valid = nine + luhn_check_digit(nine)
    assert is_organisation_number(valid)
    position = data.draw(st.integers(min_value=3, max_value=9))
    wrong = data.draw(st.sampled_from([d for d in "0123456789" if d != valid[position]]))
    assert not is_organisation_number(valid[:position] + wrong + valid[position + 1 :])


@pytest.mark.parametrize(
    ("given_value", "normalised"),
    [
        ("556036-0793", "556036-0793"),
        ("811218-9876", "198112189876"),  # a sole trader's number is the owner's personnummer
        ("19811218-9876", "198112189876"),
    ],
)
def test_corporate_id_accepts_organisation_numbers_and_personnummer(given_value: str, normalised: str) -> None:
    assert _accepts(CorporateId, given_value) == normalised


@pytest.mark.parametrize("given_value", ["811218-9875", "556036-0794", "12345", ""])
def test_corporate_id_rejects_what_is_neither(given_value: str) -> None:
    assert "neither" in _rejects(CorporateId, given_value)


@pytest.mark.parametrize(
    ("given_value", "normalised"),
    [
        ("070-123 45 67", "+46701234567"),
        ("0701234567", "+46701234567"),
        ("08-123 456 78", "+46812345678"),
        ("08-12 34 56", "+468123456"),
        ("031-390 06 00", "+46313900600"),
        ("0980-123 45", "+4698012345"),
        ("+46 70 123 45 67", "+46701234567"),
        ("+46 (0)70-123 45 67", "+46701234567"),
        ("+46 070 123 45 67", "+46701234567"),
        ("0046 70 123 45 67", "+46701234567"),
        ("+1 (212) 555-0100", "+12125550100"),
        ("+358 40 123 4567", "+358401234567"),
        ("00 47 22 12 34 56", "+4722123456"),
    ],
)
def test_valid_phone_is_normalised_to_e164(given_value: str, normalised: str) -> None:
    assert _accepts(Phone, given_value) == normalised


@pytest.mark.parametrize(
    "given_value",
    [
        "",
        "hello",
        "070-123 45",  # a mobile number needs ten digits
        "070-123 45 678",
        "08-123 4",
        "12345678",  # neither national 0 nor international prefix
        "+46 70 12a 45 67",
        "+0 123 456 789",
        "++46701234567",
        "+1234567890123456",  # longer than E.164 allows
        "070 123 45 67 ext 3",
        "46701234567+",
    ],
)
def test_junk_phone_is_rejected(given_value: str) -> None:
    _rejects(Phone, given_value)


@pytest.mark.parametrize(
    ("given_value", "normalised"),
    [("11455", "114 55"), ("114 55", "114 55"), (" 831 31 ", "831 31"), ("98132", "981 32")],
)
def test_valid_postal_code_is_normalised_with_a_space(given_value: str, normalised: str) -> None:
    assert _accepts(SwedishPostalCode, given_value) == normalised


@pytest.mark.parametrize("given_value", ["014 55", "1145", "114555", "114-55", "114  55", "SE-114 55", "abcde", ""])
def test_invalid_postal_code_is_rejected(given_value: str) -> None:
    _rejects(SwedishPostalCode, given_value)


@pytest.mark.parametrize(
    ("given_value", "normalised"),
    [
        ("Anna.Lindqvist@EXAMPLE.com", "Anna.Lindqvist@example.com"),
        ("erik+news@example.se", "erik+news@example.se"),
        (" karin@exempel.se ", "karin@exempel.se"),
        ("åsa.öberg@exempel.se", "åsa.öberg@exempel.se"),
    ],
)
def test_valid_email_keeps_its_local_part_and_lower_cases_its_domain(given_value: str, normalised: str) -> None:
    assert _accepts(Email, given_value) == normalised


@pytest.mark.parametrize(
    "given_value",
    ["anna", "anna@", "@example.com", "anna@example..com", "anna lindqvist@example.com", "Anna <anna@example.com>"],
)
def test_invalid_email_is_rejected_without_echoing_it(given_value: str) -> None:
    message = _rejects(Email, given_value)
    assert "not a valid e-mail address" in message


@pytest.mark.parametrize("given_value", ["u-1001", "acct:42", "A.b_c-d", "7", "x" * 64])
def test_opaque_user_ids_are_accepted(given_value: str) -> None:
    assert _accepts(UserId, given_value) == given_value


@pytest.mark.parametrize("given_value", ["", "-leading-dash", "with space", "x" * 65, "u/1001"])
def test_malformed_user_ids_are_rejected(given_value: str) -> None:
    _rejects(UserId, given_value)


def test_an_email_address_is_never_accepted_as_user_id() -> None:
    assert "never an e-mail address" in _rejects(UserId, "anna.lindqvist@example.com")


@pytest.mark.parametrize(
    ("given_value", "normalised"),
    [("199.00", "199.00"), ("0.00", "0.00"), (Decimal("199"), "199.00"), (Decimal("199.5"), "199.50"),
     (Decimal("12.34"), "12.34"), (42, "42.00")],
)
def test_money_is_kept_exact_with_two_decimals(given_value: Any, normalised: str) -> None:
    amount = _accepts(Money, given_value)
    assert amount == Decimal(normalised)
    assert TypeAdapter(Money).dump_json(amount) == f'"{normalised}"'.encode()


@pytest.mark.parametrize("given_value", [19.99, "-1.00", "1.234", "NaN", "abc", "199", "199.5", " 1.00", "1e2"])
def test_money_refuses_floats_negatives_fractions_of_ore_and_other_spellings(given_value: Any) -> None:
    _rejects(Money, given_value)


@pytest.mark.parametrize(
    ("given_value", "normalised"),
    [("0.25", "0.25"), ("0.12", "0.12"), ("0.06", "0.06"), ("0.00", "0.00"), (Decimal("0"), "0.00")],
)
def test_swedish_vat_rates_are_accepted(given_value: str, normalised: str) -> None:
    assert str(_accepts(VatRate, given_value)) == normalised


@pytest.mark.parametrize("given_value", ["0.2", "25", "0.250001", 0.25, "0", "0.250"])
def test_other_vat_rates_are_rejected(given_value: Any) -> None:
    _rejects(VatRate, given_value)


def test_instants_are_normalised_to_utc() -> None:
    stockholm_summer = timezone(timedelta(hours=2))
    instant = _accepts(UtcDateTime, datetime(2026, 6, 1, 12, 0, tzinfo=stockholm_summer))
    assert instant.utcoffset() == timedelta(0)
    assert instant.hour == 10
    assert _accepts(UtcDateTime, "2026-06-01T12:00:00+02:00") == instant


def test_naive_instants_are_rejected() -> None:
    _rejects(UtcDateTime, datetime(2026, 6, 1, 12, 0))
    _rejects(UtcDateTime, "2026-06-01T12:00:00")
