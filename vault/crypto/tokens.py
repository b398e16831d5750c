"""Bearer secrets (session cookies, mailed links, codes, access and refresh tokens, client
secrets): random, and stored only as their SHA-256. A slow hash adds nothing to a 256-bit random
value (unlike a password), and a database leak then opens nothing."""

from __future__ import annotations

import hashlib
import secrets


def token_hash(token: str) -> str:
    """The SHA-256 (hex) a row stores in place of the bearer secret."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A new random bearer secret (256 bits, URL-safe) and its hash."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)
