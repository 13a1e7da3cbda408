"""Wiring of newsletter: settings in, a runnable Service out."""

from __future__ import annotations

from pathlib import Path

from schemas import AccessRequested, PersonalDataCorrected
from services.newsletter.access import answer_access
from services.newsletter.audiences import Audiences
from services.newsletter.correction import change_subscriber_address
from services.newsletter.handlers import HANDLERS, SERVICE
from services.newsletter.models import metadata
from services.newsletter.settings import NewsletterSettings
from shared.service import Service


def build() -> Service:
    """newsletter, speaking to the configured Mailchimp account and audience."""
    settings = NewsletterSettings()
    return Service(
        name=SERVICE,
        handlers={**HANDLERS, AccessRequested: answer_access, PersonalDataCorrected: change_subscriber_address},
        metadata=metadata,
        migrations=Path(__file__).parent / "migrations",
        build_deps=lambda _engine: Audiences(
            settings.mailchimp_api_key.get_secret_value(),
            settings.mailchimp_list_id,
            settings.mailchimp_base_url,
            attempts=settings.http_attempts,
        ),
        close_deps=lambda audiences: audiences.close(),
    )
