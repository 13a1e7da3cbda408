"""Wiring of payment: settings in, a runnable Service out."""

from __future__ import annotations

from schemas import AccessRequested, PersonalDataCorrected
from services.payment.access import answer_access, list_tokens_at_paypal
from services.payment.correction import report_correction
from services.payment.handlers import HANDLERS, OUTSIDE, SERVICE, Gateways
from services.payment.models import MIGRATIONS, metadata
from services.payment.settings import PaymentSettings
from services.vendors.paypal import PayPalClient
from shared.service import Service


def _gateways(settings: PaymentSettings) -> Gateways:
    paypal = PayPalClient(
        settings.paypal_client_id,
        settings.paypal_client_secret.get_secret_value(),
        settings.paypal_base_url,
        attempts=settings.http_attempts,
    )
    return Gateways(paypal=paypal, fiscal_year_end=(settings.fiscal_year_end_month, settings.fiscal_year_end_day))


def build() -> Service:
    """payment, speaking to the configured PayPal REST app."""
    settings = PaymentSettings()
    return Service(
        name=SERVICE,
        handlers={**HANDLERS, AccessRequested: answer_access, PersonalDataCorrected: report_correction},
        outside={**OUTSIDE, AccessRequested: list_tokens_at_paypal},  # PayPal, a batch's calls at once
        database_only=True,
        metadata=metadata,
        migrations=MIGRATIONS,
        build_deps=lambda _engine: _gateways(settings),
        close_deps=lambda gateways: gateways.paypal.close(),
    )
