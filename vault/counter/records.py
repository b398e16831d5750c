"""The counter's part of a citizen's GDPR export and erasure (``vault.gdpr.service.CitizenRecords``):
the mandates they gave and the journal of what was done under them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from vault.counter.models import DURATIONS, PROCEDURES, Mandate, MandateAction
from vault.gdpr.models import StaffAccount


class MandateRecords:
    """Handed to the GDPR service by the composition root."""

    export_name = "mandats.json"

    def export_part(self, db: Session, citizen_id: uuid.UUID) -> list[dict[str, Any]]:
        """The mandates given at the counter, oldest first, each with its journal."""
        mandates = db.exec(select(Mandate).where(Mandate.citizen_id == citizen_id).order_by(col(Mandate.created_at)))
        lines = list(db.exec(select(MandateAction).where(MandateAction.citizen_id == citizen_id)
                             .order_by(col(MandateAction.at), col(MandateAction.id))))
        names = {a.id: a.name for a in db.exec(select(StaffAccount).where(
            col(StaffAccount.id).in_({line.agent_id for line in lines})))} if lines else {}
        return [{
            "id": str(m.id), "guichet": m.service,
            "demarches": [{"code": p, "nom": PROCEDURES.get(p, p)} for p in m.procedures],
            "duree": DURATIONS.get(m.duration, m.duration), "donne_le": m.created_at,
            "confirme_par": "mot de passe" if m.granted_with == "password" else "signature du mandat imprimé",
            "mandat_signe": str(m.signed_document_id) if m.signed_document_id else None,
            "valable_jusqu_au": m.ends_at, "fin_anticipee_le": m.ended_at,
            "fin_demandee_par": {"citizen": "vous", "agent": "le guichet, à votre demande"}.get(m.ended_by or ""),
            "journal": [{"date": line.at, "guichet": line.service,
                         "agent": "" if line.details.get("by") == "citizen" else names.get(line.agent_id, ""),
                         "action": line.action, "details": line.details}
                        for line in lines if line.mandate_id == m.id],
        } for m in mandates]

    def count(self, db: Session, citizen_id: uuid.UUID) -> dict[str, int]:
        """What an erasure removes with the account (by cascade), for its certificate."""
        return {
            "mandates": db.exec(select(func.count()).select_from(Mandate).where(Mandate.citizen_id == citizen_id)).one(),
            "mandate_journal_lines": db.exec(select(func.count()).select_from(MandateAction)
                                             .where(MandateAction.citizen_id == citizen_id)).one(),
        }
