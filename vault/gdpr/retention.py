"""Retention (DESIGN.md §5; GDPR Art. 5(1)(e)): ``vault retention run`` from a daily scheduler.

- A document whose validity date has passed: a notice mail, then deletion 30 days later (unless
  its date was extended meanwhile, or it is under legal hold).
- An account unused for ``VAULT_RETENTION_INACTIVE_YEARS`` (default 3): a notice mail 30 days
  before, then erasure (as Art. 17, with a certificate) if the citizen did not come back.
- The audit log keeps ``VAULT_AUDIT_RETENTION_DAYS`` (default 365) days, rolling.
- Housekeeping: expired authorization requests, codes, tokens, mailed links, login counters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import delete, func, or_
from sqlmodel import Session, select

from vault.auth.models import Citizen, EmailToken, LoginThrottle
from vault.db import utcnow
from vault.gdpr import audit
from vault.gdpr.service import GdprService, Staff
from vault.mail import Mailer, compose
from vault.oidc.models import AuthorizationCode, OAuthToken, PendingAuthorization
from vault.storage.models import Document
from vault.web.mails import render_mail

logger = logging.getLogger(__name__)

NOTICE = timedelta(days=30)
SYSTEM = Staff(actor="system:retention", label="conservation automatique")


@dataclass
class RetentionReport:
    documents_noticed: list[str] = field(default_factory=list)
    documents_deleted: list[str] = field(default_factory=list)
    accounts_noticed: list[str] = field(default_factory=list)
    accounts_erased: list[str] = field(default_factory=list)
    audit_entries_purged: int = 0
    housekeeping: dict[str, int] = field(default_factory=dict)


def run(db: Session, *, gdpr: GdprService, mailer: Mailer, dry_run: bool = False,
        today: date | None = None) -> RetentionReport:
    settings = gdpr.settings
    today = today or gdpr.settings.today()
    now = utcnow()
    report = RetentionReport()

    # ---- expired documents ----------------------------------------------------------------------
    expired = db.exec(select(Document).where(Document.valid_until < today, Document.legal_hold.is_(None),  # type: ignore[union-attr,operator]
                                             Document.owner_id.is_not(None))).all()  # type: ignore[union-attr]
    for document in expired:
        citizen = db.get(Citizen, document.owner_id)
        if document.retention_notice_at is None:
            report.documents_noticed.append(str(document.id))
            if not dry_run and citizen is not None:
                subject, body = render_mail("document_expired", {"settings": settings, "document": document,
                                                                 "deletion_date": today + NOTICE})
                mailer.send(compose(settings, to=citizen.email, subject=subject, body=body))
                document.retention_notice_at = now
        elif now - document.retention_notice_at >= NOTICE:
            report.documents_deleted.append(str(document.id))
            if not dry_run:
                blob_key = document.blob_key
                db.delete(document)
                db.commit()  # the row first: a row never points to a missing object
                gdpr.documents.delete_blob_later(blob_key)
                audit.record(db, actor=SYSTEM.actor, action="retention.document_deleted",
                             target=f"subject:{gdpr.subject(db, citizen.id)}" if citizen else "")
    # A document whose date was pushed back is no longer noticed.
    if not dry_run:
        for document in db.exec(select(Document).where(Document.retention_notice_at.is_not(None),  # type: ignore[union-attr]
                                                       or_(Document.valid_until.is_(None),  # type: ignore[union-attr]
                                                           Document.valid_until >= today))).all():  # type: ignore[operator]
            document.retention_notice_at = None

    # ---- unused accounts ------------------------------------------------------------------------------
    horizon = now - timedelta(days=365 * settings.retention_inactive_years)
    activity = func.coalesce(Citizen.last_login_at, Citizen.created_at)
    for citizen in db.exec(select(Citizen).where(activity < horizon + NOTICE)).all():
        last = citizen.last_login_at or citizen.created_at
        if citizen.retention_notice_at is None or citizen.retention_notice_at < last:
            report.accounts_noticed.append(str(citizen.id))
            if not dry_run:
                deletion_date = max(today + NOTICE, (last + timedelta(days=365 * settings.retention_inactive_years)).date())
                subject, body = render_mail("account_unused", {"settings": settings, "last_activity": last,
                                                               "deletion_date": deletion_date})
                mailer.send(compose(settings, to=citizen.email, subject=subject, body=body))
                citizen.retention_notice_at = now
        elif last < horizon and now - citizen.retention_notice_at >= NOTICE:
            report.accounts_erased.append(str(citizen.id))
            if not dry_run:
                db.commit()
                gdpr.erase(db, citizen_id=citizen.id, by=SYSTEM,
                           reason=f"compte inutilisé depuis plus de {settings.retention_inactive_years} ans")

    # ---- audit log and housekeeping ----------------------------------------------------------------------
    if not dry_run:
        report.audit_entries_purged = audit.purge_older_than(db, timedelta(days=settings.audit_retention_days))
        day_ago = now - timedelta(days=1)
        report.housekeeping = {
            "pending_authorizations": db.exec(delete(PendingAuthorization).where(PendingAuthorization.expires_at < now)).rowcount,  # type: ignore[arg-type]
            "codes": db.exec(delete(AuthorizationCode).where(AuthorizationCode.expires_at < day_ago)).rowcount,  # type: ignore[arg-type]
            "tokens": db.exec(delete(OAuthToken).where(
                OAuthToken.access_expires_at < day_ago,
                or_(OAuthToken.refresh_expires_at.is_(None), OAuthToken.refresh_expires_at < now))).rowcount,  # type: ignore[union-attr,arg-type]
            "mailed_links": db.exec(delete(EmailToken).where(EmailToken.expires_at < day_ago)).rowcount,  # type: ignore[arg-type]
            "login_counters": db.exec(delete(LoginThrottle).where(LoginThrottle.last_failure_at < day_ago)).rowcount,  # type: ignore[arg-type]
        }
        db.commit()
    logger.info("retention run", extra={"dry_run": dry_run, "documents_deleted": len(report.documents_deleted),
                                        "accounts_erased": len(report.accounts_erased)})
    return report
