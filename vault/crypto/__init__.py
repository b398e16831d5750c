"""Key hierarchy and encryption (docs/crypto.md). The only package that imports cryptography.hazmat.

The API is deliberately small and hard to misuse (in the spirit of pyca/cryptography's Fernet):
callers hand over bytes and a *context* (the associated data naming what the bytes belong to);
they never choose a nonce, a mode or a key; every failure to decrypt raises the same
``DecryptionError``, so errors are no oracle.
"""

from vault.crypto.exceptions import DecryptionError, KeyProviderError
from vault.crypto.providers import (
    AwsKmsProvider,
    KeyProvider,
    LocalKeyring,
    load_key_provider,
)
from vault.crypto.service import unwrap, wrap

__all__ = [
    "AwsKmsProvider",
    "DecryptionError",
    "KeyProvider",
    "KeyProviderError",
    "LocalKeyring",
    "load_key_provider",
    "unwrap",
    "wrap",
]
