"""The counter's rules: which mandate lets an agent act for a citizen, and the journal of what was
done under it. Every refusal is audited; every action goes into the journal *and* the audit chain.

Pages (``vault.counter.routes``) call this; they never decide on their own whether an agent may act.
"""

from __future__ import annotations

import calendar
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from vault.auth.exceptions import InvalidCredentials, InvalidInput, InvalidOtp
from vault.auth.models import Citizen
from vault.auth.service import AccountService
from vault.counter.models import DURATIONS, PROCEDURES, AssistedSession, Mandate, MandateAction
from vault.db import utcnow
from vault.errors import VaultError
from vault.gdpr import audit
from vault.gdpr.models import StaffAccount, Tombstone
from vault.gdpr.service import GdprService
from vault.storage.service import Actor, DocumentService
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


class UnknownMandate(VaultError):
    code, status = "not_found", 404
    title = N_("Mandat introuvable")
    message = N_("Ce mandat n'existe pas, ou il a déjà pris fin.")


def is_active(mandate: Mandate, at: datetime | None = None) -> bool:
    at = at or utcnow()
    return mandate.ended_at is None and mandate.ends_at > at


NO_PROCEDURE = N_("Cochez au moins une démarche.")
NO_DURATION = N_("Choisissez la durée du mandat.")
WRONG_PASSWORD = N_("Mot de passe incorrect. La personne peut le saisir de nouveau.")
WRONG_CODE = N_("Code incorrect ou expiré. La personne peut saisir le code affiché maintenant par son application, "
                "ou un de ses codes de secours.")
# Journal lines of document listings closer than this to the previous one are one visit.
VISIT = timedelta(minutes=30)


@dataclass(frozen=True)
class MandateChoice:
    """What the agent ticked: the procedures (keys of PROCEDURES, in their order) and the duration."""

    procedures: tuple[str, ...]
    duration: str


def read_choice(procedures: list[str], duration: str) -> MandateChoice:
    """The agent's choice, checked each time it is posted (the grant form, the confirmation, the
    signed scan): InvalidInput with the message by field otherwise."""
    wanted = set(procedures)
    errors: dict[str, str] = {}
    if not wanted or not wanted <= set(PROCEDURES):
        errors["procedures"] = NO_PROCEDURE
    if duration not in DURATIONS:
        errors["duration"] = NO_DURATION
    if errors:
        raise InvalidInput(errors)
    return MandateChoice(procedures=tuple(p for p in PROCEDURES if p in wanted), duration=duration)


def _add_months(at: datetime, months: int) -> datetime:
    month = at.month - 1 + months
    year, month = at.year + month // 12, month % 12 + 1
    return at.replace(year=year, month=month, day=min(at.day, calendar.monthrange(year, month)[1]))


def mandate_end(duration: str, start: datetime) -> datetime:
    """When a mandate of ``duration`` confirmed at ``start`` ends (same time of day)."""
    if duration == "1d":
        return start + timedelta(days=1)
    return _add_months(start, {"1m": 1, "6m": 6, "1y": 12}[duration])


class CounterService:
    """Mandates and their journal. Built once (``vault.services``)."""

    def __init__(self, *, gdpr: GdprService) -> None:
        self.gdpr = gdpr  # the citizen's keyed subject (audit entries never hold a citizen id), search

    @property
    def accounts(self) -> AccountService:
        return self.gdpr.accounts  # the citizen's password (throttled like a login), their notices

    @property
    def documents(self) -> DocumentService:
        return self.gdpr.documents  # the vault, through the same pipeline as the citizen's own uploads

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
        # A document's title is the citizen's words: in their journal, not in the audit chain (which
        # outlives an erasure).
        audit.record(db, actor=f"staff:{agent.id}", action=f"counter.{action}",
                     target=f"subject:{self.gdpr.subject(db, mandate.citizen_id)}",
                     details={"mandate": str(mandate.id), "service": mandate.service,
                              **{k: v for k, v in details.items() if k != "title"}})
        return entry

    def journal(self, db: Session, citizen_id: uuid.UUID) -> list[MandateAction]:
        """Every action done for a citizen under a mandate, newest first."""
        return list(db.exec(select(MandateAction).where(MandateAction.citizen_id == citizen_id)
                            .order_by(col(MandateAction.at).desc(), col(MandateAction.id).desc())).all())

    def journal_with_names(self, db: Session, citizen_id: uuid.UUID) -> list[tuple[MandateAction, str]]:
        """The journal with each line's agent's name (staff accounts are disabled, never deleted)."""
        lines = self.journal(db, citizen_id)
        names = {a.id: a.name for a in db.exec(select(StaffAccount).where(
            col(StaffAccount.id).in_({line.agent_id for line in lines})))} if lines else {}
        return [(line, names.get(line.agent_id, "")) for line in lines]

    # ---- granting ---------------------------------------------------------------------------------------

    def grant(self, db: Session, *, agent: StaffAccount, citizen: Citizen, choice: MandateChoice,
              granted_with: str, signed_document_id: uuid.UUID | None = None,
              document_kind: str | None = None) -> Mandate:
        """A new mandate of the agent's service, from now to the end of its duration: journal line
        ``mandate.granted`` (and the audit chain), a mail to the citizen if they have an address.

        A second mandate while one is active is a mandate of its own: the service may then act for
        the procedures of either, each until its own end, and the citizen ends each separately.
        ``document_kind``: the identity document the agent checked for a signed mandate (its kind only)."""
        now = utcnow()
        mandate = Mandate(citizen_id=citizen.id, service=agent.service or "", procedures=list(choice.procedures),
                          duration=choice.duration, granted_with=granted_with, signed_document_id=signed_document_id,
                          created_by=agent.id, created_at=now, ends_at=mandate_end(choice.duration, now))
        db.add(mandate)
        db.flush()
        self.record(db, mandate=mandate, agent=agent, action="mandate.granted",
                    details={"procedures": list(choice.procedures), "duration": choice.duration,
                             "ends_at": mandate.ends_at.isoformat(), "granted_with": granted_with,
                             **({"document_kind": document_kind} if document_kind else {})})
        self.accounts.notify(db=db, to=citizen.email, template="mandate_granted", citizen_id=citizen.id,
                             service=mandate.service,
                             procedures=[PROCEDURES[p] for p in choice.procedures],
                             ends_at=self.local(mandate.ends_at))
        logger.info("mandate granted", extra={"mandate_id": str(mandate.id), "staff_id": str(agent.id),
                                              "granted_with": granted_with})
        return mandate

    def grant_with_password(self, db: Session, *, agent: StaffAccount, citizen: Citizen, choice: MandateChoice,
                            password: str, otp: str = "", address: str) -> Mandate:
        """The citizen, present, types their password on the agent's screen — and, when their
        account has two-factor login on, the code of their app (or a recovery code): throttled like
        a login, on the same counters (TooManyLoginAttempts; a wrong password or code is InvalidInput
        on ``password`` or ``otp``, counted, audited and committed before it is raised)."""
        try:
            self.accounts.check_credentials(db=db, citizen=citizen, password=password, otp=otp, address=address)
        except (InvalidCredentials, InvalidOtp) as exc:
            wrong_code = isinstance(exc, InvalidOtp)
            audit.record(db, actor=f"staff:{agent.id}", action="counter.mandate.refused",
                         target=f"subject:{self.gdpr.subject(db, citizen.id)}",
                         details={"reason": "wrong_code" if wrong_code else "wrong_password",
                                  "service": agent.service or ""})
            # The failure counts towards the throttle and stays in the chain though the request fails.
            db.commit()
            raise InvalidInput({"otp": WRONG_CODE} if wrong_code else {"password": WRONG_PASSWORD}) from None
        return self.grant(db, agent=agent, citizen=citizen, choice=choice, granted_with="password")

    def local(self, at: datetime) -> datetime:
        """A stored UTC time as the city reads it."""
        return at.astimezone(ZoneInfo(self.gdpr.settings.timezone))

    # ---- ending -------------------------------------------------------------------------------------------

    def end(self, db: Session, *, citizen_id: uuid.UUID, mandate_id: uuid.UUID, by: str,
            agent: StaffAccount | None = None) -> Mandate:
        """End an active mandate now: by the citizen ("Mes mandats"), or by an agent of its service
        at the citizen's request. Journal line ``mandate.ended``; the service's next action is refused."""
        mandate = db.get(Mandate, mandate_id)
        if (mandate is None or mandate.citizen_id != citizen_id or not is_active(mandate)
                or (agent is not None and mandate.service != agent.service)):
            raise UnknownMandate()
        mandate.ended_at, mandate.ended_by = utcnow(), by
        self._end_sessions_of(db, mandate)
        if agent is not None:
            self.record(db, mandate=mandate, agent=agent, action="mandate.ended", details={"by": by})
        else:
            # The journal names the agent who took the mandate; the line says the citizen ended it.
            db.add(MandateAction(mandate_id=mandate.id, citizen_id=citizen_id, service=mandate.service,
                                 agent_id=mandate.created_by, action="mandate.ended", details={"by": by}))
            audit.record(db, actor=f"subject:{self.gdpr.subject(db, citizen_id)}", action="counter.mandate.ended",
                         target=f"subject:{self.gdpr.subject(db, citizen_id)}",
                         details={"mandate": str(mandate.id), "service": mandate.service, "by": by})
        logger.info("mandate ended", extra={"mandate_id": str(mandate.id), "by": by})
        return mandate

    def _end_sessions_of(self, db: Session, mandate: Mandate) -> None:
        """A mandate ends: its live assisted sessions end with it, and every login an agent made
        under it into an app (its tokens) with them."""
        rows = list(db.exec(select(AssistedSession).where(AssistedSession.mandate_id == mandate.id)).all())
        for row in rows:
            if row.ended_at is None:
                self.end_assisted(db, row, reason="mandate_ended")
        self.gdpr.oidc.revoke_delegated(db=db, citizen_id=mandate.citizen_id, sids=[row.id[:32] for row in rows])

    def end_assisted(self, db: Session, row: AssistedSession, *, reason: str) -> None:
        """An assisted session ends (``vault.counter.assist``): one journal line ``session.ended``
        (and the audit chain), and the logins made in it into apps end too (their tokens revoked)."""
        row.ended_at = utcnow()
        mandate = db.get(Mandate, row.mandate_id)
        agent = db.get(StaffAccount, row.agent_id)
        if mandate is not None and agent is not None:
            self.record(db, mandate=mandate, agent=agent, action="session.ended", details={"reason": reason})
        self.gdpr.oidc.revoke_delegated(db=db, citizen_id=row.citizen_id, sids=[row.id[:32]])
        logger.info("assisted session ended", extra={"staff_id": str(row.agent_id), "reason": reason})

    # ---- acting under a mandate ---------------------------------------------------------------------------

    @staticmethod
    def actor(agent: StaffAccount, citizen_id: uuid.UUID) -> Actor:
        """The agent in the vault: sees the documents, adds some (provenance: the counter's service),
        never changes or deletes one; every access lands in the citizen's access log."""
        return Actor(kind="agent", citizen_id=citizen_id, actor_id=str(agent.id), name=agent.service or "")

    def listed(self, db: Session, *, mandate: Mandate, agent: StaffAccount, procedure: str) -> None:
        """The agent opened the document list: one journal line (and access-log entry) per visit — not
        again for the same agent, mandate and procedure within ``VISIT`` of the previous one."""
        last = db.exec(select(MandateAction).where(
            MandateAction.mandate_id == mandate.id, MandateAction.agent_id == agent.id,
            MandateAction.action == "documents.listed").order_by(col(MandateAction.at).desc()).limit(1)).first()
        if last is not None and last.details.get("procedure") == procedure and utcnow() - last.at < VISIT:
            return
        self.documents.log_access(db, self.actor(agent, mandate.citizen_id), "list", None)
        self.record(db, mandate=mandate, agent=agent, action="documents.listed", details={"procedure": procedure})
