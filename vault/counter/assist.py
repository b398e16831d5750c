"""Assisted sessions: an agent logs into a city app as the citizen, under a mandate.

Started from the citizen's file (any active mandate of the agent's service), it lives in the
agent's browser as the ``assisted`` cookie (its SHA-256 keys the row), for 30 minutes at most, and
never longer than the agent's staff session (the agent's logout ends it). The cookie alone is not
the agent: deciding on the consent page also needs the staff session that opened it. The OpenID
provider asks it, through ``vault.oidc.delegation.Delegations``, who acts for whom at ``/authorize``;
every start, end, login into an app and refusal goes into the citizen's journal or the audit chain
(once: a replayed cookie of an ended session is not audited again, an unknown one only logged).
When it ends, the logins made in it into apps end too (their tokens revoked).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete, or_
from sqlmodel import Session, col, select

from vault.auth.models import Citizen
from vault.counter.models import AssistedSession, Mandate
from vault.counter.service import CounterService, is_active
from vault.crypto.tokens import new_token, token_hash
from vault.db import utcnow
from vault.gdpr import audit
from vault.gdpr.models import StaffAccount, StaffSession
from vault.gdpr.staff import StaffCurrent
from vault.oidc.delegation import Delegation, DelegationEnded
from vault.oidc.models import OAuthClient
from vault.settings import Settings

logger = logging.getLogger(__name__)

ASSIST_LIFETIME = timedelta(minutes=30)


@dataclass(frozen=True)
class DelegatedApp:
    """An app an agent may log into for a citizen: its name and where to open it."""

    name: str
    url: str  # the origin of its first redirect URI


class AssistService:
    """Assisted sessions, and the provider's ``Delegations``. Built once (``vault.services``)."""

    def __init__(self, *, settings: Settings, counter: CounterService) -> None:
        self.settings = settings
        self.counter = counter

    # ---- from the agent's pages ---------------------------------------------------------------------

    def start(self, db: Session, current: StaffCurrent, citizen_id: uuid.UUID) -> tuple[str, AssistedSession]:
        """A new assisted session for the citizen (``NoMandate`` without an active mandate of the
        agent's service, whatever its procedures); the cookie's value and the row. The agent's other
        assisted sessions of this staff session end: one browser acts for one person at a time."""
        citizen = self.counter.citizen(db, citizen_id)
        mandate = self.counter.require_mandate(db, current.staff, citizen.id, None)
        for other in self._live_of(db, current.staff_session.id):
            self._end(db, other, reason="replaced")
        now = utcnow()
        staff_end = current.staff_session.created_at + timedelta(hours=self.settings.session_absolute_hours)
        token, digest = new_token()
        row = AssistedSession(id=digest, staff_session_id=current.staff_session.id, agent_id=current.staff.id,
                              citizen_id=citizen.id, mandate_id=mandate.id, created_at=now,
                              expires_at=min(now + ASSIST_LIFETIME, staff_end))
        db.add(row)
        self.counter.record(db, mandate=mandate, agent=current.staff, action="session.started",
                            details={"until": row.expires_at.isoformat()})
        logger.info("assisted session started", extra={"staff_id": str(current.staff.id)})
        return token, row

    def current(self, db: Session, token: str | None, current: StaffCurrent,
                citizen_id: uuid.UUID) -> AssistedSession | None:
        """This browser's live assisted session for the citizen, opened by this staff session."""
        row = self._row(db, token)
        if (row is None or row.staff_session_id != current.staff_session.id or row.citizen_id != citizen_id
                or self._over(db, row) is not None):
            return None
        return row

    def end(self, db: Session, token: str | None, current: StaffCurrent) -> AssistedSession | None:
        """The agent ends this browser's assisted session (journal: ``session.ended``)."""
        row = self._row(db, token)
        if row is None or row.staff_session_id != current.staff_session.id or row.ended_at is not None:
            return None
        self._end(db, row, reason="agent")
        return row

    def staff_session_ending(self, db: Session, staff_session_id: str) -> None:
        """The agent logs out: the assisted sessions of that staff session end (``vault.gdpr.staff``)."""
        for row in self._live_of(db, staff_session_id):
            self._end(db, row, reason="logout")

    def apps(self, db: Session) -> list[DelegatedApp]:
        """The apps that accept delegated logins, by name."""
        rows = db.exec(select(OAuthClient).where(col(OAuthClient.accept_delegation).is_(True),
                                                 col(OAuthClient.disabled_at).is_(None),
                                                 OAuthClient.profile == "oidc")
                       .order_by(col(OAuthClient.name))).all()
        apps = []
        for client in rows:
            first = urlsplit(client.redirect_uris[0]) if client.redirect_uris else None
            if first is not None and first.scheme in ("https", "http") and first.netloc:
                apps.append(DelegatedApp(name=client.name, url=f"{first.scheme}://{first.netloc}/"))
        return apps

    def purge_ended(self, db: Session, now: datetime) -> int:
        """Retention housekeeping: assisted sessions over for a day (the journal keeps what was done)."""
        day_ago = now - timedelta(days=1)
        return db.exec(delete(AssistedSession).where(or_(col(AssistedSession.ended_at) < day_ago,
                                                         col(AssistedSession.expires_at) < day_ago))).rowcount

    # ---- for the OpenID provider (vault.oidc.delegation.Delegations) -------------------------------------

    def resolve(self, db: Session, token: str | None, staff_token: str | None) -> Delegation | None:
        if not token:
            return None
        row = self._row(db, token)
        if row is None:  # ended with the agent's staff session (logout), or never ours: nothing to audit
            logger.warning("unknown assisted session cookie", extra={"where": "authorize"})
            raise DelegationEnded()
        if (reason := self._over(db, row)) is not None:
            if row.ended_at is None:  # the journal and the audit chain say it once, when it ends
                self._end(db, row, reason=reason)
            else:
                logger.info("assisted session over", extra={"staff_id": str(row.agent_id), "where": "authorize"})
            raise DelegationEnded()
        confirmed = False
        if staff_token is not None:
            # Shown by this browser, the staff session must be the one that opened the assisted session.
            if self._row_staff_session(db, staff_token) != row.staff_session_id:
                logger.warning("assisted session cookie with another staff session",
                               extra={"staff_id": str(row.agent_id), "where": "authorize"})
                raise DelegationEnded()
            confirmed = True
        citizen = db.get(Citizen, row.citizen_id)
        mandate = db.get(Mandate, row.mandate_id)
        staff_session = db.get(StaffSession, row.staff_session_id)
        assert citizen is not None and mandate is not None and staff_session is not None  # checked by _over
        return Delegation(session_id=row.id, citizen_id=citizen.id,
                          citizen_name=f"{citizen.given_name} {citizen.family_name}", agent_id=row.agent_id,
                          service=mandate.service, auth_time=staff_session.created_at, confirmed=confirmed)

    def app_login(self, db: Session, delegation: Delegation, *, client_id: str, client_name: str) -> None:
        _row, mandate, agent = self._parts(db, delegation)
        self.counter.record(db, mandate=mandate, agent=agent, action="app.login",
                            details={"app": client_name, "client_id": client_id})

    def app_refused(self, db: Session, delegation: Delegation, *, client_id: str, client_name: str) -> None:
        row, _mandate, _agent = self._parts(db, delegation)
        audit.record(db, actor=f"staff:{row.agent_id}", action="counter.app.refused",
                     target=f"subject:{self.counter.gdpr.subject(db, row.citizen_id)}",
                     details={"app": client_name, "client_id": client_id, "reason": "no_delegation"})

    # ---- inside ---------------------------------------------------------------------------------------

    @staticmethod
    def _row(db: Session, token: str | None) -> AssistedSession | None:
        return db.get(AssistedSession, token_hash(token)) if token and len(token) <= 200 else None

    @staticmethod
    def _row_staff_session(db: Session, staff_token: str) -> str | None:
        """The id of the staff session behind a staff cookie's value (its SHA-256), if it exists."""
        if not staff_token or len(staff_token) > 200:
            return None
        staff_session = db.get(StaffSession, token_hash(staff_token))
        return staff_session.id if staff_session is not None else None

    @staticmethod
    def _live_of(db: Session, staff_session_id: str) -> list[AssistedSession]:
        return list(db.exec(select(AssistedSession).where(AssistedSession.staff_session_id == staff_session_id,
                                                          col(AssistedSession.ended_at).is_(None))).all())

    def _over(self, db: Session, row: AssistedSession) -> str | None:
        """Why the session is over (``ended``, ``expired``, ``mandate_ended``, ``staff_session_ended``), or None."""
        now = utcnow()
        if row.ended_at is not None:
            return "ended"
        if row.expires_at <= now:
            return "expired"
        mandate = db.get(Mandate, row.mandate_id)
        if mandate is None or not is_active(mandate, now):
            return "mandate_ended"
        staff_session = db.get(StaffSession, row.staff_session_id)
        agent = db.get(StaffAccount, row.agent_id)
        settings = self.settings
        if (staff_session is None or agent is None or agent.disabled_at is not None or agent.role != "agent"
                or agent.service != mandate.service or staff_session.staff_id != agent.id
                or now - staff_session.last_seen_at > timedelta(minutes=settings.session_idle_minutes)
                or now - staff_session.created_at > timedelta(hours=settings.session_absolute_hours)):
            return "staff_session_ended"
        if db.get(Citizen, row.citizen_id) is None:
            return "citizen_gone"
        return None

    def _end(self, db: Session, row: AssistedSession, *, reason: str) -> None:
        self.counter.end_assisted(db, row, reason=reason)

    @staticmethod
    def _parts(db: Session, delegation: Delegation) -> tuple[AssistedSession, Mandate, StaffAccount]:
        row = db.get(AssistedSession, delegation.session_id)
        assert row is not None  # resolved in this request
        mandate, agent = db.get(Mandate, row.mandate_id), db.get(StaffAccount, row.agent_id)
        assert mandate is not None and agent is not None
        return row, mandate, agent
