"""Wires the account service to the runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from schemas import AccessRequested, PersonalDataCorrected
from services.account.access import answer_access
from services.account.correction import apply_correction
from services.account.handlers import HANDLERS
from services.account.models import metadata
from services.account.notices import CleanupTimer
from services.account.settings import AccountSettings
from services.account.web import intake_routes
from shared.service import Service


@dataclass(frozen=True)
class AccountDeps:
    """What the account's handlers may use besides the session: its settings (SMTP relay included) and
    the timer of its housekeeping (`notices.CleanupTimer`)."""

    settings: AccountSettings
    cleanup_timer: CleanupTimer = field(default_factory=CleanupTimer)


def build() -> Service:
    """The account service, with its settings read from the environment now."""
    settings = AccountSettings()
    return Service(
        name="account",
        handlers={**HANDLERS, AccessRequested: answer_access, PersonalDataCorrected: apply_correction},
        metadata=metadata,
        migrations=Path(__file__).parent / "migrations",
        build_deps=lambda _engine: AccountDeps(settings),
        routes=lambda runner: intake_routes(runner, settings),
    )
