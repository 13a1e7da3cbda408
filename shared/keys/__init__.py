"""Crypto-shredding: the key store of per-subject data keys, sealed columns, and blind indexes."""

from shared.keys.config import KeyConfigError, KeyMaterial, KeySettings, load_material, new_material, write_key_file
from shared.keys.sealing import (
    SealedText,
    Subject,
    blind_index,
    is_sealed,
    key_store,
    of_user,
    seal,
    seal_columns,
    sealed_columns,
    set_sealing,
    unseal,
    use_key_store,
)
from shared.keys.store import KeyDestroyedError, KeyStore, normalise_email, notice_subject, user_subject

__all__ = [
    "KeyConfigError", "KeyDestroyedError", "KeyMaterial", "KeySettings", "KeyStore", "SealedText", "Subject",
    "blind_index", "is_sealed", "key_store", "load_material", "new_material", "normalise_email", "notice_subject",
    "of_user", "seal", "seal_columns", "sealed_columns", "set_sealing", "unseal", "use_key_store", "user_subject",
    "write_key_file",
]
