"""Visma eAccounting API v2: customers and the sales invoices the Bookkeeping Act makes us keep."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx

from services.vendors.base import VendorClient
from services.vendors.rules import (
    VISMA_CUSTOMER_NUMBER,
    refuse,
    visma_customer_problems,
    visma_invoice_problems,
)
from shared.errors import PermanentError
from shared.http import classify_response, make_client

CAN_NOT_BE_DELETED = 4001  # Visma's ErrorCode for an object others depend on (a customer with invoices)

# Personal data on a Visma customer that nothing obliges us to keep once the person is erased.
ERASED_FIELDS = (
    "EmailAddress",
    "Telephone",
    "MobilePhone",
    "Note",
    "WwwAddress",
    "CorporateIdentityNumber",  # a sole trader's is their personnummer
    "VatNumber",  # a sole trader's embeds their personnummer
    "InvoiceAddress1",
    "InvoiceAddress2",
    "ContactPersonName",
    "ContactPersonEmail",
    "ContactPersonPhone",
    "ContactPersonMobile",
    "DeliveryCustomerName",
    "DeliveryAddress1",
    "DeliveryAddress2",
    "DeliveryCity",
    "DeliveryPostalCode",
    "DeliveryCountryCode",
)
# Not personal on their own; carried over so the full-replace PUT leaves the customer usable.
STRUCTURAL_FIELDS = ("CustomerNumber", "IsPrivatePerson", "TermsOfPaymentId", "CurrencyCode")


def _odata_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _oauth_error(resp: httpx.Response) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def _error_code(resp: httpx.Response) -> int | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    code = body.get("ErrorCode") if isinstance(body, dict) else None
    return int(code) if isinstance(code, int | str) and str(code).isdigit() else None


class VismaClient(VendorClient):
    """One Visma eAccounting company, reached with an OAuth2 bearer token (renewed by refresh token)."""

    vendor = "visma"

    def __init__(  # noqa: PLR0917 - the OAuth2 parameters Visma needs, each optional
        self,
        base_url: str,
        access_token: str | None = None,
        refresh_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        token_url: str | None = None,
        *,
        attempts: int = 3,
        max_wait: float = 5.0,
        on_tokens: Callable[[str, str], None] | None = None,
        stored_refresh_token: Callable[[], str | None] | None = None,
    ) -> None:
        """`on_tokens(access, refresh)` runs after each refresh: Visma's refresh tokens work once, so the
        new one must be stored where the next process start will find it. `stored_refresh_token()` reads
        that store: when Visma refuses our refresh token, another replica may have renewed it there."""
        if access_token is None and not (refresh_token and token_url):
            raise ValueError("VismaClient needs an access token, or a refresh token and the token URL")
        super().__init__(make_client(base_url), attempts=attempts, max_wait=max_wait)
        self._access_token = access_token
        self._refresh_token = refresh_token
        self._client_auth = (client_id, client_secret) if client_id and client_secret else None
        self._token_url = token_url
        self._token_lock = threading.Lock()
        self._on_tokens = on_tokens
        self._stored_refresh_token = stored_refresh_token

    def _can_refresh(self) -> bool:
        return bool(self._refresh_token and self._token_url)

    def _token_request(self) -> httpx.Response:
        return self._http.post(
            str(self._token_url),
            data={"grant_type": "refresh_token", "refresh_token": str(self._refresh_token)},
            auth=self._client_auth,
        )

    def _refresh(self) -> None:
        resp = self._token_request()
        if resp.status_code == 400 and self._stored_refresh_token is not None and _oauth_error(resp) == "invalid_grant":
            stored = self._stored_refresh_token()
            if stored and stored != self._refresh_token:  # renewed meanwhile by another replica
                self._refresh_token = stored
                resp = self._token_request()
        classify_response(resp, vendor=self.vendor)
        body = resp.json()
        self._access_token = str(body["access_token"])
        # Visma may hand out a new refresh token; the old one stops working when it does.
        self._refresh_token = str(body.get("refresh_token") or self._refresh_token)
        if self._on_tokens is not None:
            self._on_tokens(self._access_token, self._refresh_token)

    def _bearer(self, *, stale: str | None = None) -> dict[str, str]:
        with self._token_lock:
            if self._access_token is None or (stale is not None and self._access_token == stale):
                self._refresh()
            return {"Authorization": f"Bearer {self._access_token}"}

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request with the bearer token; a 401 refreshes the token (if we can) and tries once more."""
        headers = self._bearer()
        resp = self._http.request(method, url, headers=headers, **kwargs)
        if resp.status_code == 401 and self._can_refresh():
            stale = headers["Authorization"].removeprefix("Bearer ")
            resp = self._http.request(method, url, headers=self._bearer(stale=stale), **kwargs)
        return resp

    def _find(self, collection: str, field: str, value: str) -> dict[str, Any] | None:
        resp = self._send("GET", f"/v2/{collection}", params={"$filter": f"{field} eq {_odata_literal(value)}"})
        classify_response(resp, vendor=self.vendor)
        data = resp.json().get("Data") or []
        return data[0] if data else None

    def _write(self, method: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = self._send(method, url, json=body)
        classify_response(resp, vendor=self.vendor)
        return resp.json() if resp.content else {}

    def upsert_customer(self, customer_number: str, fields: dict[str, Any]) -> str:
        """Create the customer, or replace it in full if the number exists; returns the Visma Id.

        VendorRuleError (permanent) before any call if Visma's rules would refuse the number or a field."""
        body = {**fields, "CustomerNumber": VISMA_CUSTOMER_NUMBER.check(customer_number)}
        refuse(self.vendor, "customer", visma_customer_problems(body))

        def replace(found: dict[str, Any]) -> str:
            self._write("PUT", f"/v2/customers/{found['Id']}", body)
            return str(found["Id"])

        def upsert() -> str:
            found = self._find("customers", "CustomerNumber", customer_number)
            if found:
                return replace(found)
            try:
                return str(self._write("POST", "/v2/customers", body)["Id"])
            except PermanentError:
                # Another writer created the number between our look and our create (a batch's steps booking
                # on the one anonymous customer, a replica): Visma refuses the second POST; replace that one.
                found = self._find("customers", "CustomerNumber", customer_number)
                if found is None:
                    raise
                return replace(found)

        return self._retry(upsert)

    def create_invoice(
        self,
        customer_id: str,
        rows: list[dict[str, Any]],
        *,
        your_reference: str,
        invoice_date: date | None = None,
        eu_third_party: bool = False,
    ) -> str:
        """Create the invoice once per reference (our event id); a repeated call returns the first Id.

        A normal invoice (no ROT/RUT reduction); `eu_third_party` for a sale to a business in another EU
        country. VendorRuleError (permanent) before any call if Visma's rules would refuse the invoice."""
        body = {
            "CustomerId": customer_id,
            "InvoiceDate": (invoice_date or date.today()).isoformat(),
            "YourReference": your_reference,
            "EuThirdParty": eu_third_party,
            "RotReducedInvoicingType": 0,
            "Rows": rows,
        }
        refuse(self.vendor, "invoice", visma_invoice_problems(body))

        def create() -> str:
            # Looked up on every attempt: a POST whose answer was lost must not make a second invoice.
            found = self._find("customerinvoices", "YourReference", your_reference)
            if found:
                return str(found["Id"])
            return str(self._write("POST", "/v2/customerinvoices", body)["Id"])

        return self._retry(create)

    def find_customer(self, customer_number: str) -> dict[str, Any] | None:
        """The customer with this customer number, if Visma holds one."""
        VISMA_CUSTOMER_NUMBER.check(customer_number)
        return self._retry(lambda: self._find("customers", "CustomerNumber", customer_number))

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        """The customer as Visma holds it; PermanentError if there is none."""

        def get() -> dict[str, Any]:
            resp = self._send("GET", f"/v2/customers/{customer_id}")
            classify_response(resp, vendor=self.vendor)
            return dict(resp.json())

        return self._retry(get)

    def delete_customer(self, customer_id: str) -> bool:
        """Delete the customer; True if gone (now or before), False if Visma keeps it for its invoices."""

        def delete() -> bool:
            resp = self._send("DELETE", f"/v2/customers/{customer_id}")
            if resp.status_code == 404:
                return True
            if resp.status_code == 400 and _error_code(resp) == CAN_NOT_BE_DELETED:
                return False
            classify_response(resp, vendor=self.vendor)
            return True

        return self._retry(delete)

    def deactivate_and_anonymise(self, customer_id: str, *, keep: dict[str, Any]) -> None:
        """Deactivate the customer and replace it with a record that holds no personal data but `keep`.

        Visma refuses to delete a customer with booked invoices, and the invoices themselves must stay
        (Bokföringslagen 7 kap. 2 §); they carry their own copy of the buyer's name and address. The
        customer record is therefore replaced in full (PUT has no partial update) by one that keeps:
        - CustomerNumber, IsPrivatePerson, TermsOfPaymentId, CurrencyCode: links to the kept invoices
          and the terms they were issued under; none identifies the person;
        - `keep`: what the caller needs for the retained sales records, typically InvoiceCity,
          InvoicePostalCode and InvoiceCountryCode (Visma requires city and postal code on every
          customer, and the country decides the VAT treatment of the kept sales);
        and clears name (replaced by "Anonymised customer <id prefix>"), e-mail, phones, notes, web
        address, identity and VAT numbers, street address, contact person and delivery address.
        A customer that no longer exists needs nothing done.
        """
        forbidden = set(keep) & {*ERASED_FIELDS, "Name", "IsActive"}
        if forbidden:
            raise ValueError(f"deactivate_and_anonymise cannot keep personal fields: {sorted(forbidden)}")

        def anonymise() -> None:
            resp = self._send("GET", f"/v2/customers/{customer_id}")
            if resp.status_code == 404:
                return
            classify_response(resp, vendor=self.vendor)
            current = resp.json()
            body: dict[str, Any] = {f: current[f] for f in STRUCTURAL_FIELDS if f in current}
            body.update(keep)
            body.update(dict.fromkeys(ERASED_FIELDS))
            body.update({"Name": f"Anonymised customer {customer_id[:8]}", "IsActive": False})
            refuse(self.vendor, "anonymised customer", visma_customer_problems(body))
            self._write("PUT", f"/v2/customers/{customer_id}", body)

        self._retry(anonymise)
