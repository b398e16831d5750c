"""Tables of the OpenID Connect provider: apps, codes, tokens, consents, pending requests, used
client assertions, signing keys and service secrets."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Column, ForeignKey, Integer, LargeBinary, String, false
from sqlmodel import Field, SQLModel

from vault.auth.models import citizen_fk
from vault.db import utcnow

# An app's row version, raised by every change the ORM makes to it (``version_id_col``): the token
# endpoint keeps apps' rows between requests and spends a code only while the app's row still has
# the version it authenticated the request with (vault.oidc.provider.AppCache).
_CLIENT_VERSION: Column[int] = Column("version", Integer, nullable=False, server_default="1")


def _client_fk() -> Column[str]:
    return Column(ForeignKey("oauth_client.client_id", ondelete="CASCADE"), nullable=False, index=True)


class OAuthClient(SQLModel, table=True):
    """A city app (relying party). The secret is stored as a SHA-256: it is a random 256-bit value,
    so a slow hash adds nothing (unlike a password)."""

    __tablename__ = "oauth_client"

    client_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    secret_hash: str | None = Field(default=None, max_length=64)  # None: public client (PKCE)
    redirect_uris: list[str] = Field(sa_column=Column(JSON, nullable=False))
    post_logout_redirect_uris: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    scope: str = Field(max_length=1000)  # the scopes this app may ask for, space separated
    auth_method: str = Field(max_length=30)  # client_secret_basic|client_secret_post|private_key_jwt|none
    sector: str = Field(max_length=200)  # pairwise ``sub`` sector; apps sharing it see the same sub
    id_token_alg: str = Field(default="ES256", max_length=10)  # ES256 | RS256
    userinfo_signed: bool = False  # userinfo as a signed JWT (application/jwt)
    require_nonce: bool = True
    allow_refresh: bool = False
    jwks: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))  # for private_key_jwt
    # "oidc" (standards first), "fc-v1" or "fc-v2" (FranceConnect's behaviour): vault.oidc.profiles
    profile: str = Field(default="oidc", sa_column=Column(String(10), nullable=False, server_default="oidc"))
    # Takes logins made by a counter agent for a citizen under a mandate (ID token with RFC 8693's
    # ``act`` claim); the others refuse them.
    accept_delegation: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    created_at: datetime = Field(default_factory=utcnow)
    disabled_at: datetime | None = None
    version: int = Field(default=1, sa_column=_CLIENT_VERSION)

    __mapper_args__ = {"version_id_col": _CLIENT_VERSION}


class AuthorizationCode(SQLModel, table=True):
    """A code, keyed by its SHA-256; single use (``used_at`` set atomically), 60 seconds."""

    __tablename__ = "oauth_code"

    id: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(sa_column=_client_fk())
    citizen_id: uuid.UUID = Field(sa_column=citizen_fk())
    redirect_uri: str = Field(max_length=2000)
    scope: str = Field(max_length=1000)
    nonce: str | None = Field(default=None, max_length=512)
    code_challenge: str | None = Field(default=None, max_length=128)
    code_challenge_method: str | None = Field(default=None, max_length=10)
    auth_time: datetime
    acr: str = Field(max_length=20)
    amr: str = Field(max_length=50)
    sid: str = Field(max_length=32)
    # RFC 9396: the documents the citizen chose for this app (vault.oidc.documents), or None.
    authorization_details: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # RFC 8693 §4.1: a counter agent logged in for the citizen ({"sub": the agent's pairwise id, "service"}).
    act: dict[str, str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None


class OAuthToken(SQLModel, table=True):
    """An access token and its optional refresh token (both stored as SHA-256).

    ``grant_id`` ties together every token of one authorization: refresh rotation keeps it, and
    reuse of a spent refresh token revokes the whole family.
    """

    __tablename__ = "oauth_token"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    grant_id: uuid.UUID = Field(index=True)
    client_id: str = Field(sa_column=_client_fk())
    citizen_id: uuid.UUID = Field(sa_column=citizen_fk())
    access_token_hash: str = Field(max_length=64, unique=True, index=True)
    refresh_token_hash: str | None = Field(default=None, max_length=64, unique=True, index=True)
    scope: str = Field(max_length=1000)
    code_id: str | None = Field(default=None, max_length=64, index=True)  # the code it came from
    sid: str = Field(max_length=32)
    auth_time: datetime
    acr: str = Field(max_length=20)
    amr: str = Field(max_length=50)
    issued_at: datetime = Field(default_factory=utcnow)
    access_expires_at: datetime
    refresh_expires_at: datetime | None = None  # absolute: rotation never extends it
    refresh_rotated_at: datetime | None = None
    revoked_at: datetime | None = None
    # The code's authorization details, kept through refreshes: the documents this grant may read.
    authorization_details: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The code's actor (RFC 8693 ``act``), kept through refreshes: a delegated grant stays delegated.
    act: dict[str, str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class Consent(SQLModel, table=True):
    """What a citizen agreed to share with an app; asked again when an app wants more."""

    __tablename__ = "oauth_consent"

    citizen_id: uuid.UUID = Field(sa_column=Column(ForeignKey("citizen.id", ondelete="CASCADE"), primary_key=True))
    client_id: str = Field(sa_column=Column(ForeignKey("oauth_client.client_id", ondelete="CASCADE"),
                                            primary_key=True))
    scope: str = Field(max_length=1000)
    granted_at: datetime = Field(default_factory=utcnow)


class PendingAuthorization(SQLModel, table=True):
    """An authorization request waiting for the citizen to log in or consent (10 minutes)."""

    __tablename__ = "oauth_pending"

    id: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(sa_column=_client_fk())
    params: dict[str, str] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class ClientAssertion(SQLModel, table=True):
    """A ``private_key_jwt`` client assertion already used (RFC 7523 §3: its ``jti``, as a SHA-256),
    per app, kept until it expires so that no replica accepts it twice; retention sweeps it then."""

    __tablename__ = "oauth_client_assertion"

    client_id: str = Field(sa_column=Column(ForeignKey("oauth_client.client_id", ondelete="CASCADE"),
                                            primary_key=True))
    jti_hash: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = Field(index=True)


class SigningKey(SQLModel, table=True):
    """A token signing key: the private JWK wrapped by vault.crypto, the public JWK in clear."""

    __tablename__ = "signing_key"

    kid: str = Field(primary_key=True, max_length=64)
    alg: str = Field(max_length=10)
    private_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    # Signs from then on: a new key is published in /jwks first and signs only once every cached
    # copy of /jwks holds it (KeyStore.rotate).
    active_from: datetime = Field(default_factory=utcnow)
    # Signs no more from then on (the successor's ``active_from``); published until the tokens it
    # signed expire (RETIRED_KEY_PUBLISHED).
    retired_at: datetime | None = None


class ServerSecret(SQLModel, table=True):
    """Service-wide secrets (the pairwise-sub key...), wrapped by vault.crypto, shared by replicas."""

    __tablename__ = "server_secret"

    name: str = Field(primary_key=True, max_length=50)
    value: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Deployment(SQLModel, table=True):
    """The deployment's one row: the issuer every replica must answer with (recorded by
    ``vault db upgrade``, or by the first replica to start); a replica configured with another
    VAULT_ISSUER reports itself not ready."""

    __tablename__ = "deployment"

    id: int = Field(default=1, primary_key=True)
    issuer: str = Field(max_length=2000)
    recorded_at: datetime = Field(default_factory=utcnow)
