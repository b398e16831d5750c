"""Citizen accounts, login sessions and (next) the OpenID Connect provider."""
