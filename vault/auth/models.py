"""Tables of the auth domain and their schemas (SQLModel pattern: Base → Create → table → Public)."""

from __future__ import annotations

import secrets
import uuid
from datetime import date, datetime

from sqlalchemy import JSON, Column, ForeignKey, LargeBinary
from sqlmodel import Field, SQLModel

from vault.db import utcnow


class IdentityBase(SQLModel):
    """The pivot identity, with FranceConnect's claim names and formats (DESIGN.md §3)."""

    given_name: str = Field(max_length=200)  # first names, space separated
    family_name: str = Field(max_length=200)
    birthdate: date
    gender: str = Field(max_length=6)  # "male" | "female"
    birthplace: str = Field(default="", max_length=5)  # INSEE commune code; "" when born abroad
    birthcountry: str = Field(max_length=5)  # INSEE country code; France = 99100
    preferred_username: str | None = Field(default=None, max_length=200)  # usage name


class CitizenCreate(IdentityBase):
    email: str
    password: str


class Citizen(IdentityBase, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(max_length=254, unique=True, index=True)  # stored lowercased
    email_verified_at: datetime | None = None
    password_hash: str = Field(max_length=255)
    # TOTP seed wrapped by vault.crypto (context: b"totp:" + id); set while enrolling, enabled once confirmed.
    totp_secret: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    totp_enabled_at: datetime | None = None
    totp_last_step: int | None = None  # the last accepted time step: a code is never accepted twice
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = None
    retention_notice_at: datetime | None = None  # "your unused account will be deleted" mail sent


class CitizenPublic(IdentityBase):
    id: uuid.UUID
    email: str
    email_verified: bool
    totp_enabled: bool
    created_at: datetime

    @classmethod
    def of(cls, citizen: Citizen) -> CitizenPublic:
        return cls(
            **citizen.model_dump(include=set(IdentityBase.model_fields) | {"id", "email", "created_at"}),
            email_verified=citizen.email_verified_at is not None,
            totp_enabled=citizen.totp_enabled_at is not None,
        )


def _citizen_fk() -> Column:
    return Column(ForeignKey("citizen.id", ondelete="CASCADE"), nullable=False, index=True)


class LoginSession(SQLModel, table=True):
    """A browser session. The cookie holds a random token; the row is keyed by its SHA-256."""

    __tablename__ = "login_session"

    id: str = Field(primary_key=True, max_length=64)
    citizen_id: uuid.UUID = Field(sa_column=_citizen_fk())
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    auth_time: datetime = Field(default_factory=utcnow)
    amr: str = Field(default="pwd", max_length=50)  # space separated: pwd, otp, mfa
    mfa_pending: bool = False  # password checked, waiting for the TOTP code
    user_agent: str = Field(default="", max_length=200)
    # Public id of the session: the OIDC ``sid`` claim and the key of RP-initiated logout.
    sid: str = Field(default_factory=lambda: secrets.token_urlsafe(16), max_length=32, index=True)


class EmailToken(SQLModel, table=True):
    """A single-use link sent by mail (email verification, password reset); keyed by SHA-256."""

    __tablename__ = "email_token"

    id: str = Field(primary_key=True, max_length=64)
    citizen_id: uuid.UUID = Field(sa_column=_citizen_fk())
    purpose: str = Field(max_length=20)  # "verify_email" | "reset_password"
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None


class RecoveryCode(SQLModel, table=True):
    """A TOTP recovery code (high entropy, so a SHA-256 is enough); single use."""

    __tablename__ = "recovery_code"

    id: int | None = Field(default=None, primary_key=True)
    citizen_id: uuid.UUID = Field(sa_column=_citizen_fk())
    code_hash: str = Field(max_length=64)
    used_at: datetime | None = None


class LoginThrottle(SQLModel, table=True):
    """Failed-login counters, per account (SHA-256 of the email, so unknown emails count too) and per client address.

    Kept in the database so that every replica sees the same counters.
    """

    __tablename__ = "login_throttle"

    key: str = Field(primary_key=True, max_length=80)
    failures: int = 0
    last_failure_at: datetime = Field(default_factory=utcnow)
    locked_until: datetime | None = None


# ---- the OpenID Connect provider (DESIGN.md §3) ----------------------------------------------------


def _client_fk() -> Column:
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
    jwks: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))  # for private_key_jwt
    created_at: datetime = Field(default_factory=utcnow)
    disabled_at: datetime | None = None


class AuthorizationCode(SQLModel, table=True):
    """A code, keyed by its SHA-256; single use (``used_at`` set atomically), 60 seconds."""

    __tablename__ = "oauth_code"

    id: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(sa_column=_client_fk())
    citizen_id: uuid.UUID = Field(sa_column=_citizen_fk())
    redirect_uri: str = Field(max_length=2000)
    scope: str = Field(max_length=1000)
    nonce: str | None = Field(default=None, max_length=512)
    code_challenge: str | None = Field(default=None, max_length=128)
    code_challenge_method: str | None = Field(default=None, max_length=10)
    auth_time: datetime
    acr: str = Field(max_length=20)
    amr: str = Field(max_length=50)
    sid: str = Field(max_length=32)
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
    citizen_id: uuid.UUID = Field(sa_column=_citizen_fk())
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
    params: dict = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class SigningKey(SQLModel, table=True):
    """A token signing key: the private JWK wrapped by vault.crypto, the public JWK in clear."""

    __tablename__ = "signing_key"

    kid: str = Field(primary_key=True, max_length=64)
    alg: str = Field(max_length=10)
    private_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    public_jwk: dict = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    retired_at: datetime | None = None


class ServerSecret(SQLModel, table=True):
    """Service-wide secrets (the pairwise-sub key...), wrapped by vault.crypto, shared by replicas."""

    __tablename__ = "server_secret"

    name: str = Field(primary_key=True, max_length=50)
    value: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
