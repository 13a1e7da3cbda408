"""Which outside system a slice's failed erasure names (shared/retrying.py), from the errors the clients raise."""

from __future__ import annotations

import pytest

from shared.retrying import failing_system


@pytest.mark.parametrize(("service", "error", "system"), [
    ("newsletter", "mailchimp POST /3.0/lists/l/members/h/actions/delete-permanent answered 503: down", "Mailchimp"),
    ("payment", "paypal DELETE /v3/vault/payment-tokens/t answered 429: slow down", "PayPal"),
    ("bookkeeping", "visma PUT /v2/customers/c answered 500: error", "Visma eAccounting"),
    ("installer_sharing", "installer POST /inst-7/erasure-notices answered 503: busy", "installer inst-7"),
    ("newsletter", "POST 127.0.0.1:8480/x: ConnectError after 3 attempts: refused", "Mailchimp"),
    ("bookkeeping", "POST 10.0.0.9:443/v2/customers: ReadTimeout after 3 attempts: timed out", "Visma eAccounting"),
    ("account", "OperationalError: database is locked", None),
    ("payment", "KeyError: 'token'", None),
])
def test_the_failing_system_is_the_one_the_error_names_or_the_slices_own_on_a_failed_connection(
        service: str, error: str, system: str | None) -> None:
    assert failing_system(service, error) == system
