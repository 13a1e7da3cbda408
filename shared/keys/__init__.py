"""Crypto-shredding: the key store of per-subject data keys, sealed columns, and blind indexes."""

from shared.keys.config import KeyConfigError, KeyMaterial, KeySettings, load_material, new_material, write_key_file
from shared.keys.sealing import (
    SealedText,
    Subject,
    is_sealed,
    key_store,
    of_user,
    seal,
    seal_columns,
    set_sealing,
    unseal,
    use_key_store,
)
from shared.keys.store import KeyDestroyedError, KeyStore, normalise_email, user_subject

__all__ = [
    "KeyConfigError", "KeyDestroyedError", "KeyMaterial", "KeySettings", "KeyStore", "SealedText", "Subject",
    "is_sealed", "key_store", "load_material", "new_material", "normalise_email", "of_user", "seal",
    "seal_columns", "set_sealing", "unseal", "use_key_store", "user_subject", "write_key_file",
]
