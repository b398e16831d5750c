"""Tables of the GDPR domain: staff, the register of requests, tombstones, the audit log.

After an erasure no row here names the citizen: requests and audit entries refer to people by a
keyed hash of their internal id (``subject``), which links them to the tombstone and nothing else.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, LargeBinary, Text
from sqlmodel import Field, SQLModel

from vault.db import utcnow
from vault.translation import N_

REQUEST_KINDS = {"access": N_("Accès (art. 15)"), "rectification": N_("Rectification (art. 16)"),
                 "erasure": N_("Effacement (art. 17)")}
CHANNELS = {"counter": N_("Au guichet"), "mail": N_("Par courrier"), "online": N_("En ligne")}
STATUSES = {"received": N_("Reçue"), "in_progress": N_("En cours"), "done": N_("Traitée"), "refused": N_("Refusée")}


class StaffAccount(SQLModel, table=True):
    """A member of staff (the DPO, an administrator). TOTP is required before any staff page."""

    __tablename__ = "staff_account"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(max_length=254, unique=True, index=True)
    name: str = Field(max_length=200)
    role: str = Field(max_length=10)  # "dpo" | "admin" | "agent" (a counter agent)
    service: str | None = Field(default=None, max_length=200)  # an agent's counter, which mandates name
    password_hash: str = Field(max_length=255)
    totp_secret: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    totp_enabled_at: datetime | None = None
    totp_last_step: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    disabled_at: datetime | None = None
    proconnect_sub: str | None = Field(default=None, max_length=255, unique=True)  # linked at a first ProConnect login


class StaffSession(SQLModel, table=True):
    __tablename__ = "staff_session"

    id: str = Field(primary_key=True, max_length=64)  # SHA-256 of the cookie's token
    staff_id: uuid.UUID = Field(sa_column=Column(ForeignKey("staff_account.id", ondelete="CASCADE"), nullable=False,
                                                 index=True))
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    mfa_done: bool = False  # password checked; TOTP checked too when True
    reauth_at: datetime | None = None  # last password + TOTP re-check (sensitive actions need < 5 min)


class DataRequest(SQLModel, table=True):
    """One entry of the register of data-subject requests (GDPR Art. 12, 15–17)."""

    __tablename__ = "gdpr_request"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    kind: str = Field(max_length=20)
    citizen_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("citizen.id", ondelete="SET NULL"), nullable=True, index=True))
    subject: str = Field(max_length=64, index=True)  # keyed hash of the citizen id (survives erasure)
    requester_label: str = Field(max_length=200)  # how the register shows who asked (anonymised at erasure)
    channel: str = Field(max_length=10)
    received_on: date
    due_on: date
    identity_check: str = Field(default="", max_length=500)
    details: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # the person's own words (a rectification)
    identity_checked_by: str | None = Field(default=None, max_length=200)
    extended_to: date | None = None
    extension_reason: str | None = Field(default=None, max_length=1000)
    extension_told_on: date | None = None
    status: str = Field(default="received", max_length=20)
    outcome: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    refusal_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    handled_by: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None


class Tombstone(SQLModel, table=True):
    """What remains of an erased citizen, for accountability (Art. 5(2)): no name, no id."""

    __tablename__ = "gdpr_tombstone"

    subject: str = Field(primary_key=True, max_length=64)  # keyed hash of the erased citizen's id
    request_id: uuid.UUID | None = None
    erased_at: datetime = Field(default_factory=utcnow)
    counts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    certificate: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # JWS
    completed_at: datetime | None = None  # None while an erasure is still in progress (resumable)


class AuditEntry(SQLModel, table=True):
    """Append-only, tamper-evident: each entry carries the MAC (the hash, before migration 0021) of
    the previous one."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow)
    actor: str = Field(max_length=120)  # "staff:<id>", "subject:<hash>", "app:<client_id>", "system"
    action: str = Field(max_length=60)
    target: str = Field(default="", max_length=120)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(max_length=64, unique=True)  # unique: the chain can never fork
    hash: str = Field(max_length=64, unique=True)


class AuditAnchor(SQLModel, table=True):
    """The chain's two ends: where it starts (after rolling retention removed its oldest entries)
    and its newest entry (so that removing the newest entries shows too)."""

    __tablename__ = "audit_anchor"

    id: int = Field(default=1, primary_key=True)
    hash: str = Field(max_length=64)
    moved_at: datetime = Field(default_factory=utcnow)
    head_id: int | None = None  # None until the first entry written since migration 0006
    head_hash: str | None = Field(default=None, max_length=64)
    # From this entry on, each ``hash`` is an HMAC under the audit key (wrapped by the KEK): the
    # entries before it (written before migration 0021) are a plain SHA-256 chain. ``mac_tag`` is the
    # HMAC of that id, so the boundary cannot be moved without the key.
    mac_from: int | None = None
    mac_tag: str | None = Field(default=None, max_length=64)
