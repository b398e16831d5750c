"""Citizen accounts: registration, email links, passwords, TOTP and login sessions (floor 4 of
docs/architecture.md; below the OpenID Connect provider, which logs these citizens in)."""
