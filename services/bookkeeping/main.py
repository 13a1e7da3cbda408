"""Wiring of bookkeeping: settings in, a runnable Service out."""

from __future__ import annotations

from services.bookkeeping.handlers import HANDLERS, SERVICE, Gateways
from services.bookkeeping.models import MIGRATIONS, metadata
from services.bookkeeping.settings import BookkeepingSettings, secret_or_none
from services.vendors.visma import VismaClient
from shared.service import Service


def _gateways(settings: BookkeepingSettings) -> Gateways:
    visma = VismaClient(
        settings.visma_base_url,
        access_token=secret_or_none(settings.visma_access_token),
        refresh_token=secret_or_none(settings.visma_refresh_token),
        client_id=settings.visma_client_id or None,
        client_secret=secret_or_none(settings.visma_client_secret),
        token_url=settings.visma_token_url or None,
        attempts=settings.http_attempts,
    )
    return Gateways(visma=visma, settings=settings)


def build() -> Service:
    """bookkeeping, booking sales in the configured Visma eAccounting company."""
    settings = BookkeepingSettings()
    return Service(
        name=SERVICE,
        handlers=HANDLERS,
        metadata=metadata,
        migrations=MIGRATIONS,
        build_deps=lambda: _gateways(settings),
        close_deps=lambda gateways: gateways.visma.close(),
    )
