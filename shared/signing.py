"""HMAC-SHA256 signatures over the exact body bytes, verified against a keyring (DESIGN §2)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from shared.errors import BadInput

HEADER = "x-signature"


def sign(body: bytes, key_id: str, keyring: Mapping[str, bytes]) -> str:
    """The `x-signature` header value for a body: `v1=<key-id>:<hex digest>`."""
    digest = hmac.new(keyring[key_id], body, hashlib.sha256).hexdigest()
    return f"v1={key_id}:{digest}"


def verify(body: bytes, header: object, keyring: Mapping[str, bytes]) -> str:
    """Return the key id that signed the body, or raise BadInput('signature')."""
    if isinstance(header, bytes):
        header = header.decode("ascii", "replace")
    if not isinstance(header, str) or not header:
        raise BadInput("signature", "message is not signed (no x-signature header)")
    version, _, rest = header.partition("=")
    key_id, _, digest = rest.partition(":")
    if version != "v1" or not key_id or not digest:
        raise BadInput("signature", "x-signature is not of the form v1=<key-id>:<hex>")
    key = keyring.get(key_id)
    if key is None:
        raise BadInput("signature", f"signed with unknown key {key_id!r}")
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, digest):
        raise BadInput("signature", f"signature does not match the body (key {key_id!r})")
    return key_id
