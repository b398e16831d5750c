"""The counter's rules: which mandate lets an agent act for a citizen, and the journal of what was
done under it. Every refusal is audited; every action goes into the journal *and* the audit chain.

Pages (``vault.counter.routes``) call this; they never decide on their own whether an agent may act.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from vault.auth.models import Citizen
from vault.counter.models import PROCEDURES, Mandate, MandateAction
from vault.db import utcnow
from vault.errors import VaultError
from vault.gdpr import audit
from vault.gdpr.models import StaffAccount, Tombstone
from vault.gdpr.service import GdprService
from vault.translation import N_

logger = logging.getLogger(__name__)


class NoMandate(VaultError):
    """An agent without a mandate for this citizen, with an ended one, or outside its procedures:
    403, audited, nothing of the citizen shown."""

    code, status = "forbidden", 403
    title = N_("Pas de mandat pour cette démarche")
    message = N_("Votre guichet n'a pas de mandat en cours de cette personne pour cette démarche. "
                 "Si elle est présente, elle peut vous en donner un.")
    link = ("/agent/", N_("Retour au guichet"))


class UnknownCitizen(VaultError):
    code, status = "not_found", 404
    title = N_("Personne introuvable")
    message = N_("Aucun compte ne correspond (il a peut-être été effacé).")
    link = ("/agent/", N_("Retour au guichet"))


def is_active(mandate: Mandate, at: datetime | None = None) -> bool:
    at = at or utcnow()
    return mandate.ended_at is None and mandate.ends_at > at


class CounterService:
    """Mandates and their journal. Built once (``vault.services``)."""

    def __init__(self, *, gdpr: GdprService) -> None:
        self.gdpr = gdpr  # the citizen's keyed subject (audit entries never hold a citizen id), search

    def citizen(self, db: Session, citizen_id: uuid.UUID) -> Citizen:
        """The citizen an agent opened; ``UnknownCitizen`` (404) when there is none or their erasure began."""
        citizen = db.get(Citizen, citizen_id)
        if citizen is None or db.get(Tombstone, self.gdpr.subject(db, citizen_id)) is not None:
            raise UnknownCitizen()
        return citizen

    # ---- mandates -------------------------------------------------------------------------------------

    def mandates_of(self, db: Session, citizen_id: uuid.UUID, *, service: str | None = None,
                    active_only: bool = False) -> list[Mandate]:
        """A citizen's mandates (a service's only, when named), newest first."""
        query = select(Mandate).where(Mandate.citizen_id == citizen_id)
        if service is not None:
            query = query.where(Mandate.service == service)
        if active_only:
            query = query.where(col(Mandate.ended_at).is_(None), col(Mandate.ends_at) > utcnow())
        return list(db.exec(query.order_by(col(Mandate.created_at).desc())).all())

    def require_mandate(self, db: Session, agent: StaffAccount, citizen_id: uuid.UUID,
                        procedure: str | None = None) -> Mandate:
        """The active mandate of the agent's service that covers ``procedure`` (any procedure when
        None), else ``NoMandate`` — audited with the reason (none, ended, outside its procedures)."""
        if procedure is not None and procedure not in PROCEDURES:
            procedure = "autre"
        mandates = self.mandates_of(db, citizen_id, service=agent.service or "") if agent.role == "agent" else []
        active = [m for m in mandates if is_active(m)]
        for mandate in active:
            if procedure is None or procedure in mandate.procedures:
                return mandate
        reason = "outside_procedures" if active else ("ended" if mandates else "none")
        audit.record(db, actor=f"staff:{agent.id}", action="counter.refused",
                     target=f"subject:{self.gdpr.subject(db, citizen_id)}",
                     details={"reason": reason, "procedure": procedure or "", "service": agent.service or ""})
        # The refusal must stay in the chain even though the request ends in an error.
        db.commit()
        logger.info("counter action refused", extra={"staff_id": str(agent.id), "reason": reason})
        raise NoMandate()

    # ---- the journal ------------------------------------------------------------------------------------

    def record(self, db: Session, *, mandate: Mandate, agent: StaffAccount, action: str,
               details: dict[str, Any] | None = None) -> MandateAction:
        """One action under a mandate: a line of the citizen's journal and an entry of the audit chain."""
        details = details or {}
        entry = MandateAction(mandate_id=mandate.id, citizen_id=mandate.citizen_id, service=mandate.service,
                              agent_id=agent.id, action=action, details=details)
        db.add(entry)
        audit.record(db, actor=f"staff:{agent.id}", action=f"counter.{action}",
                     target=f"subject:{self.gdpr.subject(db, mandate.citizen_id)}",
                     details={"mandate": str(mandate.id), "service": mandate.service, **details})
        return entry

    def journal(self, db: Session, citizen_id: uuid.UUID) -> list[MandateAction]:
        """Every action done for a citizen under a mandate, newest first."""
        return list(db.exec(select(MandateAction).where(MandateAction.citizen_id == citizen_id)
                            .order_by(col(MandateAction.at).desc(), col(MandateAction.id).desc())).all())
