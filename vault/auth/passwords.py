"""Password rules and hashing (NIST SP 800-63B §5.1.1.2).

At least 12 characters, no composition rules, the 10,000 most common passwords refused
(case-insensitive). Hashes are argon2id.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from vault.errors import ServiceUnavailable
from vault.translation import N_

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
    if email and (lowered == email.lower() or lowered == email.lower().split("@")[0]):
        return "Le mot de passe ne doit pas être votre adresse e-mail."
    if _guessable(lowered):
        return (
            "Ce mot de passe est trop facile à deviner (mot de passe très courant, suite ou répétition). "
            "Choisissez-en un autre, par exemple une phrase de quelques mots."
        )
    return None


_SEQUENCES = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "qwertyuiop", "azertyuiop", "asdfghjkl", "qsdfghjklm",
              "zxcvbnm", "wxcvbn")


def _guessable(lowered: str) -> bool:
    """A common password (also with digits or symbols around it), a keyboard or alphabet run, a repetition."""
    common = common_passwords()
    if lowered in common:
        return True
    core = lowered.strip("0123456789!?.*@#$%&_-+= ")
    if len(core) >= 4 and core in common:
        return True  # "motdepasse2024!" is "motdepasse" with decorations
    if len(set(lowered)) < 4:
        return True
    for size in range(1, len(lowered) // 2 + 1):
        if len(lowered) % size == 0 and lowered == lowered[:size] * (len(lowered) // size):
            return True  # "passwordpassword", "abcabcabcabc"
    compact = lowered.replace(" ", "")
    for run in _SEQUENCES:
        doubled = run * 3
        if compact in doubled or compact in doubled[::-1]:
            return True  # "123456789012", "abcdefghijkl", "azertyuiopaz"
    return False


class HasherBusy(ServiceUnavailable):
    """Every argon2id slot stayed taken for the whole wait: 503 with Retry-After, nothing done."""

    code = "busy"
    log_event = "password hashing saturated"

    def __init__(self, reason: str, *, retry_after: int) -> None:
        super().__init__(reason)
        self.headers = {"Retry-After": str(retry_after)}

    def describe(self, *, reading: bool) -> tuple[str, str]:  # noqa: ARG002  (the same for reads and writes)
        return ("Too many logins at the same moment; nothing was done. Try again in a few seconds.",
                N_("Trop de connexions au même moment : rien n'a été fait. Réessayez dans quelques secondes."))


class _Slots:
    """At most ``size`` argon2id computations at once in this process (each takes its memory cost:
    the peak is ``size`` × memory cost); at most ``max_waiting`` others wait their turn, each up to
    ``wait`` seconds. One more is refused at once (``HasherBusy``): a waiting login holds a worker
    thread and a database connection, and a burst must not take them all from the other requests
    (the token endpoint, ``/readyz``)."""

    def __init__(self, size: int, wait: float, max_waiting: int = 8) -> None:
        self.size, self.wait, self.max_waiting = size, wait, max_waiting
        self._free = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self.running = 0
        self.waiting = 0
        self.peak = 0  # the most computations seen at once (for operators' checks and the tests)
        self.peak_waiting = 0

    def _take(self) -> None:
        if self._free.acquire(blocking=False):
            return
        with self._lock:
            if self.waiting >= self.max_waiting:
                raise HasherBusy(f"{self.waiting} waiting for an argon2id slot already ({self.size} at once)",
                                 retry_after=max(1, math.ceil(self.wait / 4)))
            self.waiting += 1
            self.peak_waiting = max(self.peak_waiting, self.waiting)
        try:
            taken = self._free.acquire(timeout=self.wait)
        finally:
            with self._lock:
                self.waiting -= 1
        if not taken:
            raise HasherBusy(f"no argon2id slot free after {self.wait:g} s ({self.size} at once)",
                             retry_after=max(1, math.ceil(self.wait)))

    @contextmanager
    def slot(self) -> Iterator[None]:
        self._take()
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1
            self._free.release()


class Hasher:
    """argon2id with a dummy hash for unknown accounts (same work, same timing), at most
    ``concurrency`` computations at once and ``max_waiting`` waiting (``HasherBusy`` beyond, or
    after ``wait`` seconds without a turn)."""

    def __init__(self, *, time_cost: int, memory_kib: int, concurrency: int = 2, wait: float = 10,
                 max_waiting: int = 8) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=2)
        self.slots = _Slots(concurrency, wait, max_waiting)
        self._dummy = self._hasher.hash(secrets.token_urlsafe(24))

    def hash(self, password: str) -> str:
        with self.slots.slot():
            return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Check ``password``; with ``stored_hash=None`` burn the same time and return False."""
        with self.slots.slot():
            try:
                self._hasher.verify(stored_hash or self._dummy, password)  # raises unless it matches
            except (VerificationError, InvalidHashError):
                return False
        return stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
