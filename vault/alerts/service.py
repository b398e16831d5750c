"""Alert mails to the citizen, and their switches. No HTTP here.

Four kinds (``models.KINDS``): an app may now read documents the citizen chose (consent), an app
deposited a document, a share link was opened for the first time, a document's validity date is 30
then 7 days away (the daily retention run). Each kind is on until the citizen turns it off in "Mon
compte" or with the one-click link every alert mail carries (RFC 8058). That link holds a keyed
HMAC of (citizen, kind) under a service secret used for nothing else (decision 0009): it can turn
off that one kind of that one citizen and do nothing more.

Mail leaves during the request (a job queue comes later). A mail that cannot be sent never fails
what the citizen or the app was doing: it is logged (kind and error class only) and dropped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from vault.alerts.exceptions import InvalidUnsubscribeLink, UnknownSubscriber
from vault.alerts.models import KINDS, AlertSwitch, ValidityAlert
from vault.auth.models import Citizen
from vault.db import utcnow
from vault.mail import MailQueue, compose
from vault.settings import Settings
from vault.web.mails import render_mail

logger = logging.getLogger(__name__)

KEY_NAME = "alerts-unsubscribe"  # the service secret keying the links; it keys nothing else
LINK_VERSION = "v1"
MAX_TOKEN = 200
# "Your document ends soon": this many days before its validity date, the nearest threshold first.
VALIDITY_THRESHOLDS = (7, 30)
UNSUBSCRIBE_PATH = "/alerts/unsubscribe"


class Secrets(Protocol):
    """Where the service secrets live (``oidc.keys.KeyStore``, a floor above, supplied by the
    composition root): a random 256-bit secret per name, created on first use."""

    def secret(self, db: Session, name: str) -> bytes: ...


@dataclass(frozen=True)
class Switch:
    """One kind of alert mail as "Mon compte" shows it."""

    kind: str
    label: str  # French; translated when shown
    on: bool


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class AlertService:
    """Alert mails and the citizen's switches. Owns ``alert_switch`` and ``validity_alert``."""

    def __init__(self, *, settings: Settings, mailer: MailQueue, secrets: Secrets) -> None:
        self.settings = settings
        self.mailer = mailer
        self.secrets = secrets

    # ---- switches ---------------------------------------------------------------------------------

    def _off(self, db: Session, citizen_id: uuid.UUID) -> set[str]:
        return set(db.exec(select(AlertSwitch.kind).where(AlertSwitch.citizen_id == citizen_id,
                                                          col(AlertSwitch.enabled).is_(False))))

    def switches(self, *, db: Session, citizen_id: uuid.UUID) -> list[Switch]:
        """Every kind, in "Mon compte"'s order, with whether it is on."""
        off = self._off(db, citizen_id)
        return [Switch(kind=kind, label=label, on=kind not in off) for kind, label in KINDS.items()]

    def is_on(self, db: Session, *, citizen_id: uuid.UUID, kind: str) -> bool:
        row = db.get(AlertSwitch, (citizen_id, kind))
        return row is None or row.enabled

    def set_switches(self, *, db: Session, citizen_id: uuid.UUID, on: Collection[str]) -> None:
        """The form of "Mon compte": the kinds in ``on`` are on, every other kind off."""
        for kind in KINDS:
            self._set(db, citizen_id=citizen_id, kind=kind, enabled=kind in on)
        logger.info("alert switches saved", extra={"citizen_id": str(citizen_id), "off": sorted(set(KINDS) - set(on))})

    def _set(self, db: Session, *, citizen_id: uuid.UUID, kind: str, enabled: bool) -> None:
        # An upsert: two clicks at once (a mail client's one-click POST and the citizen) never collide.
        insert = postgresql_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
        now = utcnow()
        statement = insert(AlertSwitch).values(citizen_id=citizen_id, kind=kind, enabled=enabled, updated_at=now)
        db.exec(statement.on_conflict_do_update(index_elements=["citizen_id", "kind"],
                                                set_={"enabled": enabled, "updated_at": now}))
        db.expire_all()  # a row read earlier in this unit of work shows the new value

    # ---- one-click unsubscribe (RFC 8058) ------------------------------------------------------------

    def _mac(self, db: Session, citizen_id: uuid.UUID, kind: str) -> bytes:
        key = self.secrets.secret(db, KEY_NAME)
        message = b"\x00".join([b"alerts-unsubscribe", LINK_VERSION.encode(), citizen_id.bytes, kind.encode()])
        return hmac.new(key, message, hashlib.sha256).digest()

    def unsubscribe_token(self, db: Session, *, citizen_id: uuid.UUID, kind: str) -> str:
        """The token of the link that turns ``kind`` off for this citizen (the same in every mail)."""
        if kind not in KINDS:
            raise ValueError(f"unknown alert kind {kind}")
        return f"{LINK_VERSION}.{citizen_id.hex}.{kind}.{_b64(self._mac(db, citizen_id, kind))}"

    def unsubscribe_url(self, db: Session, *, citizen_id: uuid.UUID, kind: str) -> str:
        token = self.unsubscribe_token(db, citizen_id=citizen_id, kind=kind)
        return f"{self.settings.issuer}{UNSUBSCRIBE_PATH}?token={quote(token)}"

    def check_unsubscribe(self, *, db: Session, token: str) -> Switch:
        """What the link would turn off (for the page that asks for the click); InvalidUnsubscribeLink
        for a token we did not make, UnknownSubscriber when its account is gone. Changes nothing."""
        parts = token.split(".") if token and len(token) <= MAX_TOKEN else []
        if len(parts) != 4 or parts[0] != LINK_VERSION or parts[2] not in KINDS:
            raise InvalidUnsubscribeLink()
        try:
            citizen_id = uuid.UUID(hex=parts[1])
        except ValueError:
            raise InvalidUnsubscribeLink() from None
        kind = parts[2]
        if not hmac.compare_digest(parts[3].encode(), _b64(self._mac(db, citizen_id, kind)).encode()):
            raise InvalidUnsubscribeLink()
        if db.get(Citizen, citizen_id) is None:
            raise UnknownSubscriber()
        return Switch(kind=kind, label=KINDS[kind], on=self.is_on(db, citizen_id=citizen_id, kind=kind))

    def unsubscribe(self, *, db: Session, token: str) -> Switch:
        """The one-click POST: that kind, for that citizen, off; nothing else changes."""
        switch = self.check_unsubscribe(db=db, token=token)
        citizen_id = uuid.UUID(hex=token.split(".")[1])
        self._set(db, citizen_id=citizen_id, kind=switch.kind, enabled=False)
        logger.info("alert unsubscribed", extra={"citizen_id": str(citizen_id), "kind": switch.kind})
        return Switch(kind=switch.kind, label=switch.label, on=False)

    # ---- the alerts ----------------------------------------------------------------------------------

    def _send(self, db: Session, *, citizen_id: uuid.UUID, kind: str, template: str, **context: object) -> bool:
        """Queue one alert mail if its kind is on; whether it was. Never raises for the mail itself."""
        if not self.is_on(db, citizen_id=citizen_id, kind=kind):
            return False
        citizen = db.get(Citizen, citizen_id)
        if citizen is None or citizen.email is None:  # no address: an account opened at the counter
            return False
        url = self.unsubscribe_url(db, citizen_id=citizen_id, kind=kind)
        try:
            subject, body = render_mail(template, {"settings": self.settings, "kind_label": KINDS[kind],
                                                   "unsubscribe_url": url, **context})
            self.mailer.send(compose(self.settings, to=citizen.email, subject=subject, body=body, headers={
                "List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}),
                db=db, kind=template, citizen_id=citizen_id)
        except Exception as exc:  # noqa: BLE001  (a template that fails: the grant or deposit goes on)
            logger.warning("alert mail not sent", extra={"kind": kind, "citizen_id": str(citizen_id),
                                                         "error": type(exc).__name__})
            return False
        return True

    def documents_granted(self, db: Session, *, citizen_id: uuid.UUID, app_name: str, titles: Sequence[str]) -> bool:
        """The citizen allowed an app to read the documents ``titles`` (consent with documents chosen)."""
        if not titles:
            return False
        return self._send(db, citizen_id=citizen_id, kind="grants", template="alert_documents_granted",
                          app_name=app_name, titles=list(titles))

    def document_deposited(self, db: Session, *, citizen_id: uuid.UUID, app_name: str, document_id: uuid.UUID,
                           title: str) -> bool:
        """An app put a document into the citizen's vault."""
        return self._send(db, citizen_id=citizen_id, kind="deposits", template="alert_document_deposited",
                          app_name=app_name, document_id=document_id, title=title)

    def share_link_opened(self, db: Session, *, citizen_id: uuid.UUID, label: str | None, opened_at: datetime,
                          documents: list[str]) -> bool:
        """One of the citizen's share links was opened for the first time (``documents``: their titles)."""
        local = opened_at.astimezone(ZoneInfo(self.settings.timezone))
        return self._send(db, citizen_id=citizen_id, kind="share_opened", template="alert_share_link_opened",
                          label=label, opened_at=local, titles=documents)

    def validity_due(self, db: Session, *, document_id: uuid.UUID, valid_until: date, today: date) -> int | None:
        """The threshold (30 or 7 days) whose mail is due for this document and date, if any: the
        nearest one the date is within, unless already sent for this date. None once expired."""
        left = (valid_until - today).days
        if left < 0:
            return None  # expired: retention's own notice
        days = next((d for d in VALIDITY_THRESHOLDS if left <= d), None)
        if days is None or db.get(ValidityAlert, (document_id, days, valid_until)) is not None:
            return None
        return days

    def validity_ending(self, db: Session, *, citizen_id: uuid.UUID, document_id: uuid.UUID, title: str,
                        valid_until: date, today: date) -> int | None:
        """Mail "this document ends on …" when a threshold is due (once per document, threshold and
        date, remembered only once the mail left: a failed one is tried again the next day); the
        threshold mailed, or None."""
        days = self.validity_due(db, document_id=document_id, valid_until=valid_until, today=today)
        if days is None:
            return None
        # The record first, in a savepoint: of two runs at once (two workers, a job run again), the
        # second waits on the first's row and inserts nothing, so it mails nothing.
        insert = postgresql_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
        savepoint = db.begin_nested()
        taken = db.exec(insert(ValidityAlert).values(document_id=document_id, days=days, valid_until=valid_until,
                                                     citizen_id=citizen_id, sent_at=utcnow())
                        .on_conflict_do_nothing().returning(col(ValidityAlert.document_id))).first()
        if taken is None or not self._send(
                db, citizen_id=citizen_id, kind="validity", template="alert_validity_ending", document_id=document_id,
                title=title, valid_until=valid_until, days_left=(valid_until - today).days):
            savepoint.rollback()
            return None
        savepoint.commit()
        return days

    # ---- export, erasure and housekeeping (driven by vault.gdpr) ---------------------------------------

    def export(self, db: Session, *, citizen_id: uuid.UUID) -> dict[str, bool]:
        """The switches, kind → on (GDPR export)."""
        return {s.kind: s.on for s in self.switches(db=db, citizen_id=citizen_id)}

    def forget(self, db: Session, *, citizen_id: uuid.UUID) -> int:
        """Erasure: the citizen's switches and the record of validity alerts sent; how many rows."""
        return sum(db.exec(delete(table).where(col(table.citizen_id) == citizen_id)).rowcount
                   for table in (AlertSwitch, ValidityAlert))

    def purge_expired(self, db: Session, *, today: date) -> dict[str, int]:
        """Retention housekeeping: validity alerts of dates now past (never mailed again anyway)."""
        return {"validity_alerts": db.exec(delete(ValidityAlert).where(col(ValidityAlert.valid_until) < today)).rowcount}
