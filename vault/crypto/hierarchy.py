"""The key hierarchy (docs/crypto.md), envelope style:

    KEK (key provider)  ──wraps──▶  citizen key (random 256-bit, one per citizen)
    citizen key         ──wraps──▶  document key (random 256-bit, one per stored object)
    document key        ──encrypts▶ the object (streaming AEAD, associated data = document id)

Each wrap is AES-256-GCM whose associated data names what the key belongs to, so a wrapped key
moved to another row does not open. Destroying a citizen key (crypto-shredding) makes every copy
of every object of that citizen unreadable, backups included.
"""

from __future__ import annotations

import os
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vault.crypto.exceptions import DecryptionError
from vault.crypto.providers import KeyProvider

KEY_BYTES = 32
_DOC_MAGIC = b"D1"


def citizen_key_context(citizen_id: uuid.UUID) -> bytes:
    return b"citizen-key:" + citizen_id.bytes


def new_citizen_key(provider: KeyProvider, citizen_id: uuid.UUID) -> tuple[bytes, bytes]:
    """A fresh citizen key and its wrapped form (to store). The KEK version is inside the wrap."""
    key = os.urandom(KEY_BYTES)
    return key, provider.wrap(key, context=citizen_key_context(citizen_id))


def open_citizen_key(provider: KeyProvider, wrapped: bytes, citizen_id: uuid.UUID) -> bytes:
    return provider.unwrap(wrapped, context=citizen_key_context(citizen_id))


def rewrap_citizen_key(provider: KeyProvider, wrapped: bytes, citizen_id: uuid.UUID) -> bytes:
    """KEK rotation: the same citizen key, wrapped under the provider's active KEK. Objects and
    document keys are untouched."""
    return provider.wrap(open_citizen_key(provider, wrapped, citizen_id), context=citizen_key_context(citizen_id))


def blob_prefix(citizen_key: bytes) -> str:
    """The citizen's prefix for object keys: 16 hex characters, the same for all of a citizen's
    objects, derived by HKDF from the citizen key (its own label: no other key is derived with it),
    so that an erasure lists every version of a citizen's objects with one paginated listing.
    Opaque: it names nobody, and once the citizen key is destroyed nothing links it to a person."""
    return HKDF(algorithm=hashes.SHA256(), length=8, salt=None,
                info=b"citizen-vault object key prefix").derive(citizen_key).hex()


def new_document_key(citizen_key: bytes, document_id: uuid.UUID) -> tuple[bytes, bytes]:
    """A fresh document key and its form wrapped by the citizen key (bound to the document id)."""
    key = os.urandom(KEY_BYTES)
    nonce = os.urandom(12)
    sealed = AESGCM(citizen_key).encrypt(nonce, key, _DOC_MAGIC + document_id.bytes)
    return key, _DOC_MAGIC + nonce + sealed


def open_document_key(citizen_key: bytes, wrapped: bytes, document_id: uuid.UUID) -> bytes:
    if len(wrapped) != 2 + 12 + KEY_BYTES + 16 or not wrapped.startswith(_DOC_MAGIC):
        raise DecryptionError()
    try:
        return AESGCM(citizen_key).decrypt(wrapped[2:14], wrapped[14:], _DOC_MAGIC + document_id.bytes)
    except InvalidTag:
        raise DecryptionError() from None


def kek_version(wrapped: bytes) -> int:
    """The KEK version a wrapped citizen key was made with (for rotation reports)."""
    return int.from_bytes(wrapped[2:6], "big")
