"""Validated value types for events: Swedish identifiers, contact details, money and instants.

Every type normalises what it accepts, so two spellings of the same number compare equal once parsed.
Error messages never repeat the rejected value: validation errors end up in logs and dead letters,
and these values are personal data.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any
from uuid import UUID

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, StringConstraints, WithJsonSchema

USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
PERSONNUMMER_PATTERN = r"^([0-9]{8}-?[0-9]{4}|[0-9]{6}[-+]?[0-9]{4})$"
ORGANISATION_NUMBER_PATTERN = r"^(16)?[0-9]{6}-?[0-9]{4}$"
POSTAL_CODE_PATTERN = r"^[1-9][0-9]{2} ?[0-9]{2}$"
PHONE_PATTERN = r"^\+?[0-9][0-9 ()./-]{5,30}$"
MONEY_PATTERN = r"^[0-9]{1,12}\.[0-9]{2}$"  # up to 999 billion: exact in decimal arithmetic
# RFC 3339 date-time as JSON carries it: upper-case T and Z, no leap second, years 2000-2999 (nothing this
# pipeline handles happened earlier, and the bound keeps every instant convertible to UTC).
DATE_TIME_PATTERN = (
    r"^2[0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
DATE_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

# No customer alive was born earlier; a 12-digit number before this is a typo, not a person.
_EARLIEST_BIRTH_YEAR = 1850
_CENT = Decimal("0.01")
# The Swedish VAT rates (Mervärdesskattelagen): standard, reduced, reduced, exempt.
VAT_RATES = (Decimal("0.25"), Decimal("0.12"), Decimal("0.06"), Decimal("0.00"))
VAT_RATE_TEXTS = tuple(str(rate) for rate in sorted(VAT_RATES))
_DIGITS = re.compile(r"[0-9]+")
_PERSONNUMMER = re.compile(r"([0-9]{6}|[0-9]{8})([-+]?)([0-9]{4})")
_ORGANISATION_NUMBER = re.compile(r"(?:16)?([0-9]{6})-?([0-9]{4})")
_POSTAL_CODE = re.compile(r"([1-9][0-9]{2}) ?([0-9]{2})")
_PHONE_CHARS = re.compile(r"\+?[0-9 ()./-]+")
_DATE_TIME = re.compile(DATE_TIME_PATTERN)
_DATE = re.compile(DATE_PATTERN)
_UUID = re.compile(UUID_PATTERN)
_MONEY = re.compile(MONEY_PATTERN)


def luhn_check_digit(digits: str) -> str:
    """The Luhn (mod 10) check digit to append to a string of ASCII digits."""
    if not _DIGITS.fullmatch(digits):
        raise ValueError("Luhn check digits are computed over ASCII digits only")
    total = 0
    # Weights run 2, 1, 2, … from the digit next to the check digit, i.e. 2-1 from the left for 9 digits.
    for position, char in enumerate(reversed(digits)):
        product = int(char) * (2 if position % 2 == 0 else 1)
        total += product - 9 if product > 9 else product
    return str(-total % 10)


def luhn_valid(digits: str) -> bool:
    """True when the last digit is the Luhn check digit of the ones before it."""
    return len(digits) >= 2 and bool(_DIGITS.fullmatch(digits)) and luhn_check_digit(digits[:-1]) == digits[-1]


def _day_of_month(day: int) -> int:
    """The day of birth; a samordningsnummer adds 60 to it."""
    return day - 60 if day > 60 else day


def _birth_date(year: int, month: int, day: int) -> date:
    """The calendar date a personnummer or samordningsnummer encodes."""
    try:
        return date(year, month, _day_of_month(day))
    except ValueError:
        raise ValueError("personnummer does not encode a valid date of birth") from None


def _infer_year(yy: int, month: int, day: int, centenarian: bool, today: date) -> int:
    """The birth year of a 10-digit personnummer: under 100 years old with '-', 100 or more with '+'."""
    year = today.year - (today.year - yy) % 100
    if year == today.year and (month, _day_of_month(day)) > (today.month, today.day):
        year -= 100
    return year - 100 if centenarian else year


def normalise_personnummer(value: str, *, today: date | None = None) -> str:
    """A valid personnummer or samordningsnummer as 12 digits `YYYYMMDDNNNC`; ValueError otherwise.

    The century of a 10-digit number is inferred from `today`: '-' or no separator means under 100
    years old, '+' means 100 or older.
    """
    today = today or date.today()
    match = _PERSONNUMMER.fullmatch(value.strip())
    if not match:
        raise ValueError("personnummer must be YYMMDD-NNNC, YYMMDD+NNNC or YYYYMMDD(-)NNNC")
    date_part, separator, serial = match.groups()
    month, day = int(date_part[-4:-2]), int(date_part[-2:])
    if len(date_part) == 8:
        if separator == "+":
            raise ValueError("the '+' separator belongs to the 10-digit form only")
        year = int(date_part[:4])
    else:
        year = _infer_year(int(date_part[:2]), month, day, separator == "+", today)
    born = _birth_date(year, month, day)
    if born > today or year < _EARLIEST_BIRTH_YEAR:
        raise ValueError("personnummer encodes an impossible date of birth")
    ten_digits = date_part[-6:] + serial
    if not luhn_valid(ten_digits):
        raise ValueError("personnummer check digit is wrong")
    return f"{year:04d}"[:2] + ten_digits


def normalise_organisation_number(value: str) -> str:
    """A valid Swedish organisation number as `NNNNNN-NNNN`; ValueError otherwise."""
    match = _ORGANISATION_NUMBER.fullmatch(value.strip())
    if not match:
        raise ValueError("organisation number must be NNNNNN-NNNN (10 digits, optional dash)")
    digits = match.group(1) + match.group(2)
    if digits[2] < "2":
        raise ValueError("organisation number must have a third digit of 2 or more")
    if not luhn_valid(digits):
        raise ValueError("organisation number check digit is wrong")
    return f"{digits[:6]}-{digits[6:]}"


def normalise_corporate_id(value: str) -> str:
    """An organisation number (`NNNNNN-NNNN`) or a sole trader's personnummer (12 digits)."""
    try:
        return normalise_organisation_number(value)
    except ValueError:
        pass
    try:
        return normalise_personnummer(value)
    except ValueError:
        raise ValueError("corporate id is neither a valid organisation number nor a personnummer") from None


def is_personnummer(s: str) -> bool:
    """True when `s` is a valid personnummer or samordningsnummer in any accepted form."""
    try:
        normalise_personnummer(s)
    except ValueError:
        return False
    return True


def is_organisation_number(s: str) -> bool:
    """True when `s` is a valid Swedish organisation number."""
    try:
        normalise_organisation_number(s)
    except ValueError:
        return False
    return True


def _swedish_e164(national_significant: str) -> str:
    """+46 and the national significant number, after checking its length."""
    if not national_significant or national_significant[0] == "0":
        raise ValueError("Swedish phone number has a malformed area code")
    expected = (9, 9) if national_significant[0] == "7" else (7, 9)
    if not expected[0] <= len(national_significant) <= expected[1]:
        raise ValueError("Swedish phone number has the wrong number of digits")
    return "+46" + national_significant


def normalise_phone(value: str) -> str:
    """A Swedish national or international phone number in E.164 form (`+46701234567`)."""
    text = value.strip().replace("(0)", "")  # the optional trunk prefix in '+46 (0)70 …'
    if not _PHONE_CHARS.fullmatch(text):
        raise ValueError("phone number may hold only digits, spaces, '-', '.', '/', parentheses and a leading '+'")
    digits = re.sub(r"[^0-9]", "", text)
    if text.startswith("+") or digits.startswith("00"):
        international = digits if text.startswith("+") else digits[2:]
        if international.startswith("46"):
            # '+46 070 …' is a common slip; Swedish national numbers never start with 0 after the prefix.
            return _swedish_e164(international[2:].removeprefix("0"))
        if not international or international[0] == "0" or not 7 <= len(international) <= 15:
            raise ValueError("international phone number must have 7 to 15 digits after the '+'")
        return "+" + international
    if digits.startswith("0"):
        return _swedish_e164(digits[1:])
    raise ValueError("phone number must start with 0 (Swedish form) or with + or 00 (international form)")


def normalise_postal_code(value: str) -> str:
    """A Swedish postal code as `NNN NN`."""
    match = _POSTAL_CODE.fullmatch(value.strip())
    if not match:
        raise ValueError("Swedish postal code must be five digits, first digit 1-9, e.g. '123 45'")
    return f"{match.group(1)} {match.group(2)}"


def normalise_email(value: str) -> str:
    """A syntactically valid e-mail address with its domain lower-cased (no DNS lookup)."""
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        raise ValueError("not a valid e-mail address") from None


def _reject_email_as_user_id(value: Any) -> Any:
    """Refuse e-mail addresses where an opaque user id belongs, with a message saying so."""
    if isinstance(value, str) and "@" in value:
        raise ValueError("user_id must be an opaque id, never an e-mail address")
    return value


def _from_text(accepts: Any, parse: Any, refusal: str, *, floats: str | None = None) -> Any:
    """A before-validator for a value JSON carries as a string: text must pass `accepts` and is parsed.

    Values that are already parsed (Python callers) pass through; a float is refused with `floats` when given;
    anything else is left to the strict type check, so no other type is ever coerced.
    """

    def validate(value: Any) -> Any:
        if floats is not None and isinstance(value, float):
            raise ValueError(floats)
        if not isinstance(value, str):
            return value
        if not accepts(value):
            raise ValueError(refusal)
        try:
            return parse(value)
        except ValueError:
            raise ValueError("names a day that does not exist") from None

    return validate


_money_text = _from_text(
    _MONEY.fullmatch, Decimal, "amounts must be decimal strings with two decimals, such as '199.00'",
    floats="amounts must be decimal strings such as '199.00', not floating-point numbers")
_vat_rate_text = _from_text(
    VAT_RATE_TEXTS.__contains__, Decimal, "VAT rate must be one of '0.25', '0.12', '0.06' or '0.00'",
    floats="VAT rates must be decimal strings such as '0.25', not floating-point numbers")
_instant_text = _from_text(
    _DATE_TIME.fullmatch, datetime.fromisoformat,
    "instants must be RFC 3339 date-times with a timezone, e.g. '2026-03-02T09:15:00Z' (JSON has no dates)")
_date_text = _from_text(_DATE.fullmatch, date.fromisoformat, "dates must be RFC 3339 full-dates, e.g. '2033-12-31'")
_uuid_text = _from_text(
    _UUID.fullmatch, UUID, "ids must be UUIDs in the hyphenated form, e.g. '6f1c2b9e-3d4a-4e5f-8a7b-9c0d1e2f3a4b'")


def round_money(value: Decimal) -> Decimal:
    """The amount rounded half up to whole öre, with exactly two decimals ('199' becomes '199.00')."""
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def _check_vat_rate(value: Decimal) -> Decimal:
    """One of the Swedish VAT rates, with two decimals."""
    if value not in VAT_RATES:
        raise ValueError("VAT rate must be one of 0.25, 0.12, 0.06 or 0.00")
    return round_money(value)


def _to_utc(value: datetime) -> datetime:
    """The same instant in UTC."""
    return value.astimezone(UTC)


def _string_type(normalise: Any, pattern: str, description: str, example: str) -> Any:
    """A str annotated with a normalising validator and a JSON Schema describing what it accepts."""
    return Annotated[
        str,
        AfterValidator(normalise),
        WithJsonSchema({"type": "string", "pattern": pattern, "description": description, "examples": [example]}),
    ]


Personnummer = _string_type(
    normalise_personnummer,
    PERSONNUMMER_PATTERN,
    "Swedish personnummer or samordningsnummer; normalised to 12 digits YYYYMMDDNNNC.",
    "198112189876",
)
OrganisationNumber = _string_type(
    normalise_organisation_number,
    ORGANISATION_NUMBER_PATTERN,
    "Swedish organisation number (third digit >= 2, Luhn check); normalised to NNNNNN-NNNN.",
    "559123-4561",
)
CorporateId = _string_type(
    normalise_corporate_id,
    f"{ORGANISATION_NUMBER_PATTERN}|{PERSONNUMMER_PATTERN}",
    "Organisation number (NNNNNN-NNNN), or for a sole trader the owner's personnummer (YYYYMMDDNNNC).",
    "559123-4561",
)
Phone = _string_type(
    normalise_phone,
    PHONE_PATTERN,
    "Phone number, Swedish national or international form; normalised to E.164.",
    "+46701234567",
)
SwedishPostalCode = _string_type(
    normalise_postal_code,
    POSTAL_CODE_PATTERN,
    "Swedish postal code; normalised to 'NNN NN'.",
    "114 55",
)
Email = Annotated[
    str,
    AfterValidator(normalise_email),
    WithJsonSchema(
        {
            "type": "string",
            "format": "email",
            "maxLength": 254,
            "description": "E-mail address; the domain is normalised to lower case.",
            "examples": ["anna.lindqvist@kund.loggamera.se"],
        }
    ),
]
UserId = Annotated[
    str,
    StringConstraints(pattern=USER_ID_PATTERN),
    BeforeValidator(_reject_email_as_user_id),
]
Money = Annotated[
    Decimal,
    Field(ge=0, decimal_places=2),
    BeforeValidator(_money_text),
    AfterValidator(round_money),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": MONEY_PATTERN,
            "description": "Non-negative amount with two decimals, as a string so it stays exact.",
            "examples": ["199.00"],
        }
    ),
]
UtcDateTime = Annotated[
    AwareDatetime,
    BeforeValidator(_instant_text),
    AfterValidator(_to_utc),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "pattern": DATE_TIME_PATTERN,
         "description": "RFC 3339 date-time with a timezone (Z or an offset); normalised to UTC."}
    ),
]
WireDate = Annotated[
    date,
    BeforeValidator(_date_text),
    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN}),
]
WireUUID = Annotated[
    UUID,
    BeforeValidator(_uuid_text),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": UUID_PATTERN}),
]
VatRate = Annotated[
    Decimal,
    BeforeValidator(_vat_rate_text),
    AfterValidator(_check_vat_rate),
    WithJsonSchema(
        {
            "type": "string",
            "enum": list(VAT_RATE_TEXTS),
            "description": "Swedish VAT rate as a decimal fraction string.",
            "examples": ["0.25"],
        }
    ),
]
