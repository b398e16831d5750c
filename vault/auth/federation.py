"""This service as a relying party of an identity federation: FranceConnect for citizens ("S'identifier
avec FranceConnect"), ProConnect for staff.

The OpenID Connect code flow with FranceConnect's rules: ``state`` and ``nonce`` kept server-side
(single use, 10 minutes), ``acr_values``, ``client_secret_post``, the ID token checked (signature
against the provider's JWKS — asymmetric algorithms only —, ``iss``, ``aud``, ``exp``, ``nonce``),
``iss`` in the authorization response checked when sent (RFC 9207: no mix-up), userinfo accepted
only as a JWT signed by the provider for this client, and logout at the provider.

What a failure means for the person is one sentence ("the login did not go through"); the reason is
for the log (never a token).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwk, jwt
from joserfc.errors import JoseError
from sqlmodel import Session

from vault.auth.models import FederationRequest
from vault.crypto.tokens import token_hash
from vault.db import utcnow
from vault.errors import VaultError
from vault.translation import N_

logger = logging.getLogger(__name__)

ALGORITHMS = ["ES256", "RS256", "PS256", "ES384", "RS384", "ES512", "RS512"]  # never HS256 (a shared secret)
METADATA_TTL = 600.0
LEEWAY = 60  # seconds of clock difference tolerated on exp/iat


class FederationError(VaultError):
    """The federated login failed: one plain sentence for the person; ``reason`` goes to the log."""

    code, status = "federation_failed", 400
    title = N_("Connexion impossible")
    message = N_("La connexion n'a pas abouti. Rien n'a été créé ni relié. Réessayez, ou connectez-vous avec "
                 "votre adresse e-mail et votre mot de passe.")
    link = ("/login", N_("Retour à la connexion"))

    def __init__(self, reason: str, *, message: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class IdentityProvider:
    name: str  # "franceconnect" | "proconnect"
    label: str  # shown to people
    issuer: str
    client_id: str
    client_secret: str
    scope: str
    acr_values: str | None = None
    request_amr: bool = False  # ask for ``amr`` in the ID token (the claims parameter), as ProConnect documents


@dataclass(frozen=True)
class FederatedLogin:
    subject: str  # the provider's sub for this service
    claims: dict[str, Any]  # from the signed userinfo
    id_token: str  # kept for the logout at the provider
    amr: list[str] = field(default_factory=list)
    acr: str | None = None


class FederationRequests:
    """A provider's logins under way (``FederationRequest`` rows): each named by a random secret —
    the ``state``, or a cookie for a step that waits for the person — stored as its SHA-256, single
    use, ten minutes."""

    LIFETIME = timedelta(minutes=10)

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def new(self, db: Session, *, purpose: str, **values: Any) -> str:
        secret = secrets.token_urlsafe(32)
        now = utcnow()
        db.add(FederationRequest(id=token_hash(secret), provider=self.provider, purpose=purpose, created_at=now,
                                 expires_at=now + self.LIFETIME, **values))
        return secret

    def find(self, db: Session, secret: str | None, purpose: str) -> FederationRequest | None:
        """The live request a secret names, or None (unknown, another purpose or provider, expired)."""
        row = db.get(FederationRequest, token_hash(secret)) if secret and len(secret) <= 200 else None
        if row is None or row.purpose != purpose or row.provider != self.provider or row.expires_at <= utcnow():
            return None
        return row

    def consume(self, db: Session, secret: str | None, purpose: str) -> FederationRequest:
        """The request a secret names, used up (also when it turns out expired); FederationError
        when it is unknown or expired."""
        row = db.get(FederationRequest, token_hash(secret)) if secret and len(secret) <= 200 else None
        if row is None or row.purpose != purpose or row.provider != self.provider:
            raise FederationError(f"unknown {purpose} state")
        db.delete(row)
        db.flush()
        if row.expires_at <= utcnow():
            raise FederationError(f"expired {purpose} state")
        return row


class FederationClient:
    """One identity provider, found through its discovery document (cached ten minutes); its keys
    are fetched again once when a token names a key it does not know (rotation)."""

    def __init__(self, provider: IdentityProvider, *, timeout: float = 10.0) -> None:
        self.provider = provider
        self.timeout = timeout
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: jwk.KeySet | None = None

    # ---- the provider's metadata and keys ---------------------------------------------------------

    def _get(self, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return httpx.get(url, timeout=self.timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise FederationError(f"{self.provider.name} unreachable: {type(exc).__name__}") from None

    def metadata(self) -> dict[str, Any]:
        if self._metadata is None or time.monotonic() - self._metadata_at > METADATA_TTL:
            answer = self._get(self.provider.issuer.rstrip("/") + "/.well-known/openid-configuration")
            try:
                metadata = answer.json() if answer.status_code == 200 else None
            except ValueError:
                metadata = None
            if not isinstance(metadata, dict):
                raise FederationError(f"{self.provider.name} discovery answered {answer.status_code}")
            if metadata.get("issuer") != self.provider.issuer:
                raise FederationError(f"{self.provider.name} discovery names another issuer")
            for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
                if not isinstance(metadata.get(name), str):
                    raise FederationError(f"{self.provider.name} discovery lacks {name}")
            self._metadata, self._metadata_at = metadata, time.monotonic()
        return self._metadata

    def _keyset(self, *, refresh: bool = False) -> jwk.KeySet:
        if self._keys is None or refresh:
            answer = self._get(self.metadata()["jwks_uri"])
            try:
                self._keys = jwk.KeySet.import_key_set(answer.json())
            except (ValueError, TypeError, KeyError, JoseError):
                raise FederationError(f"{self.provider.name} JWKS unreadable") from None
        return self._keys

    def _verify(self, token: str, what: str) -> dict[str, Any]:
        """A JWT signed by one of the provider's keys (asymmetric algorithms only); its claims."""
        for refresh in (False, True):
            try:
                return dict(jwt.decode(token, self._keyset(refresh=refresh), algorithms=ALGORITHMS).claims)
            except (ValueError, JoseError) as exc:
                if refresh:
                    raise FederationError(f"{self.provider.name} {what} signature refused: {type(exc).__name__}") from None
        raise AssertionError  # the loop returns or raises

    # ---- the flow -------------------------------------------------------------------------------------

    def authorization_url(self, *, state: str, nonce: str, redirect_uri: str) -> str:
        params = {"response_type": "code", "client_id": self.provider.client_id, "redirect_uri": redirect_uri,
                  "scope": self.provider.scope, "state": state, "nonce": nonce}
        if self.provider.acr_values:
            params["acr_values"] = self.provider.acr_values
        if self.provider.request_amr:
            params["claims"] = '{"id_token":{"amr":{"essential":true}}}'

        return f"{self.metadata()['authorization_endpoint']}?{urlencode(params)}"

    def complete(self, *, code: str, redirect_uri: str, nonce: str, iss: str | None) -> FederatedLogin:
        """The callback's code turned into a verified identity."""
        if iss is not None and iss != self.provider.issuer:
            raise FederationError(f"{self.provider.name} callback iss names another issuer (mix-up)")
        metadata = self.metadata()
        try:
            answer = httpx.post(metadata["token_endpoint"], timeout=self.timeout, headers={"Accept": "application/json"},
                                data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                                      "client_id": self.provider.client_id,
                                      "client_secret": self.provider.client_secret})
        except httpx.HTTPError as exc:
            raise FederationError(f"{self.provider.name} token endpoint unreachable: {type(exc).__name__}") from None
        try:
            tokens = answer.json()
        except ValueError:
            tokens = None
        if answer.status_code != 200 or not isinstance(tokens, dict):
            error = tokens.get("error") if isinstance(tokens, dict) else None
            raise FederationError(f"{self.provider.name} token endpoint answered {answer.status_code} {error or ''}")
        id_token, access_token = tokens.get("id_token"), tokens.get("access_token")
        if not isinstance(id_token, str) or not isinstance(access_token, str):
            raise FederationError(f"{self.provider.name} token response without id_token or access_token")
        claims = self.check_id_token(id_token, nonce=nonce)
        userinfo = self.userinfo(access_token, subject=claims["sub"])
        amr = claims.get("amr")
        return FederatedLogin(subject=claims["sub"], claims=userinfo, id_token=id_token,
                              amr=[a for a in amr if isinstance(a, str)] if isinstance(amr, list) else [],
                              acr=claims.get("acr") if isinstance(claims.get("acr"), str) else None)

    def check_id_token(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """OIDC Core §3.1.3.7: signature, ``iss``, ``aud`` (and ``azp``), ``exp``, ``iat``, ``nonce``."""
        claims = self._verify(id_token, "ID token")
        now = time.time()
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        problems = []
        if claims.get("iss") != self.provider.issuer:
            problems.append("iss")
        if self.provider.client_id not in audiences or (len(audiences) > 1 and claims.get("azp") != self.provider.client_id):
            problems.append("aud")
        if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] < now - LEEWAY:
            problems.append("exp")
        if not isinstance(claims.get("iat"), (int, float)) or claims["iat"] > now + LEEWAY:
            problems.append("iat")
        if claims.get("nonce") != nonce:
            problems.append("nonce")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            problems.append("sub")
        if problems:
            raise FederationError(f"{self.provider.name} ID token refused: {', '.join(problems)}")
        return claims

    def userinfo(self, access_token: str, *, subject: str) -> dict[str, Any]:
        """Userinfo, accepted only as a JWT signed by the provider, for this client, about ``subject``."""
        answer = self._get(self.metadata()["userinfo_endpoint"], headers={"Authorization": f"Bearer {access_token}"})
        if answer.status_code != 200:
            raise FederationError(f"{self.provider.name} userinfo answered {answer.status_code}")
        if answer.headers.get("content-type", "").split(";")[0].strip().lower() != "application/jwt":
            raise FederationError(f"{self.provider.name} userinfo is not signed")
        claims = self._verify(answer.text.strip(), "userinfo")
        audience = claims.get("aud")
        if claims.get("iss") != self.provider.issuer or self.provider.client_id not in (
                audience if isinstance(audience, list) else [audience]):
            raise FederationError(f"{self.provider.name} userinfo refused: iss or aud")
        if claims.get("sub") != subject:
            raise FederationError(f"{self.provider.name} userinfo is about another subject")
        return claims

    def end_session_url(self, *, id_token: str, state: str, post_logout_redirect_uri: str) -> str | None:
        endpoint = self.metadata().get("end_session_endpoint")
        if not isinstance(endpoint, str):
            return None
        query = urlencode({"id_token_hint": id_token, "state": state, "post_logout_redirect_uri": post_logout_redirect_uri})
        return f"{endpoint}?{query}"
