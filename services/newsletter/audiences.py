"""The Mailchimp audiences newsletter speaks to: the configured one for new subscribers, any stored one to erase."""

from __future__ import annotations

from services.vendors.mailchimp import MailchimpClient


class Audiences:
    """One pooled Mailchimp client per audience (list) id of one account, made on first use."""

    def __init__(self, api_key: str, default_list_id: str, base_url: str | None = None, *, attempts: int = 3) -> None:
        self.default_list_id = default_list_id
        self._api_key = api_key
        self._base_url = base_url or None
        self._attempts = attempts
        self._clients: dict[str, MailchimpClient] = {}

    def audience(self, list_id: str | None = None) -> MailchimpClient:
        """The client of an audience: by default the one new subscribers join."""
        list_id = list_id or self.default_list_id
        client = self._clients.get(list_id)
        if client is None:
            client = MailchimpClient(self._api_key, list_id, self._base_url, attempts=self._attempts)
            self._clients[list_id] = client
        return client

    def close(self) -> None:
        """Close every client's connections."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
