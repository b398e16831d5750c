"""Citizen Vault: a city's OpenID Connect provider and encrypted document vault."""

__version__ = "0.1.0"
