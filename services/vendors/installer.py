"""An installation company's HTTPS endpoint: contact data for an installation, and Art. 19 erasure notices."""

from __future__ import annotations

from typing import Any

from services.vendors.base import VendorClient
from services.vendors.rules import VendorRuleError, installer_endpoint_problem
from shared.http import classify_response, make_client

ERASURE_NOTICE = "gdpr-art-19-erasure"


class InstallerClient(VendorClient):
    """One installation company, reached at the endpoint and bearer token from the installer directory."""

    vendor = "installer"

    def __init__(self, endpoint_url: str, *, token: str, attempts: int = 3, max_wait: float = 5.0,
                 plain_http_hosts: frozenset[str] = frozenset()) -> None:
        problem = installer_endpoint_problem(endpoint_url, plain_http_hosts)
        if problem is not None:
            raise VendorRuleError(f"refused before sending: {problem}")
        if not token.strip():
            raise VendorRuleError("refused before sending: an installer endpoint needs its bearer token")
        http = make_client(endpoint_url, headers={"Authorization": f"Bearer {token}"})
        super().__init__(http, attempts=attempts, max_wait=max_wait)

    def _post(self, path: str, body: dict[str, Any], idempotency_key: str) -> None:
        def post() -> None:
            resp = self._http.post(path, json=body, headers={"Idempotency-Key": idempotency_key})
            classify_response(resp, vendor=self.vendor)

        self._retry(post)

    def send_contact(self, purchase_id: str, contact: dict[str, Any], *, idempotency_key: str) -> None:
        """Hand over the contact details for one purchase's installation; repeats with the key are no-ops."""
        self._post("contacts", {"purchase_id": purchase_id, "contact": contact}, idempotency_key)

    def contacts_for(self, purchase_id: str) -> list[dict[str, Any]]:
        """What the installer holds for one purchase (read back for an access request)."""

        def get() -> list[dict[str, Any]]:
            resp = self._http.get("contacts", params={"purchase_id": purchase_id})
            classify_response(resp, vendor=self.vendor)
            body = resp.json()
            return list(body.get("contacts", [])) if isinstance(body, dict) else []

        return self._retry(get)

    def send_correction(self, purchase_ids: list[str], contact: dict[str, Any], *, idempotency_key: str) -> None:
        """Tell the installer the corrected contact fields for these purchases (Art. 19); repeats are no-ops."""
        self._post("contact-corrections", {"purchase_ids": list(purchase_ids), "contact": contact}, idempotency_key)

    def send_erasure_notice(self, user_ref: str, purchase_ids: list[str], *, idempotency_key: str) -> None:
        """Ask the installer to erase what it received for these purchases (references only, no personal data)."""
        body = {"type": ERASURE_NOTICE, "user_ref": user_ref, "purchase_ids": list(purchase_ids)}
        self._post("erasure-notices", body, idempotency_key)
