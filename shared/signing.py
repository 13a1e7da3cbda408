"""HMAC-SHA256 signatures over the exact body bytes, verified against a keyring (docs/CONTRACT.md, Signing)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from shared.errors import BadInput

HEADER = "x-signature"
# "v1=" + a key id + ":" + 64 hex digits; anything longer is not a signature (and is not echoed back).
MAX_HEADER_CHARS = 256


# An HMAC already keyed, per key: copying it skips hashing the key into the inner and outer pads each time.
_keyed: dict[bytes, hmac.HMAC] = {}


def _hexdigest(key: bytes, body: bytes) -> str:
    keyed = _keyed.get(key)
    if keyed is None:
        if len(_keyed) >= 64:
            _keyed.clear()
        keyed = _keyed[key] = hmac.new(key, digestmod=hashlib.sha256)
    mac = keyed.copy()
    mac.update(body)
    return mac.hexdigest()


def sign(body: bytes, key_id: str, keyring: Mapping[str, bytes]) -> str:
    """The `x-signature` header value for a body: `v1=<key-id>:<hex digest>`."""
    return f"v1={key_id}:{_hexdigest(keyring[key_id], body)}"


def verify(body: bytes, header: object, keyring: Mapping[str, bytes]) -> str:
    """Return the key id that signed the body, or raise BadInput('signature'); nothing else, whatever the input."""
    if not isinstance(body, bytes | bytearray | memoryview):
        raise BadInput("signature", f"cannot verify a body that is a {type(body).__name__}, not bytes")
    if isinstance(header, bytes):
        header = header.decode("ascii", "replace")
    if not isinstance(header, str) or not header:
        raise BadInput("signature", "message is not signed (no x-signature header)")
    version, _, rest = header.partition("=")
    key_id, _, digest = rest.partition(":")
    if version != "v1" or not key_id or not digest:
        raise BadInput("signature", "x-signature is not of the form v1=<key-id>:<hex>")
    if len(header) > MAX_HEADER_CHARS:
        raise BadInput("signature", f"x-signature is {len(header)} characters; a valid one has at most "
                                    f"{MAX_HEADER_CHARS}")
    key = keyring.get(key_id)
    if key is None:
        raise BadInput("signature", f"signed with unknown key {key_id!r}")
    expected = _hexdigest(key, body)
    # Compared as bytes: compare_digest refuses str holding anything but ASCII.
    if not hmac.compare_digest(expected.encode(), digest.encode("utf-8", "surrogatepass")):
        raise BadInput("signature", f"signature does not match the body (key {key_id!r})")
    return key_id
