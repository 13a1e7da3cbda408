"""structlog JSON logs with event/request ids bound and personal data masked anywhere in a line."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# EMAIL in two parts, so that masking can anchor on each "@" (see _mask_emails): an "@" with an address
# character before it and a domain after it (captured), and the local part (matched on the reversed text).
EMAIL_AT = re.compile(r"(?<=[A-Za-z0-9._%+'-])@(?=([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}))")
EMAIL_LOCAL_REVERSED = re.compile(r"[A-Za-z0-9._%+'-]+")
# Swedish personnummer / samordningsnummer / organisation numbers: 10 or 12 digits, optional -/+.
PERSONNUMMER = re.compile(r"(?<![\w-])(?:19|20)?(\d{2})(\d{2})(\d{2})[-+ ]?\d{4}(?![\w-])")
# What the masker replaces: PERSONNUMMER whose month and day are plausible (day + 60 for a samordningsnummer),
# or whose third digit is 2 or more (organisation numbers). The check is in the pattern, not in a callback per
# match, so a body full of numbers is masked at regex speed.
PERSONNUMMER_MASKED = re.compile(
    r"(?<![\w-])(?:19|20)?\d{2}(?:(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]|6[1-9]|[78]\d|9[01])|[2-9]\d{3})"
    r"[-+ ]?\d{4}(?![\w-])"
)
# Lookarounds exclude `-` so that digit runs inside ids (UUID segments such as 0893-4205) are left alone.
PHONE = re.compile(
    r"(?<![\w.+-])(?:(?:\+|00)\d{1,3}[\s-]?\(?0?\)?\d{1,4}|0\d{1,3})(?:[\s-]?\d{2,4}){2,4}(?![\w-])"
)


def _mask_emails(text: str) -> str:
    """`EMAIL.sub("[email]", text)` in linear time.

    The regex engine (stdlib `re` backtracks) tries EMAIL at every position of a run of address characters
    with no "@" after it and scans the rest of the run each time: quadratic (about 50 s on 256 KiB of digits).
    This finds the same matches from the other end: every address has an "@", so for each "@" the local part
    is the run of address characters before it (back to the previous match; an "@" ends any run) and the
    domain is the one EMAIL_AT sees after it, which stops at the next "@". Each character is scanned a bounded
    number of times, and every scan is a regex (C) scan.
    """
    at = EMAIL_AT.search(text)
    if at is None:
        return text
    reversed_text = text[::-1]
    pieces: list[str] = []
    done = 0  # text[:done] is settled (copied or replaced)
    while at is not None:
        i = at.start()
        local = EMAIL_LOCAL_REVERSED.match(reversed_text, len(text) - i)
        start = max(done, i - (local.end() - local.start())) if local else i
        if start < i:
            pieces += (text[done:start], "[email]")
            done = at.end(1)
        at = EMAIL_AT.search(text, max(i + 1, done))
    pieces.append(text[done:])
    return "".join(pieces)


def mask_text(text: str) -> str:
    """Replace every e-mail address, phone number and personnummer in a string with a placeholder."""
    text = _mask_emails(text)
    text = PERSONNUMMER_MASKED.sub("[personnummer]", text)
    return PHONE.sub("[phone]", text)


def mask_value(value: Any) -> Any:
    """Mask personal data in strings, recursively through dicts, lists and tuples."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, bytes):
        return mask_text(value.decode("utf-8", "replace"))
    if isinstance(value, dict):
        return {k: mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v) for v in value]
    return value


# Fields of our events that hold personal data whatever their content looks like (names, street addresses).
PERSONAL_FIELDS = frozenset({"name", "street", "email", "email_address", "phone", "company_name", "corporate_id",
                             "payer_id", "contact"})


def mask_personal(value: Any) -> Any:
    """Mask an event document: values of personal fields wholesale, and patterns everywhere else."""
    if isinstance(value, dict):
        return {k: _mask_field(v) if k in PERSONAL_FIELDS else mask_personal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_personal(v) for v in value]
    return mask_value(value)


def _mask_field(value: Any) -> Any:
    masked = mask_value(value)
    if isinstance(value, str) and value and masked == value:
        return "[redacted]"  # a name or street: no pattern gives it away, the field does
    return masked if isinstance(value, str | bytes) else mask_personal(value)


def mask_processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: no personal data leaves the process through a log line."""
    for key, value in list(event_dict.items()):
        shown = repr(value) if isinstance(value, BaseException) else value
        event_dict[key] = mask_value(shown) if isinstance(shown, str | bytes | dict | list | tuple) else shown
    return event_dict


def _shared_processors() -> list[Callable[..., Any]]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_processor,
    ]


PIKA_CONNECTION_LOGGERS = (
    "pika.adapters.utils.connection_workflow",
    "pika.adapters.utils.io_services_utils",
    "pika.adapters.base_connection",
    "pika.connection",
    "pika.adapters.blocking_connection",
)


def configure(level: str = "INFO", *, stream: Any = None, service: str | None = None, fmt: str | None = None) -> None:
    """Route structlog and stdlib logging (kombu, pika) through one masked renderer (JSON unless `console`)."""
    fmt = fmt or os.environ.get("ERASURE_LOG_FORMAT", "json")
    renderer = (structlog.dev.ConsoleRenderer(colors=False) if fmt == "console"
                else structlog.processors.JSONRenderer(sort_keys=False))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
            foreign_pre_chain=_shared_processors(),
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("pika", "amqp", "kombu", "httpx", "httpcore", "mail.log", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # pika logs each failed connection attempt at ERROR, six lines from five modules, several times a second
    # while a broker restarts. The producer reports each lost connection, and each new reason its attempts
    # fail for, itself (shared.producer); the consumer runtime logs one line per attempt of its own.
    for chatty in PIKA_CONNECTION_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.CRITICAL)
    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger; configure() decides where it writes."""
    return structlog.get_logger(name)
