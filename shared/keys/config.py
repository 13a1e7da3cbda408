"""Where the key store's secrets come from: key-encryption keys and the blind-index key, from settings or a file."""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import VAR_DIR

KEY_BYTES = 32  # AES-256 and HMAC-SHA256


class KeyConfigError(ValueError):
    """The key-encryption keys or the blind-index key are missing or malformed: nothing may start."""


class KeySettings(BaseSettings):
    """The key store's settings (env prefix `ERASURE_KEYS_`); secrets come from here or from the key file."""

    model_config = SettingsConfigDict(env_prefix="ERASURE_KEYS_", extra="ignore", hide_input_in_errors=True)

    kek: SecretStr | None = Field(
        None, description="Accepted key-encryption keys as `id:base64,id:base64` (two during a rotation).")
    kek_id: str | None = Field(None, description="Id of the key-encryption key new data keys are wrapped with.")
    index_key: SecretStr | None = Field(None, description="Base64 HMAC key of the blind indexes (e-mail lookups).")
    file: Path = Field(VAR_DIR / "keys.json", description="JSON key file used when the variables above are unset.")
    cache_seconds: float = Field(30.0, ge=0, description="How long a process keeps an unwrapped data key in memory.")
    sealing: bool = Field(True, description="Benchmark only: false writes personal data in clear, to measure what "
                          "sealing costs (`make bench`, section sealing). Never in production.")


@dataclass(frozen=True)
class KeyMaterial:
    """The secrets of the key hierarchy: key-encryption keys by id, the one to wrap with, the blind-index key."""

    keks: dict[str, bytes]
    kek_id: str
    index_key: bytes
    origin: str  # "environment" or the key file's path: said in errors and in `erasure keys status`

    def to_file(self) -> str:
        """The key file's JSON text."""
        return json.dumps({
            "keks": {key_id: _b64(key) for key_id, key in self.keks.items()},
            "kek_id": self.kek_id,
            "index_key": _b64(self.index_key),
        }, indent=2) + "\n"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _key(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyConfigError(f"{what} is not base64; make one with `erasure keys generate`") from None
    if len(raw) != KEY_BYTES:
        raise KeyConfigError(f"{what} must be {KEY_BYTES} bytes, found {len(raw)}; make one with "
                             "`erasure keys generate`")
    return raw


def new_material(kek_id: str = "k1") -> KeyMaterial:
    """Fresh random keys: one key-encryption key and a blind-index key."""
    return KeyMaterial({kek_id: secrets.token_bytes(KEY_BYTES)}, kek_id, secrets.token_bytes(KEY_BYTES), "new")


def load_material(settings: KeySettings | None = None) -> KeyMaterial:
    """The configured keys: `ERASURE_KEYS_KEK` and `ERASURE_KEYS_INDEX_KEY` when set, else the key file.

    Raises KeyConfigError, with what to do, when neither gives a usable key-encryption key.
    """
    settings = settings or KeySettings()
    if settings.kek is not None and settings.kek.get_secret_value().strip():  # set and not empty
        keks: dict[str, bytes] = {}
        for item in settings.kek.get_secret_value().split(","):
            key_id, sep, text = item.strip().partition(":")
            if not sep or not key_id:
                raise KeyConfigError("ERASURE_KEYS_KEK must look like `id:base64[,id:base64]`")
            keks[key_id] = _key(text, f"key-encryption key {key_id!r} of ERASURE_KEYS_KEK")
        if settings.index_key is None:
            raise KeyConfigError("ERASURE_KEYS_KEK is set but ERASURE_KEYS_INDEX_KEY is not; set both, or neither "
                                 "and use a key file")
        index_key = _key(settings.index_key.get_secret_value(), "ERASURE_KEYS_INDEX_KEY")
        kek_id = settings.kek_id or next(iter(keks))
        origin = "environment"
    else:
        path = settings.file
        if not path.exists():
            raise KeyConfigError(f"no key-encryption key: ERASURE_KEYS_KEK is unset and the key file {path} does not "
                                 "exist; create one with `erasure keys generate` (or set ERASURE_KEYS_FILE)")
        try:
            data = json.loads(path.read_text())
            keks = {str(k): _key(v, f"key-encryption key {k!r} in {path}") for k, v in data["keks"].items()}
            index_key = _key(data["index_key"], f"index_key in {path}")
            kek_id = settings.kek_id or str(data["kek_id"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            if isinstance(exc, KeyConfigError):
                raise
            raise KeyConfigError(f"key file {path} is unreadable or malformed ({type(exc).__name__}); restore it "
                                 "from where its keys are kept") from None
        origin = str(path)
    if not keks:
        raise KeyConfigError(f"no key-encryption key in {origin}")
    if kek_id not in keks:
        raise KeyConfigError(f"key-encryption key {kek_id!r} (the one to wrap with) is not among {sorted(keks)} in "
                             f"{origin}")
    return KeyMaterial(keks, kek_id, index_key, origin)


def write_key_file(path: Path, material: KeyMaterial) -> None:
    """Write the key file readable by its owner only, replacing any earlier one atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".new")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(material.to_file())
    os.replace(scratch, path)
