"""Mailchimp Marketing API v3: subscribe a consenting address, read a member back, correct its address,
permanently erase a member."""

from __future__ import annotations

from typing import Any

import httpx

from services.vendors.base import VendorClient
from services.vendors.rules import VendorRuleError, mail_address_problem, subscriber_hash
from shared.errors import PermanentError
from shared.http import classify_response, make_client

FORGOTTEN = "Forgotten Email Not Subscribed"
__all__ = ["FORGOTTEN", "MailchimpClient", "base_url_for_key", "subscriber_hash"]


def base_url_for_key(api_key: str) -> str:
    """The data-centre API root a key belongs to (`…-us10` → https://us10.api.mailchimp.com/3.0)."""
    _, sep, dc = api_key.rpartition("-")
    if not sep or not dc:
        raise ValueError("a Mailchimp API key ends in its data centre, e.g. `…-us10`")
    return f"https://{dc}.api.mailchimp.com/3.0"


def _title(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return ""
    return str(body.get("title", "")) if isinstance(body, dict) else ""


class MailchimpClient(VendorClient):
    """One audience (list) of one Mailchimp account."""

    vendor = "mailchimp"

    def __init__(
        self,
        api_key: str,
        list_id: str,
        base_url: str | None = None,
        *,
        attempts: int = 3,
        max_wait: float = 5.0,
    ) -> None:
        # Basic auth: Mailchimp ignores the user name; the key is the password.
        http = make_client(base_url or base_url_for_key(api_key), auth=("loggamera", api_key))
        super().__init__(http, attempts=attempts, max_wait=max_wait)
        self.list_id = list_id

    def _member_path(self, email: str) -> str:
        return f"/lists/{self.list_id}/members/{subscriber_hash(email)}"

    def upsert_member(
        self,
        email: str,
        *,
        merge_fields: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Subscribe the address (or update it if present); PermanentError if it was permanently erased.

        VendorRuleError (permanent) before any call for an address Mailchimp refuses as fake or invalid."""
        problem = mail_address_problem(email)
        if problem is not None:
            raise VendorRuleError(f"refused before sending: mailchimp would reject the member: {problem}")
        body: dict[str, Any] = {"email_address": email.strip(), "status_if_new": "subscribed"}
        if merge_fields:
            body["merge_fields"] = merge_fields
        # Mailchimp has no idempotency header (PUT is idempotent by itself); sent so the call is traceable.
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}

        def put() -> None:
            resp = self._http.put(self._member_path(email), json=body, headers=headers)
            if resp.status_code == 400 and _title(resp) == FORGOTTEN:
                raise PermanentError(
                    f"mailchimp refused list {self.list_id} member {subscriber_hash(email)}: {FORGOTTEN} — "
                    "the address was permanently erased and must not be re-added; only the person "
                    "can re-subscribe through a Mailchimp signup form"
                )
            classify_response(resp, vendor=self.vendor)

        self._retry(put)

    def _check_list_exists(self) -> None:
        # Mailchimp answers 404 alike for an unknown member and an unknown list; a wrong list id
        # must not pass for "already erased".
        resp = self._http.get(f"/lists/{self.list_id}", params={"fields": "id"})
        if resp.status_code == 404:
            raise PermanentError(f"mailchimp list {self.list_id} does not exist: check the configured list id")
        classify_response(resp, vendor=self.vendor)

    def get_member(self, email: str) -> dict[str, Any] | None:
        """The member as Mailchimp holds it (address, status, merge fields, dates), or None if there is none."""

        def get() -> dict[str, Any] | None:
            resp = self._http.get(self._member_path(email))
            if resp.status_code == 404:
                self._check_list_exists()
                return None
            classify_response(resp, vendor=self.vendor)
            body = resp.json()
            return body if isinstance(body, dict) else None

        return self._retry(get)

    def change_member_address(self, email: str, new_email: str) -> bool:
        """Move the member to a corrected address (its subscriber hash changes); False if there was no member.

        VendorRuleError (permanent) before any call for an address Mailchimp refuses as fake or invalid."""
        problem = mail_address_problem(new_email)
        if problem is not None:
            raise VendorRuleError(f"refused before sending: mailchimp would reject the address: {problem}")

        def patch() -> bool:
            resp = self._http.patch(self._member_path(email), json={"email_address": new_email.strip()})
            if resp.status_code == 404:
                self._check_list_exists()
                return False
            classify_response(resp, vendor=self.vendor)
            return True

        return self._retry(patch)

    def delete_member_permanently(self, email: str) -> bool:
        """Erase the member and its history; True if erased now, False if it was already gone."""

        def post() -> bool:
            resp = self._http.post(f"{self._member_path(email)}/actions/delete-permanent")
            if resp.status_code == 400 and _title(resp) == FORGOTTEN:
                return False
            if resp.status_code == 404:
                self._check_list_exists()
                return False
            classify_response(resp, vendor=self.vendor)
            return True

        return self._retry(post)
