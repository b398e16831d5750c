"""Tables of the alerts: the citizen's switches and the validity alerts already sent."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import Column, ForeignKey
from sqlmodel import Field, SQLModel

from vault.db import utcnow
from vault.translation import N_

# Each kind of alert mail, with what "Mon compte" says of it. A kind without a row is on.
KINDS = {
    "grants": N_("Une application peut consulter des justificatifs que j'ai choisis"),
    "deposits": N_("Une application dépose un document dans mon coffre-fort"),
    "share_opened": N_("Un de mes liens de partage est ouvert pour la première fois"),
    "validity": N_("Un justificatif arrive en fin de validité (30 jours, puis 7 jours avant)"),
}


def _citizen_fk(*, primary_key: bool = False) -> Column[uuid.UUID]:
    return Column(ForeignKey("citizen.id", ondelete="CASCADE"), nullable=False, index=not primary_key,
                  primary_key=primary_key)


class AlertSwitch(SQLModel, table=True):
    """The citizen's choice for one kind of alert mail (no row: on)."""

    __tablename__ = "alert_switch"

    citizen_id: uuid.UUID = Field(sa_column=_citizen_fk(primary_key=True))
    kind: str = Field(primary_key=True, max_length=20)
    enabled: bool
    updated_at: datetime = Field(default_factory=utcnow)


class ValidityAlert(SQLModel, table=True):
    """A "your document is about to end" mail that left: once per document, threshold (30 or 7
    days) and validity date, so that a date pushed back brings its own mails. Rows go once their
    date has passed."""

    __tablename__ = "validity_alert"

    document_id: uuid.UUID = Field(primary_key=True)
    days: int = Field(primary_key=True)
    valid_until: date = Field(primary_key=True)
    citizen_id: uuid.UUID = Field(sa_column=_citizen_fk())
    sent_at: datetime = Field(default_factory=utcnow)
