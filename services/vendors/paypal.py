"""PayPal REST: OAuth2 client credentials and the Vault v3 payment tokens a customer left with us."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from services.vendors.base import VendorClient
from services.vendors.rules import PAYPAL_CUSTOMER_ID, PAYPAL_TOKEN_ID
from shared.http import classify_response, make_client

PAGE_SIZE = 5  # the largest page Vault v3 lists
TOKEN_MARGIN = 60.0  # renew this long before PayPal says the token expires


class PayPalClient(VendorClient):
    """One PayPal REST app (client id + secret) against one environment (live or sandbox)."""

    vendor = "paypal"

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        base_url: str,
        *,
        attempts: int = 3,
        max_wait: float = 5.0,
    ) -> None:
        super().__init__(make_client(base_url), attempts=attempts, max_wait=max_wait)
        self._credentials = (client_id, client_secret)
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._token_lock = threading.Lock()

    def _access_token(self, *, renew: bool = False) -> str:
        with self._token_lock:
            if renew or self._token is None or time.monotonic() >= self._token_renew_at:
                resp = self._http.post(
                    "/v1/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    auth=self._credentials,
                )
                classify_response(resp, vendor=self.vendor)
                body = resp.json()
                expires_in = float(body.get("expires_in", 0))
                self._token = str(body["access_token"])
                self._token_renew_at = time.monotonic() + max(expires_in - TOKEN_MARGIN, expires_in / 2)
            return self._token

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request with a bearer token; a 401 renews the token and tries once more."""
        resp = self._http.request(method, url, headers=self._bearer(), **kwargs)
        if resp.status_code == 401:
            resp = self._http.request(method, url, headers=self._bearer(renew=True), **kwargs)
        return resp

    def _bearer(self, *, renew: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._access_token(renew=renew)}"}

    def list_payment_tokens(self, customer_id: str) -> list[str]:
        """Ids of every vaulted payment token of the customer (empty if PayPal knows no such customer).

        VendorRuleError (permanent) before any call if the id breaks PayPal's customer id rule."""
        PAYPAL_CUSTOMER_ID.check(customer_id)

        def list_all() -> list[str]:
            ids: list[str] = []
            page, pages = 1, 1
            while page <= pages:
                resp = self._send(
                    "GET",
                    "/v3/vault/payment-tokens",
                    params={
                        "customer_id": customer_id,
                        "page_size": PAGE_SIZE,
                        "page": page,
                        "total_required": "true",
                    },
                )
                if resp.status_code == 404:
                    return []
                classify_response(resp, vendor=self.vendor)
                body = resp.json()
                ids.extend(str(token["id"]) for token in body.get("payment_tokens", []))
                pages = int(body.get("total_pages") or 1)
                page += 1
            return ids

        return self._retry(list_all)

    def delete_payment_token(self, token_id: str) -> bool:
        """Delete a vaulted payment token; True if deleted now, False if it was already gone.

        VendorRuleError (permanent) before any call if the id breaks PayPal's token id rule."""
        PAYPAL_TOKEN_ID.check(token_id)

        def delete() -> bool:
            resp = self._send("DELETE", f"/v3/vault/payment-tokens/{token_id}")
            if resp.status_code == 404:
                return False
            classify_response(resp, vendor=self.vendor)
            return True

        return self._retry(delete)
