"""Tables of the counter (assisted mode): accounts opened in person, activation letters, mandates,
the journal of what was done under them, and assisted sessions.

A mandate is granted to a *service* (the counter, e.g. "Guichet unique de l'Hôtel de Ville"),
not to one agent: any agent of that service may act under it, and every action names the agent.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey
from sqlmodel import Field, SQLModel

from vault.auth.models import citizen_fk
from vault.db import utcnow
from vault.translation import N_

# Kinds of procedures a mandate may cover (Aidants Connect's "démarches", as the city names them).
PROCEDURES = {
    "etat_civil": N_("État civil"),
    "ecole_enfance": N_("École et enfance"),
    "social": N_("Social et solidarité"),
    "logement": N_("Logement"),
    "elections": N_("Élections"),
    "autre": N_("Autre"),
}
# How long a mandate lasts, from the moment the citizen confirms it.
DURATIONS = {"1d": N_("1 jour"), "1m": N_("1 mois"), "6m": N_("6 mois"), "1y": N_("1 an")}
# The identity document the agent checked in person before opening an account.
IDENTITY_DOCUMENTS = {
    "cni": N_("Carte nationale d'identité"),
    "passeport": N_("Passeport"),
    "titre_sejour": N_("Titre de séjour"),
    "permis": N_("Permis de conduire"),
}


def _staff_fk(nullable: bool = False) -> Column[uuid.UUID]:
    # Staff accounts are disabled, never deleted, so the journal keeps naming who acted.
    return Column(ForeignKey("staff_account.id", ondelete="RESTRICT"), nullable=nullable, index=True)


class CounterEnrolment(SQLModel, table=True):
    """An account opened at the counter: which identity document the agent checked, who, when.
    No scan is kept here (only in the vault, if the citizen wants it there)."""

    __tablename__ = "counter_enrolment"

    citizen_id: uuid.UUID = Field(sa_column=Column(ForeignKey("citizen.id", ondelete="CASCADE"), primary_key=True))
    document_kind: str = Field(max_length=20)  # a key of IDENTITY_DOCUMENTS
    checked_by: uuid.UUID = Field(sa_column=_staff_fk())
    service: str = Field(max_length=200)
    checked_at: datetime = Field(default_factory=utcnow)


class ActivationCode(SQLModel, table=True):
    """The one-time code of a printed activation letter (an account opened without email): the
    citizen sets a password with it. Stored as an argon2id hash; valid 30 days; reprinting the
    letter voids the previous code."""

    __tablename__ = "activation_code"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    citizen_id: uuid.UUID = Field(sa_column=citizen_fk())
    code_hash: str = Field(max_length=255)
    created_by: uuid.UUID = Field(sa_column=_staff_fk())
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None
    voided_at: datetime | None = None


class Mandate(SQLModel, table=True):
    """A mandate the citizen, present at the counter, granted to a service for named procedures."""

    __tablename__ = "mandate"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    citizen_id: uuid.UUID = Field(sa_column=citizen_fk())
    service: str = Field(max_length=200, index=True)
    procedures: list[str] = Field(sa_column=Column(JSON, nullable=False))  # keys of PROCEDURES
    duration: str = Field(max_length=4)  # a key of DURATIONS
    granted_with: str = Field(max_length=10)  # "password" | "signature" (printed mandate, signed)
    # The signed printed mandate, kept in the citizen's vault as a document of type "mandate".
    signed_document_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("document.id", ondelete="SET NULL"), nullable=True))
    created_by: uuid.UUID = Field(sa_column=_staff_fk())
    created_at: datetime = Field(default_factory=utcnow)
    ends_at: datetime = Field(index=True)
    ended_at: datetime | None = None  # ended early
    ended_by: str | None = Field(default=None, max_length=20)  # "citizen" | "agent"


class MandateAction(SQLModel, table=True):
    """One line of the journal: what an agent did under a mandate (also in the audit chain)."""

    __tablename__ = "mandate_action"

    id: int | None = Field(default=None, primary_key=True)
    mandate_id: uuid.UUID = Field(sa_column=Column(ForeignKey("mandate.id", ondelete="CASCADE"), nullable=False,
                                                   index=True))
    citizen_id: uuid.UUID = Field(sa_column=citizen_fk())
    at: datetime = Field(default_factory=utcnow, index=True)
    service: str = Field(max_length=200)
    agent_id: uuid.UUID = Field(sa_column=_staff_fk())
    # "mandate.granted", "mandate.ended", "session.started", "documents.listed", "document.added",
    # "document.downloaded", "app.login"
    action: str = Field(max_length=40)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class AssistedSession(SQLModel, table=True):
    """An agent acting for one citizen under one mandate, opened from the agent's pages. Its cookie
    (``SameSite=Lax``, so that a city app's redirection to ``/authorize`` carries it) is keyed here
    by its SHA-256; it dies with the agent's staff session."""

    __tablename__ = "assisted_session"

    id: str = Field(primary_key=True, max_length=64)
    staff_session_id: str = Field(sa_column=Column(ForeignKey("staff_session.id", ondelete="CASCADE"),
                                                   nullable=False, index=True))
    agent_id: uuid.UUID = Field(sa_column=_staff_fk())
    citizen_id: uuid.UUID = Field(sa_column=citizen_fk())
    mandate_id: uuid.UUID = Field(sa_column=Column(ForeignKey("mandate.id", ondelete="CASCADE"), nullable=False,
                                                   index=True))
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    ended_at: datetime | None = None
