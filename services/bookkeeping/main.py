"""Wiring of bookkeeping: settings in, a runnable Service out."""

from __future__ import annotations

from sqlalchemy import Engine

from schemas import AccessRequested, LegalHoldChanged, PersonalDataCorrected
from services.bookkeeping.access import answer_access, find_customer_at_visma
from services.bookkeeping.correction import correct_customer, correct_customer_at_visma
from services.bookkeeping.handlers import HANDLERS, OUTSIDE, SERVICE, Gateways
from services.bookkeeping.models import MIGRATIONS, metadata
from services.bookkeeping.settings import BookkeepingSettings, secret_or_none
from services.bookkeeping.tokens import TokenStore
from services.vendors.visma import VismaClient
from shared.service import Service


def _gateways(settings: BookkeepingSettings, engine: Engine) -> Gateways:
    tokens = TokenStore(engine)
    visma = VismaClient(
        settings.visma_base_url,
        access_token=secret_or_none(settings.visma_access_token),
        refresh_token=tokens.starting_token(secret_or_none(settings.visma_refresh_token)),
        client_id=settings.visma_client_id or None,
        client_secret=secret_or_none(settings.visma_client_secret),
        token_url=settings.visma_token_url or None,
        attempts=settings.http_attempts,
        on_tokens=lambda _access, refresh: tokens.save(refresh),
        stored_refresh_token=tokens.latest,
    )
    return Gateways(visma=visma, settings=settings, tokens=tokens)


def _close(gateways: Gateways) -> None:
    gateways.visma.close()
    gateways.tokens.close()


def build() -> Service:
    """bookkeeping, booking sales in the configured Visma eAccounting company."""
    settings = BookkeepingSettings()
    return Service(
        name=SERVICE,
        handlers={**HANDLERS, AccessRequested: answer_access, PersonalDataCorrected: correct_customer},
        outside={**OUTSIDE, AccessRequested: find_customer_at_visma,  # Visma, a batch's calls at once
                 PersonalDataCorrected: correct_customer_at_visma},
        # A correction's step writes the named customer at Visma: the steps after it in a batch (an erasure's)
        # run once it is committed, so an erasure always comes after it at Visma too.
        outside_sees=(LegalHoldChanged, PersonalDataCorrected),
        database_only=True,
        metadata=metadata,
        migrations=MIGRATIONS,
        build_deps=lambda engine: _gateways(settings, engine),
        close_deps=_close,
    )
