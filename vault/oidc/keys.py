"""Token signing keys and service secrets, kept in the database so that replicas share them.

Private keys are stored wrapped by vault.crypto (context ``signing-key:<kid>``). Rotation creates a
new key per algorithm, published in /jwks at once but signing only from ``active_from``, once
every copy of /jwks cached before the rotation has expired (``PUBLISH_AHEAD``); the old key signs
until then and retires at that moment. A retired public key stays in the JWKS for
``RETIRED_KEY_PUBLISHED`` so that tokens it signed can still be verified until they expire. The
state is in the database and the switch is a time: every replica signs with the same key.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from joserfc import jwk, jwt
from joserfc.errors import JoseError
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, or_, select

from vault import crypto
from vault.crypto.rotation import WrappedColumn
from vault.db import utcnow
from vault.oidc.models import ServerSecret, SigningKey

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _siv(key: bytes) -> AESSIV:
    """The AES-SIV of a key, made once (its key schedule cost as much as sealing a ``sid``)."""
    return AESSIV(key)

ALGORITHMS = ("ES256", "RS256")
RSA_BITS = 3072
# Longer than anything a key signs lives (ID tokens: 10 minutes; logout hints may be older).
RETIRED_KEY_PUBLISHED = timedelta(days=7)
# /jwks's Cache-Control max-age. A new key signs only once every copy cached before it was
# published has expired: twice the lifetime (a shared cache may hand a client a copy near its end,
# which a client ignoring ``Age`` keeps for a whole lifetime more) and a minute of clock skew.
JWKS_MAX_AGE = 300
PUBLISH_AHEAD = timedelta(seconds=2 * JWKS_MAX_AGE + 60)
# How long a process signs from the signing keys it last read before reading them again: a rotation
# made elsewhere (``vault keys rotate``, another replica) is seen within this time. A scheduled switch
# is a time read with the keys, so every replica makes it on the second; an emergency rotation
# (``--now``) is followed within these seconds (the old key, still published, verifies what it signed).
SIGNING_KEYS_REFRESH_SECONDS = 5.0


class InvalidSignature(Exception):
    """A JWT that was not signed by one of our keys (or is malformed)."""


@dataclass(frozen=True)
class NewKey:
    """A key made by ``rotate``: published at once, signing from ``active_from``."""

    kid: str
    alg: str
    active_from: datetime


@dataclass(frozen=True)
class _Signer:
    """A signing key as last read from the database (its private part still wrapped)."""

    kid: str
    alg: str
    wrapped: bytes
    created_at: datetime
    active_from: datetime
    retired_at: datetime | None

    def signs_at(self, moment: datetime) -> bool:
        return self.active_from <= moment and (self.retired_at is None or self.retired_at > moment)


class RotationPending(Exception):
    """Keys from an earlier rotation are published but do not sign yet."""

    def __init__(self, active_from: datetime) -> None:
        super().__init__(f"the keys of the last rotation sign from {active_from.isoformat(timespec='seconds')}")
        self.active_from = active_from


def _aware(moment: datetime) -> datetime:
    """SQLite gives naive datetimes back; they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _generate(alg: str) -> jwk.Key:
    if alg == "ES256":
        return jwk.ECKey.generate_key("P-256", private=True)
    if alg == "RS256":
        return jwk.RSAKey.generate_key(RSA_BITS, private=True)
    raise ValueError(f"unsupported signing algorithm {alg}")


class KeyStore:
    def __init__(self, keys: crypto.KeyProvider) -> None:
        self.keys = keys
        # Unwrapped keys are kept in this process's memory once opened (a KMS round trip and an
        # AES unwrap per token would dominate the token endpoint); a rotation adds new kids.
        self._private_cache: dict[str, jwk.Key] = {}
        self._secret_cache: dict[str, bytes] = {}
        # The signing keys not retired when last read, and until when (monotonic) they are trusted:
        # a query per signature (an ordered select, per token) cost more than the signature itself.
        self._signers: list[_Signer] = []
        self._signers_until = 0.0
        self._signers_lock = threading.Lock()

    # ---- signing keys ---------------------------------------------------------------------------

    def _create(self, db: Session, alg: str, *, active_from: datetime | None = None) -> SigningKey:
        key = _generate(alg)
        kid = f"{alg.lower()}-{key.thumbprint()[:16]}"
        private = json.dumps(key.as_dict(private=True)).encode()
        public = key.as_dict(private=False) | {"kid": kid, "alg": alg, "use": "sig"}
        row = SigningKey(kid=kid, alg=alg, public_jwk=public, active_from=active_from or utcnow(),
                         private_key=crypto.wrap(self.keys, private, context=b"signing-key:" + kid.encode()))
        db.add(row)
        return row

    def _active_row(self, db: Session, alg: str) -> SigningKey:
        now = utcnow()
        row = db.exec(
            select(SigningKey).where(SigningKey.alg == alg, col(SigningKey.active_from) <= now,
                                     or_(col(SigningKey.retired_at).is_(None), col(SigningKey.retired_at) > now))
            .order_by(col(SigningKey.active_from).desc(), col(SigningKey.created_at).desc())
        ).first()
        if row is not None:
            return row
        # First use (``vault db upgrade`` normally creates them). Two replicas racing here each
        # create one: both are published and both verify, so no lock is needed.
        row = self._create(db, alg)
        db.flush()
        return row

    def _private(self, kid: str, wrapped: bytes) -> jwk.Key:
        if (key := self._private_cache.get(kid)) is None:
            raw = crypto.unwrap(self.keys, wrapped, context=b"signing-key:" + kid.encode())
            key = self._private_cache[kid] = jwk.import_key(json.loads(raw))
        return key

    def _signer(self, db: Session, alg: str) -> tuple[str, bytes]:
        """The kid and wrapped private key that sign with ``alg`` now: the same choice as
        ``_active_row`` (the latest key whose time has come and that is not retired), made on the
        keys read at most ``SIGNING_KEYS_REFRESH_SECONDS`` ago."""
        now = utcnow()
        with self._signers_lock:
            signers = self._signers if time.monotonic() < self._signers_until else None
        if signers is None:  # read too long ago: read them again
            rows = db.exec(select(SigningKey).where(or_(col(SigningKey.retired_at).is_(None),
                                                        col(SigningKey.retired_at) > now))).all()
            signers = [_Signer(r.kid, r.alg, r.private_key, _aware(r.created_at), _aware(r.active_from),
                               _aware(r.retired_at) if r.retired_at is not None else None) for r in rows]
            with self._signers_lock:
                self._signers, self._signers_until = signers, time.monotonic() + SIGNING_KEYS_REFRESH_SECONDS
        candidates = [s for s in signers if s.alg == alg and s.signs_at(now)]
        if candidates:
            best = max(candidates, key=lambda s: (s.active_from, s.created_at))
            return best.kid, best.wrapped
        row = self._active_row(db, alg)  # none yet (``vault db upgrade`` normally makes them): made now
        self.forget_signers()
        return row.kid, row.private_key

    def forget_signers(self) -> None:
        """Read the signing keys again at the next signature (after a rotation made here)."""
        with self._signers_lock:
            self._signers_until = 0.0

    def sign(self, db: Session, claims: dict[str, Any], *, alg: str = "ES256", typ: str = "JWT") -> str:
        kid, wrapped = self._signer(db, alg)
        return jwt.encode({"alg": alg, "kid": kid, "typ": typ}, claims, self._private(kid, wrapped), algorithms=[alg])

    def published(self, db: Session) -> list[SigningKey]:
        """Keys in the JWKS: active ones and those retired recently enough."""
        for alg in ALGORITHMS:
            self._active_row(db, alg)
        horizon = utcnow() - RETIRED_KEY_PUBLISHED
        rows = db.exec(select(SigningKey).order_by(col(SigningKey.created_at))).all()
        return [r for r in rows if r.retired_at is None or r.retired_at > horizon]

    def jwks(self, db: Session) -> dict[str, list[dict[str, Any]]]:
        return {"keys": [row.public_jwk for row in self.published(db)]}

    def verify(self, db: Session, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Check a JWT's signature against our published keys; return (header, claims).

        Expiry is *not* checked here: an ``id_token_hint`` may be expired (OIDC RP-Initiated
        Logout §2); callers check the claims they rely on.
        """
        keyset = jwk.KeySet([jwk.import_key(row.public_jwk) for row in self.published(db)])
        try:
            decoded = jwt.decode(token, keyset, algorithms=list(ALGORITHMS))
        except (JoseError, ValueError, TypeError):
            raise InvalidSignature() from None
        return dict(decoded.header), dict(decoded.claims)

    def rotate(self, db: Session, *, now: bool = False) -> list[NewKey]:
        """New keys for every algorithm, published at once and signing from ``PUBLISH_AHEAD`` on,
        when the current ones retire (still published for a while). ``now``: they sign at once (an
        emergency: apps holding a cached /jwks cannot verify new tokens until they fetch it again).
        Refused (``RotationPending``) while the keys of an earlier rotation wait, unless ``now``."""
        start = utcnow()
        waiting = db.exec(select(SigningKey).where(col(SigningKey.active_from) > start,
                                                   or_(col(SigningKey.retired_at).is_(None),
                                                       col(SigningKey.retired_at) > start))).all()
        if waiting and not now:
            raise RotationPending(min(_aware(row.active_from) for row in waiting))
        active_from = start if now else start + PUBLISH_AHEAD
        for row in db.exec(select(SigningKey).where(or_(col(SigningKey.retired_at).is_(None),
                                                        col(SigningKey.retired_at) > active_from))).all():
            row.retired_at = active_from if _aware(row.active_from) <= start else start
        new = [NewKey(row.kid, row.alg, active_from) for row in
               (self._create(db, alg, active_from=active_from) for alg in ALGORITHMS)]
        self.forget_signers()
        logger.info("signing keys rotated", extra={"kids": [key.kid for key in new],
                                                   "active_from": active_from.isoformat()})
        return new

    def ensure(self, db: Session) -> None:
        """Create what is missing (keys of each algorithm, service secrets); run at ``db upgrade``."""
        for alg in ALGORITHMS:
            self._active_row(db, alg)
        for name in ("pairwise-sub", "pairwise-sid", "alerts-unsubscribe", "login-throttle", "audit-mac",
                     "audit-checkpoint", "subject-key", "erasure-confirmation"):
            self.secret(db, name)

    def wrapped_columns(self) -> list[WrappedColumn]:
        """What this store keeps wrapped by the KEK (``vault keys kek rewrap``)."""
        return [
            WrappedColumn("token signing keys", SigningKey.kid, SigningKey.private_key,  # type: ignore[arg-type]
                          context=lambda kid: b"signing-key:" + kid.encode()),
            WrappedColumn("service secrets", ServerSecret.name, ServerSecret.value,  # type: ignore[arg-type]
                          context=lambda name: b"server-secret:" + name.encode()),
        ]

    # ---- service secrets ------------------------------------------------------------------------

    def secret(self, db: Session, name: str, *, create: bool = True) -> bytes:
        """A random 256-bit service secret, created on first use (unless ``create`` is false: then a
        missing one raises ``LookupError``), stored wrapped."""
        if (cached := self._secret_cache.get(name)) is not None:
            return cached
        row = db.get(ServerSecret, name)
        if row is None and not create:
            raise LookupError(name)
        if row is None:  # first use; ``vault db upgrade`` normally creates it before any replica serves
            row = ServerSecret(name=name, value=crypto.wrap(self.keys, os.urandom(32),
                                                            context=b"server-secret:" + name.encode()))
            if db.connection().get_execution_options().get("isolation_level") == "AUTOCOMMIT":
                # No transaction, so no savepoint (vault.db.statements_engine): the first one stored
                # wins, committed at once, and every request uses it.
                upsert = postgresql_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
                db.exec(upsert(ServerSecret).values(name=name, value=row.value, created_at=utcnow())
                        .on_conflict_do_nothing(index_elements=["name"]))
                row = db.exec(select(ServerSecret).where(ServerSecret.name == name)).one()
            else:
                try:
                    with db.begin_nested():  # another request may be creating it at this very moment
                        db.add(row)
                except IntegrityError:  # it did: use the one that was stored first
                    row = db.get(ServerSecret, name)
                    if row is None:
                        raise
        value = crypto.unwrap(self.keys, row.value, context=b"server-secret:" + name.encode())
        self._secret_cache[name] = value
        return value

    def pairwise_sub(self, db: Session, *, sector: str, citizen_id: str) -> str:
        """OIDC Core §8.1 pairwise identifier: a keyed hash of (sector, citizen), stable per sector,
        unlinkable across sectors. Formatted like FranceConnect's (64 hex characters + ``v1``)."""
        key = self.secret(db, "pairwise-sub")
        digest = hmac.new(key, f"{sector}\x00{citizen_id}".encode(), hashlib.sha256).hexdigest()
        return digest + "v1"

    def pairwise_actor(self, db: Session, *, sector: str, staff_id: str) -> str:
        """The identifier an app of ``sector`` sees for a counter agent acting for a citizen (RFC 8693
        ``act.sub``): pairwise like a citizen's ``sub``, from the same key but in a namespace of its
        own (``staff``) and with another ending (``a1``), so that it never equals a citizen's."""
        key = self.secret(db, "pairwise-sub")
        digest = hmac.new(key, f"staff\x00{sector}\x00{staff_id}".encode(), hashlib.sha256).hexdigest()
        return digest + "a1"

    def pairwise_sid(self, db: Session, *, sector: str, sid: str) -> str:
        """The ``sid`` an app of ``sector`` sees for a login session: pairwise like ``sub``, so two
        apps of different sectors cannot join their subjects on it. Deterministic authenticated
        encryption (AES-SIV, the sector as associated data): the same for every app of a sector,
        unlinkable across sectors, and turned back into the session's own sid at logout."""
        sealed = _siv(self.secret(db, "pairwise-sid")).encrypt(sid.encode(), [sector.encode()])
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def login_sid(self, db: Session, *, sector: str, pairwise: str) -> str | None:
        """The login session's sid behind the ``sid`` an app of ``sector`` holds (None when it was
        not made for that sector, or not by this service)."""
        try:
            sealed = base64.urlsafe_b64decode(pairwise + "=" * (-len(pairwise) % 4))
            return _siv(self.secret(db, "pairwise-sid")).decrypt(sealed, [sector.encode()]).decode()
        except (ValueError, InvalidTag, UnicodeDecodeError):
            return None
