"""Citizen accounts: registration, email links, passwords, TOTP and login sessions."""
