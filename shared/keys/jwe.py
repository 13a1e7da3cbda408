"""The sealed form of contact details on the wire: a compact JWE (RFC 7516, `dir` + `A256GCM`) whose key id names
the subject's data key in the key store, so that an erasure also makes every copy of the event unreadable."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.keys.store import KeyDestroyedError, KeyStore, user_subject

IV_BYTES, TAG_BYTES = 12, 16


class SealedFieldError(ValueError):
    """A sealed field that cannot be opened: malformed, for an unknown or destroyed key, or altered."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def is_compact_jwe(value: object) -> bool:
    """Whether a value has the shape of a compact JWE (five base64url parts, the second empty for `dir`)."""
    return isinstance(value, str) and value.count(".") == 4 and value.split(".")[1] == ""


def seal_value(key_id: str, key: bytes, value: Any) -> str:
    """`value` (any JSON) as a compact JWE under the data key `key_id`."""
    header = _b64(json.dumps({"alg": "dir", "enc": "A256GCM", "kid": key_id, "cty": "json"},
                             separators=(",", ":")).encode())
    iv = secrets.token_bytes(IV_BYTES)
    sealed = AESGCM(key).encrypt(iv, json.dumps(value, separators=(",", ":")).encode(), header.encode())
    return ".".join((header, "", _b64(iv), _b64(sealed[:-TAG_BYTES]), _b64(sealed[-TAG_BYTES:])))


def open_value(store: KeyStore, token: str, *, user_id: str) -> Any:
    """The JSON value of a compact JWE sealed under `user_id`'s data key; SealedFieldError if it cannot be."""
    try:
        header_b64, _key, iv, body, tag = token.split(".")
        header = json.loads(_unb64(header_b64))
        key_id = str(header["kid"])
        if header.get("alg") != "dir" or header.get("enc") != "A256GCM":
            raise SealedFieldError(f"sealed field uses {header.get('alg')}/{header.get('enc')}, not dir/A256GCM")
        subject, aead = store.key_by_id(key_id)
        if subject != user_subject(user_id):
            raise SealedFieldError(f"sealed field's key {key_id} is not the key of user {user_id}")
        return json.loads(aead.decrypt(_unb64(iv), _unb64(body) + _unb64(tag), header_b64.encode()))
    except KeyDestroyedError:
        raise SealedFieldError("sealed field's key is destroyed or unknown (the user was erased?)") from None
    except InvalidTag:
        raise SealedFieldError("sealed field does not open with its key (altered)") from None
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        if isinstance(exc, SealedFieldError):
            raise
        raise SealedFieldError(f"sealed field is not a compact JWE ({type(exc).__name__})") from None
