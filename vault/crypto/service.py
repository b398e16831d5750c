"""Wrapping small secrets (TOTP seeds, signing keys, citizen keys) with the provider's KEK."""

from vault.crypto.providers import KeyProvider


def wrap(provider: KeyProvider, plaintext: bytes, *, context: bytes) -> bytes:
    """Encrypt ``plaintext`` under the provider's active KEK, bound to ``context``.

    ``context`` names what the secret belongs to (``b"totp:" + citizen id``...): the wrapped bytes
    only unwrap with the same context, so a stored secret cannot be moved to another row.
    """
    return provider.wrap(plaintext, context=context)


def unwrap(provider: KeyProvider, wrapped: bytes, *, context: bytes) -> bytes:
    """Decrypt what ``wrap`` produced; raise ``DecryptionError`` on any mismatch."""
    return provider.unwrap(wrapped, context=context)
