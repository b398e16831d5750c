"""Token signing keys and service secrets, kept in the database so that replicas share them.

Private keys are stored wrapped by vault.crypto (context ``signing-key:<kid>``). Rotation creates a
new key per algorithm and retires the old one; a retired public key stays in the JWKS for
``RETIRED_KEY_PUBLISHED`` so that tokens it signed can still be verified until they expire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
from datetime import timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from joserfc import jwk, jwt
from joserfc.errors import JoseError
from sqlmodel import Session, col, select

from vault import crypto
from vault.db import utcnow
from vault.oidc.models import ServerSecret, SigningKey

logger = logging.getLogger(__name__)

ALGORITHMS = ("ES256", "RS256")
RSA_BITS = 3072
# Longer than anything a key signs lives (ID tokens: 10 minutes; logout hints may be older).
RETIRED_KEY_PUBLISHED = timedelta(days=7)


class InvalidSignature(Exception):
    """A JWT that was not signed by one of our keys (or is malformed)."""


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

    # ---- signing keys ---------------------------------------------------------------------------

    def _create(self, db: Session, alg: str) -> SigningKey:
        key = _generate(alg)
        kid = f"{alg.lower()}-{key.thumbprint()[:16]}"
        private = json.dumps(key.as_dict(private=True)).encode()
        public = key.as_dict(private=False) | {"kid": kid, "alg": alg, "use": "sig"}
        row = SigningKey(kid=kid, alg=alg, public_jwk=public,
                         private_key=crypto.wrap(self.keys, private, context=b"signing-key:" + kid.encode()))
        db.add(row)
        return row

    def _active_row(self, db: Session, alg: str) -> SigningKey:
        row = db.exec(
            select(SigningKey).where(SigningKey.alg == alg, col(SigningKey.retired_at).is_(None))
            .order_by(col(SigningKey.created_at).desc())
        ).first()
        if row is not None:
            return row
        # First use (``vault db upgrade`` normally creates them). Two replicas racing here each
        # create one: both are published and both verify, so no lock is needed.
        row = self._create(db, alg)
        db.flush()
        return row

    def _private(self, row: SigningKey) -> jwk.Key:
        if (key := self._private_cache.get(row.kid)) is None:
            raw = crypto.unwrap(self.keys, row.private_key, context=b"signing-key:" + row.kid.encode())
            key = self._private_cache[row.kid] = jwk.import_key(json.loads(raw))
        return key

    def sign(self, db: Session, claims: dict[str, Any], *, alg: str = "ES256", typ: str = "JWT") -> str:
        row = self._active_row(db, alg)
        return jwt.encode({"alg": alg, "kid": row.kid, "typ": typ}, claims, self._private(row), algorithms=[alg])

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

    def rotate(self, db: Session) -> list[str]:
        """New keys for every algorithm; the old ones retire (still published for a while)."""
        now = utcnow()
        for row in db.exec(select(SigningKey).where(col(SigningKey.retired_at).is_(None))).all():
            row.retired_at = now
        kids = [self._create(db, alg).kid for alg in ALGORITHMS]
        logger.info("signing keys rotated", extra={"kids": kids})
        return kids

    def ensure(self, db: Session) -> None:
        """Create what is missing (keys of each algorithm, service secrets); run at ``db upgrade``."""
        for alg in ALGORITHMS:
            self._active_row(db, alg)
        for name in ("pairwise-sub", "pairwise-sid", "alerts-unsubscribe", "login-throttle"):
            self.secret(db, name)

    def rewrap_all(self, db: Session) -> int:
        """After a KEK rotation: signing keys and service secrets wrapped under the active KEK."""
        count = 0
        for row in db.exec(select(SigningKey)).all():
            context = b"signing-key:" + row.kid.encode()
            row.private_key = crypto.wrap(self.keys, crypto.unwrap(self.keys, row.private_key, context=context),
                                          context=context)
            count += 1
        for secret in db.exec(select(ServerSecret)).all():
            context = b"server-secret:" + secret.name.encode()
            secret.value = crypto.wrap(self.keys, crypto.unwrap(self.keys, secret.value, context=context),
                                       context=context)
            count += 1
        return count

    # ---- service secrets ------------------------------------------------------------------------

    def secret(self, db: Session, name: str) -> bytes:
        """A random 256-bit service secret, created on first use, stored wrapped."""
        if (cached := self._secret_cache.get(name)) is not None:
            return cached
        row = db.get(ServerSecret, name)
        if row is None:  # first use; ``vault db upgrade`` normally creates it before any replica serves
            row = ServerSecret(name=name, value=crypto.wrap(self.keys, os.urandom(32),
                                                            context=b"server-secret:" + name.encode()))
            db.add(row)
            db.flush()
        value = crypto.unwrap(self.keys, row.value, context=b"server-secret:" + name.encode())
        if row in db.new:  # not committed yet: cache only what surely exists
            return value
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
        sealed = AESSIV(self.secret(db, "pairwise-sid")).encrypt(sid.encode(), [sector.encode()])
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def login_sid(self, db: Session, *, sector: str, pairwise: str) -> str | None:
        """The login session's sid behind the ``sid`` an app of ``sector`` holds (None when it was
        not made for that sector, or not by this service)."""
        try:
            sealed = base64.urlsafe_b64decode(pairwise + "=" * (-len(pairwise) % 4))
            return AESSIV(self.secret(db, "pairwise-sid")).decrypt(sealed, [sector.encode()]).decode()
        except (ValueError, InvalidTag, UnicodeDecodeError):
            return None
