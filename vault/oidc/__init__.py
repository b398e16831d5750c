"""The OpenID Connect provider, FranceConnect-style: apps, authorization, tokens, userinfo,
logout, signing keys and the /demo app. Built on authlib; the citizen accounts it logs in are
vault.auth's (docs/architecture.md, "Login")."""
