"""Tables of citizen accounts and their schemas (SQLModel pattern: Base → Create → table → Public)."""

from __future__ import annotations

import secrets
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, LargeBinary, Text
from sqlmodel import Field, SQLModel

from vault.db import utcnow


class IdentityBase(SQLModel):
    """The pivot identity, with FranceConnect's claim names and formats."""

    given_name: str = Field(max_length=200)  # first names, space separated
    family_name: str = Field(max_length=200)
    birthdate: date
    gender: str = Field(max_length=6)  # "male" | "female"
    birthplace: str = Field(default="", max_length=5)  # INSEE commune code; "" when born abroad
    birthcountry: str = Field(max_length=5)  # INSEE country code; France = 99100
    preferred_username: str | None = Field(default=None, max_length=200)  # usage name


# The identity's fields, in the pivot identity's order (rectification, exports).
IDENTITY_FIELDS = tuple(IdentityBase.model_fields)


class CitizenCreate(IdentityBase):
    email: str
    password: str


class Citizen(IdentityBase, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # Stored lowercased. None: an account opened at the counter for a citizen without an address.
    email: str | None = Field(default=None, max_length=254, unique=True, index=True)
    email_verified_at: datetime | None = None
    # An account opened at the counter without an address logs in with this identifier instead
    # (printed on its activation letter; the login form takes an address or an identifier).
    login_id: str | None = Field(default=None, max_length=20, unique=True, index=True)
    # None until the citizen sets one (an account opened at the counter, with its activation letter).
    password_hash: str | None = Field(default=None, max_length=255)
    # TOTP seed wrapped by vault.crypto (context: b"totp:" + id); set while enrolling, enabled once confirmed.
    totp_secret: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    totp_enabled_at: datetime | None = None
    totp_last_step: int | None = None  # the last accepted time step: a code is never accepted twice
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = None
    retention_notice_at: datetime | None = None  # "your unused account will be deleted" mail sent
    # The identity came from FranceConnect (the state's civil registry), refreshed at each login
    # through it: certified, not editable by the citizen.
    identity_source: str | None = Field(default=None, max_length=20)  # "franceconnect"
    identity_certified_at: datetime | None = None


class CitizenPublic(IdentityBase):
    id: uuid.UUID
    email: str | None
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


def citizen_fk() -> Column[uuid.UUID]:
    return Column(ForeignKey("citizen.id", ondelete="CASCADE"), nullable=False, index=True)


class LoginSession(SQLModel, table=True):
    """A browser session. The cookie holds a random token; the row is keyed by its SHA-256."""

    __tablename__ = "login_session"

    id: str = Field(primary_key=True, max_length=64)
    citizen_id: uuid.UUID = Field(sa_column=citizen_fk())
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    auth_time: datetime = Field(default_factory=utcnow)
    amr: str = Field(default="pwd", max_length=50)  # space separated: pwd, otp, mfa
    mfa_pending: bool = False  # password checked, waiting for the TOTP code
    # The last time the citizen proved it is them in this session (password, TOTP code or passkey,
    # at login or on the confirmation page): the account's sensitive pages ask again after 5 minutes.
    stepped_up_at: datetime | None = None
    user_agent: str = Field(default="", max_length=200)
    # Public id of the session: the OIDC ``sid`` claim and the key of RP-initiated logout.
    sid: str = Field(default_factory=lambda: secrets.token_urlsafe(16), max_length=32, index=True)
    # A login through an identity federation (FranceConnect): its name, and its ID token, the
    # hint of the logout at the provider when the citizen logs out here.
    federation: str | None = Field(default=None, max_length=20)
    federation_id_token: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class EmailToken(SQLModel, table=True):
    """A single-use link sent by mail (email verification, password reset); keyed by SHA-256."""

    __tablename__ = "email_token"

    id: str = Field(primary_key=True, max_length=64)
    citizen_id: uuid.UUID = Field(sa_column=citizen_fk())
    purpose: str = Field(max_length=20)  # "verify_email" | "reset_password" | "change_email"
    new_email: str | None = Field(default=None, max_length=254)  # change_email: the address being confirmed
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None


class RecoveryCode(SQLModel, table=True):
    """A TOTP recovery code (high entropy, so a SHA-256 is enough); single use."""

    __tablename__ = "recovery_code"

    id: int | None = Field(default=None, primary_key=True)
    citizen_id: uuid.UUID = Field(sa_column=citizen_fk())
    code_hash: str = Field(max_length=64)
    used_at: datetime | None = None


class LoginThrottle(SQLModel, table=True):
    """Failed-login counters, per account (a keyed hash of the name typed, so unknown emails count
    too, and the table names nobody) and per client address.

    Kept in the database so that every replica sees the same counters.
    """

    __tablename__ = "login_throttle"

    key: str = Field(primary_key=True, max_length=80)
    failures: int = 0
    last_failure_at: datetime = Field(default_factory=utcnow)
    locked_until: datetime | None = None


class FederatedIdentity(SQLModel, table=True):
    """A citizen's account linked to their identity at a federation (FranceConnect's ``sub`` for this
    service); one account per subject, one subject per provider and account."""

    __tablename__ = "federated_identity"

    provider: str = Field(primary_key=True, max_length=20)  # "franceconnect"
    subject: str = Field(primary_key=True, max_length=255)
    citizen_id: uuid.UUID = Field(sa_column=citizen_fk())
    linked_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = None


class FederationRequest(SQLModel, table=True):
    """A federated login under way, keyed by the SHA-256 of its ``state`` (or of the cookie of a
    step that waits for the person: linking an existing account, a staff TOTP): single use."""

    __tablename__ = "federation_request"

    id: str = Field(primary_key=True, max_length=64)
    provider: str = Field(max_length=20)
    purpose: str = Field(max_length=20)  # "login" | "link" | "logout" | "staff_login" | "staff_otp"
    nonce: str | None = Field(default=None, max_length=64)
    next: str = Field(default="", max_length=2000)  # where to go afterwards (already checked)
    subject: str | None = Field(default=None, max_length=255)
    account_id: uuid.UUID | None = None  # the account waiting to be linked, or the staff member
    claims: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    id_token: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    amr: str = Field(default="", max_length=50)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class Passkey(SQLModel, table=True):
    """A passkey (WebAuthn public key credential) a citizen registered from "Mon compte".

    Only public data: the credential's id and COSE public key; the private key never leaves the
    citizen's authenticator (or their passkey provider, for a synced passkey)."""

    __tablename__ = "passkey"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    citizen_id: uuid.UUID = Field(sa_column=citizen_fk())
    credential_id: str = Field(max_length=1400, unique=True, index=True)  # base64url, as browsers send it
    public_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # COSE_Key
    sign_count: int = 0
    name: str = Field(max_length=60)  # chosen by the citizen
    # The authenticator's backup eligibility (BE flag, fixed at creation): a synced, multi-device
    # passkey is a software key (amr "swk"), a device-bound one a hardware key (amr "hwk").
    backup_eligible: bool = False
    backed_up: bool = False  # BE's companion flag (BS), as last reported
    attachment: str | None = Field(default=None, max_length=20)  # "platform" | "cross-platform", as the browser said
    transports: str = Field(default="", max_length=100)  # space separated (usb nfc ble internal hybrid…)
    aaguid: str = Field(default="", max_length=36)  # the authenticator model (all zeros with attestation "none")
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None


class PasskeyChallenge(SQLModel, table=True):
    """A WebAuthn challenge waiting for its answer: single use, five minutes, in the database so that
    every replica can check it. Keyed by the SHA-256 of the challenge (the challenge itself travels
    in the signed client data)."""

    __tablename__ = "passkey_challenge"

    id: str = Field(primary_key=True, max_length=64)
    purpose: str = Field(max_length=10)  # "register" | "login"
    # Registration only: the citizen and the login session that proved the password (and TOTP)
    # for it, and the name chosen for the new passkey.
    citizen_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("citizen.id", ondelete="CASCADE"), nullable=True, index=True))
    login_session_id: str | None = Field(default=None, max_length=64)
    name: str | None = Field(default=None, max_length=60)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)
