"""Password rules and hashing (DESIGN.md §3; NIST SP 800-63B §5.1.1.2).

At least 12 characters, no composition rules, the 10,000 most common passwords refused
(case-insensitive). Hashes are argon2id.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 256  # long passphrases are welcome; unbounded input is a denial of service


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files("vault.auth").joinpath("data/common-passwords.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line)


def password_problem(password: str, *, email: str = "") -> str | None:
    """Return a French explanation of why the password is refused, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"Le mot de passe doit contenir au moins {MIN_LENGTH} caractères (une phrase facile à retenir convient très bien)."
    if len(password) > MAX_LENGTH:
        return f"Le mot de passe ne doit pas dépasser {MAX_LENGTH} caractères."
    lowered = password.lower()
    if lowered in common_passwords():
        return "Ce mot de passe fait partie des plus utilisés : il serait deviné facilement. Choisissez-en un autre."
    if email and lowered == email.lower():
        return "Le mot de passe ne doit pas être votre adresse e-mail."
    if len(set(password)) < 4:
        return "Ce mot de passe est trop répétitif : il serait deviné facilement."
    return None


class Hasher:
    """argon2id with a dummy hash for unknown accounts (same work, same timing)."""

    def __init__(self, *, time_cost: int, memory_kib: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=2)
        self._dummy = self._hasher.hash(secrets.token_urlsafe(24))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Check ``password``; with ``stored_hash=None`` burn the same time and return False."""
        try:
            return self._hasher.verify(stored_hash or self._dummy, password) and stored_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
