"""Errors of the crypto package."""


class DecryptionError(Exception):
    """The data could not be authenticated: wrong key, wrong context, or tampered bytes.

    One error for every cause, on purpose: telling them apart would help an attacker.
    """

    def __init__(self) -> None:
        super().__init__("decryption failed")


class KeyProviderError(Exception):
    """The key provider cannot be used (missing or unreadable keyring, unknown key version...)."""
