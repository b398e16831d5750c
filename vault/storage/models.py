"""Tables of the document vault and their schemas."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal, get_args

from sqlalchemy import Column, ForeignKey, LargeBinary
from sqlmodel import Field, SQLModel

from vault.db import utcnow
from vault.translation import N_

DOCUMENT_TYPES = {
    "identity": N_("Pièce d'identité"),
    "proof_of_address": N_("Justificatif de domicile"),
    "tax_notice": N_("Avis d'imposition"),
    "family_record": N_("Livret de famille"),
    "income": N_("Justificatif de revenus"),
    "other": N_("Autre document"),
    "mandate": N_("Mandat"),  # a mandate given to the town hall's counter, signed on paper and scanned there
}
DocumentType = Literal["identity", "proof_of_address", "tax_notice", "family_record", "income", "other", "mandate"]
"""The API's name for a document type (an enum in the OpenAPI document): ``DOCUMENT_TYPES``' keys."""
assert set(get_args(DocumentType)) == set(DOCUMENT_TYPES), "DocumentType must list DOCUMENT_TYPES"
MEDIA_TYPES = ("application/pdf", "image/jpeg", "image/png", "image/webp", "image/heic")


def _citizen_fk(*, primary_key: bool = False) -> Column[uuid.UUID]:
    return Column(ForeignKey("citizen.id", ondelete="CASCADE"), nullable=False, index=not primary_key,
                  primary_key=primary_key)


class CitizenKey(SQLModel, table=True):
    """The citizen's key, wrapped by the KEK (its version is inside the wrapped bytes too)."""

    __tablename__ = "citizen_key"

    citizen_id: uuid.UUID = Field(sa_column=_citizen_fk(primary_key=True))
    wrapped: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    kek_version: int
    created_at: datetime = Field(default_factory=utcnow)
    rewrapped_at: datetime | None = None


class DocumentBase(SQLModel):
    type: str = Field(max_length=30)
    title: str = Field(max_length=200)
    valid_until: date | None = None


class Document(DocumentBase, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    owner_id: uuid.UUID | None = Field(  # NULL only for a document kept under legal hold after an erasure
        default=None, sa_column=Column(ForeignKey("citizen.id", ondelete="CASCADE"), nullable=True, index=True))
    filename: str = Field(max_length=255)
    media_type: str = Field(max_length=50)  # sniffed from the bytes, never the client's word
    size: int  # plaintext bytes
    sha256: str = Field(max_length=64)  # of the plaintext
    blob_key: str = Field(max_length=64, unique=True)  # random, never a name
    ciphertext_size: int
    wrapped_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # by the citizen key
    scan_result: str = Field(max_length=20)  # "clean" | "not_scanned" (antivirus off, development)
    # "citizen", the depositing app's client_id, or "counter" (added at the town hall's counter under a
    # mandate; ``source_name`` then names the counter's service)
    source: str = Field(default="citizen", max_length=64)
    source_name: str | None = Field(default=None, max_length=200)
    # GDPR Art. 17(3)(b): a document the city must keep by law survives an erasure, its key then
    # wrapped by the KEK (``held_key``) instead of the destroyed citizen key.
    legal_hold: str | None = Field(default=None, max_length=500)
    held_key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    retention_notice_at: datetime | None = None  # "your expired document will be deleted" mail sent
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class DocumentPublic(DocumentBase):
    type: DocumentType  # the table's column is a string; its values are these
    id: uuid.UUID
    filename: str
    media_type: str
    size: int
    sha256: str
    scan_result: str
    source: str
    source_name: str | None
    created_at: datetime
    updated_at: datetime


class DocumentUpdate(SQLModel):
    type: str | None = None
    title: str | None = None
    valid_until: date | None = None


class AccessLogEntry(SQLModel, table=True):
    """Who other than the citizen read, deposited, changed or deleted their documents."""

    __tablename__ = "access_log"

    id: int | None = Field(default=None, primary_key=True)
    citizen_id: uuid.UUID = Field(sa_column=_citizen_fk())
    at: datetime = Field(default_factory=utcnow)
    actor_kind: str = Field(max_length=10)  # "app" | "dpo" | "agent"
    actor_id: str = Field(max_length=64)
    actor_name: str = Field(max_length=200)
    action: str = Field(max_length=20)  # "list" | "read" | "deposit" | "update" | "delete"
    document_id: uuid.UUID | None = None
    document_title: str | None = Field(default=None, max_length=200)


class AccessLogPublic(SQLModel):
    at: datetime
    actor_kind: str
    actor_name: str
    action: str
    document_id: uuid.UUID | None
    document_title: str | None


class ShareLink(SQLModel, table=True):
    """A link a citizen gives someone without an account (a landlord, another administration's
    counter) to download chosen documents until it expires. The link's secret and its access code
    are stored hashed: the database alone opens nothing."""

    __tablename__ = "share_link"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    citizen_id: uuid.UUID = Field(sa_column=_citizen_fk())
    secret_hash: str = Field(max_length=64, unique=True)  # SHA-256 of the link's secret (≥ 128 bits)
    code_hash: str = Field(max_length=255)  # argon2id of the access code
    label: str | None = Field(default=None, max_length=100)  # "Pour mon propriétaire": the citizen's note
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = None
    failed_codes: int = 0  # wrong codes entered, ever: at 5 the link locks
    locked_at: datetime | None = None
    first_opened_at: datetime | None = None
    openings: int = 0


class ShareLinkDocument(SQLModel, table=True):
    """A document a share link gives; the row goes with the document."""

    __tablename__ = "share_link_document"

    link_id: uuid.UUID = Field(sa_column=Column(ForeignKey("share_link.id", ondelete="CASCADE"), primary_key=True))
    document_id: uuid.UUID = Field(sa_column=Column(ForeignKey("document.id", ondelete="CASCADE"), primary_key=True,
                                                    index=True))
