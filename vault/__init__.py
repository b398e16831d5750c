"""Citizen Vault: a city's OpenID Connect provider and encrypted document vault.

The house plan — the floors, what each part may import, and the data's way through upload,
download, login and erasure — is docs/architecture.md.
"""

__version__ = "0.1.0"
