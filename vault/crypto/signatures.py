"""Ed25519 signatures from a 32-byte seed (the audit log's checkpoints, docs/crypto.md).

The seed is a service secret wrapped by the KEK; the public key is derived from it when needed, so
whoever checks a signature with this module trusts the key provider only, never a public key read
from the database.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def ed25519_public_key(seed: bytes) -> bytes:
    """The raw 32-byte public key of the key made from ``seed``."""
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def ed25519_sign(seed: bytes, message: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


def ed25519_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True if ``signature`` is ``public_key``'s over ``message``; False for anything else."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
