"""The two mails of an e-mail erasure request: "please confirm" and "it is done, and this is what was kept"."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from urllib.parse import urlencode

from schemas import RetainedCategory
from services.account.settings import AccountSettings
from services.vendors.smtp import send_mail

NOTICE_CATEGORY = "e-mail address for the completion notice"
NOTICE_BASIS = "GDPR Art. 12(3) — informing the data subject of the action taken"
CONFIRM_SUBJECT = "Confirm: unregister your Loggamera account"
ACCESS_CONFIRM_SUBJECT = "Confirm: a copy of your personal data at Loggamera"
DONE_SUBJECT = "Your Loggamera account has been deleted"


def send(settings: AccountSettings, to: str, subject: str, body: str) -> None:
    """Hand a plain-text mail to the configured relay; TransientError or PermanentError if it is refused."""
    send_mail(settings.smtp_host, settings.smtp_port, sender=settings.smtp_sender, to=to, subject=subject,
              body=body, timeout=settings.smtp_timeout, starttls=settings.smtp_starttls, login=settings.smtp_login)


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


# What each kind of intake request asks for, and what happens if the confirmation mail is ignored.
ASKED = {
    "erasure": ("to unregister the Loggamera account of this e-mail address and to delete\n"
                "the personal data associated with it", "nothing will be deleted"),
    "access": ("for a copy of the personal data Loggamera and the companies it shares it with\n"
               "hold about the account of this e-mail address (GDPR Art. 15)", "nothing will be sent"),
}


def confirmation_body(settings: AccountSettings, *, token: str, request_id: str, expires_at: datetime,
                      kind: str = "erasure") -> str:
    """The confirmation mail: what was asked, the link (and the bare code), when it expires, and what happens if
    ignored."""
    link = f"{settings.intake_confirm_url}?{urlencode({'token': token})}"
    asked, ignored = ASKED[kind]
    return (
        "Hello,\n\n"
        f"We have received a request {asked}.\n\n"
        f"To confirm, open this link and press \"Confirm\" (valid until {_when(expires_at)}):\n"
        f"{link}\n\n"
        f"Confirmation code: {token}\n\n"
        f"If you did not ask for this, ignore this e-mail: {ignored}, and the link expires.\n\n"
        f"Request id: {request_id}\n\n"
        "Loggamera\n"
    )


def completion_body(request_id: str, retained: Iterable[RetainedCategory]) -> str:
    """The final mail: the account is gone, what the law makes us (or others) keep, and until when."""
    kept = [item for item in retained if item.category != NOTICE_CATEGORY]
    lines = [
        "Hello,\n",
        "Your Loggamera account has been unregistered and the personal data associated with it has been",
        "deleted, and every company we had passed your data to has been told to delete it too.\n",
    ]
    if kept:
        lines.append("The law requires that the following is kept for a time; it is deleted when that time ends:")
        lines += [f"- {item.category}, kept by {item.held_by} until {item.retain_until.isoformat()} "
                  f"({item.legal_basis})" for item in kept]
        lines.append("")
    else:
        lines.append("Nothing had to be kept by law.\n")
    lines += [
        "Your e-mail address was kept only to send you this message, and is deleted now that it is sent.",
        "Security back-ups and log files may hold the data for up to three months after its removal.\n",
        f"Request id: {request_id}\n",
        "Loggamera",
    ]
    return "\n".join(lines) + "\n"
