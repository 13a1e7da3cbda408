"""SMTP for the confirmation e-mail: a refused or dropped connection is transient, a 5xx refusal is not."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from shared.errors import PermanentError, TransientError
from shared.http import call_with_retries


def _fail(code: int, what: str) -> Exception:
    # The relay's text can echo addresses; only its code goes into the error.
    message = f"SMTP relay refused the {what} ({code})"
    return TransientError(message) if 400 <= code < 500 else PermanentError(message)


def _deliver(
    host: str, port: int, message: EmailMessage, *, timeout: float, starttls: bool, login: tuple[str, str] | None
) -> None:
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            if starttls:
                smtp.starttls()
            if login:
                smtp.login(*login)
            smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise _fail(min(codes, default=550), "recipient") from exc
    except smtplib.SMTPResponseException as exc:
        raise _fail(exc.smtp_code, "message") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientError(f"SMTP relay {host}:{port} unreachable: {type(exc).__name__}") from exc


def send_mail(
    host: str,
    port: int,
    *,
    sender: str,
    to: str,
    subject: str,
    body: str,
    timeout: float = 10.0,
    starttls: bool = False,
    login: tuple[str, str] | None = None,
    attempts: int = 3,
) -> None:
    """Hand one plain-text mail to the relay, retrying refused connections a few times."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(body)
    call_with_retries(
        lambda: _deliver(host, port, message, timeout=timeout, starttls=starttls, login=login),
        attempts=attempts,
        max_wait=timeout,
    )
