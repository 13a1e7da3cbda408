"""No personal data leaves the process through a log line."""

from __future__ import annotations

import io
import json

import pytest

from shared.logging import configure, get_logger, mask_text

MASKED = [
    ("anna.svensson@example.com", "[email]"),
    ("Anna.Svensson+news@sub.example.co.uk", "[email]"),
    ("o'brien@example.se", "[email]"),
    ("070-123 45 67", "[phone]"),
    ("0701234567", "[phone]|[personnummer]"),  # ambiguous on its own: masked either way
    ("070 123 45 67", "[phone]"),
    ("+46 70 123 45 67", "[phone]"),
    ("+46701234567", "[phone]"),
    ("0046 70 123 45 67", "[phone]"),
    ("08-123 456 78", "[phone]"),
    ("031-12 34 56", "[phone]"),
    ("+46 (0)70 123 45 67", "[phone]"),
    ("811218-9876", "[personnummer]"),
    ("19811218-9876", "[personnummer]"),
    ("198112189876", "[personnummer]"),
    ("8112189876", "[personnummer]"),
    ("811218+9876", "[personnummer]"),
    ("811278-9876", "[personnummer]"),  # samordningsnummer (day + 60)
    ("556036-0793", "[personnummer]"),  # organisation numbers are masked too (sole traders')
]
KEPT = [
    "550e8400-e29b-41d4-a716-446655440000",
    "2026-11-25T09:14:53+00:00",
    "127.0.0.1:5672",
    "amount 1234.50 SEK",
    "user u-1001 request 3",
    "erasure.payment.retry.10s",
]


@pytest.mark.parametrize(("text", "placeholder"), MASKED)
def test_personal_data_is_masked_in_every_form(text: str, placeholder: str) -> None:
    masked = mask_text(f"before {text} after")
    assert masked in {f"before {p} after" for p in placeholder.split("|")}


@pytest.mark.parametrize("text", KEPT)
def test_ordinary_values_are_left_alone(text: str) -> None:
    assert mask_text(text) == text


def test_ids_are_never_mistaken_for_personal_data() -> None:
    """UUIDs (event and request ids) are what operators need in a log line; none may be masked."""
    import uuid

    ids = [str(uuid.uuid4()) for _ in range(5000)] + ["59a33481-0893-4205-ac05-e6e8df33d1b8"]
    assert [i for i in ids if mask_text(f"event {i}: failed") != f"event {i}: failed"] == []


def test_log_lines_are_json_with_masked_fields_and_bound_ids() -> None:
    import structlog

    stream = io.StringIO()
    configure("INFO", stream=stream, fmt="json")
    structlog.contextvars.bind_contextvars(event_id="e-1", request_id="r-1")
    try:
        get_logger("t").info("mail to anna@example.com failed", detail={"phone": "070-123 45 67"},
                             items=["811218-9876"])
    finally:
        structlog.contextvars.clear_contextvars()
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event"] == "mail to [email] failed"
    assert line["detail"] == {"phone": "[phone]"}
    assert line["items"] == ["[personnummer]"]
    assert line["event_id"] == "e-1" and line["request_id"] == "r-1"


def test_stdlib_loggers_are_masked_too() -> None:
    import logging

    stream = io.StringIO()
    configure("INFO", stream=stream, fmt="json")
    logging.getLogger("some.library").warning("could not reach anna@example.com")
    assert "[email]" in stream.getvalue() and "anna@" not in stream.getvalue()


def test_event_documents_mask_names_and_streets_too() -> None:
    from shared.logging import mask_personal

    body = {"data": {"customer": {"name": "Karin Andersson", "address": {"street": "Drottninggatan 55",
                                                                         "city": "Uppsala"},
                                  "email": "karin@example.com"}, "note": "call 070-123 45 67"}}
    masked = mask_personal(body)
    assert "Karin" not in str(masked) and "Drottninggatan" not in str(masked)
    assert masked["data"]["note"] == "call [phone]"
    assert masked["data"]["customer"]["address"]["city"] == "Uppsala"
