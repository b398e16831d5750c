"""Retention (GDPR Art. 5(1)(e)): daily, a periodic job of the queue (``vault.jobs``;
``VAULT_RETENTION_SCHEDULE``), or ``vault retention run`` by hand.

- A document whose validity date is 30, then 7 days away: an alert mail each time (once per
  threshold and date; a date pushed back brings its own), unless the citizen turned that alert off.
- A document whose validity date has passed: a notice mail, then deletion 30 days later (unless
  its date was extended meanwhile, or it is under legal hold).
- An account unused for ``VAULT_RETENTION_INACTIVE_YEARS`` (default 3): a notice mail 30 days
  before, then erasure (as Art. 17, with a certificate) if the citizen did not come back.
- The audit log keeps ``VAULT_AUDIT_RETENTION_DAYS`` (default 365) days, rolling.
- Housekeeping: expired authorization requests, codes, tokens, used client assertions, mailed links,
  login counters, and share links ended (expired, revoked, locked) more than 30 days ago.

It runs in named stages; each asks the domain that owns the rows (accounts, the OpenID provider,
the documents) to find, mark or delete them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlmodel import Session

from vault.alerts.service import VALIDITY_THRESHOLDS
from vault.db import utcnow
from vault.gdpr import audit
from vault.gdpr.service import GdprService, Staff
from vault.mail import MailQueue, purge_sent
from vault.web.mails import send_mail

logger = logging.getLogger(__name__)

NOTICE = timedelta(days=30)
SYSTEM = Staff(actor="system:retention", label="conservation automatique")


@dataclass
class RetentionReport:
    validity_alerts: list[str] = field(default_factory=list)  # "<document id>:<days>"
    documents_noticed: list[str] = field(default_factory=list)
    documents_deleted: list[str] = field(default_factory=list)
    accounts_noticed: list[str] = field(default_factory=list)
    accounts_erased: list[str] = field(default_factory=list)
    audit_entries_purged: int = 0
    housekeeping: dict[str, int] = field(default_factory=dict)


def run(db: Session, *, gdpr: GdprService, mailer: MailQueue, dry_run: bool = False,
        today: date | None = None) -> RetentionReport:
    """One retention run; ``dry_run`` lists what would be done and changes nothing."""
    report = RetentionReport()
    today = today or gdpr.settings.today()
    now = utcnow()
    _validity_alerts(db, gdpr=gdpr, dry_run=dry_run, today=today, report=report)
    _expired_documents(db, gdpr=gdpr, mailer=mailer, dry_run=dry_run, today=today, now=now, report=report)
    _unused_accounts(db, gdpr=gdpr, mailer=mailer, dry_run=dry_run, today=today, now=now, report=report)
    if not dry_run:
        report.audit_entries_purged = audit.purge_older_than(db, timedelta(days=gdpr.settings.audit_retention_days))
        report.housekeeping = (gdpr.oidc.purge_expired(db=db, now=now)
                               | gdpr.accounts.purge_expired(db=db, now=now)
                               | gdpr.alerts.purge_expired(db, today=today)
                               | {"share_links": gdpr.shares.purge_ended(db, now),
                                  "delivered_mail": purge_sent(
                                      db, before=now - timedelta(days=gdpr.settings.mail_retention_days))})
        db.commit()
    logger.info("retention run", extra={"dry_run": dry_run, "documents_deleted": len(report.documents_deleted),
                                        "accounts_erased": len(report.accounts_erased)})
    return report


def validity_alerts(db: Session, *, gdpr: GdprService, today: date | None = None) -> list[str]:
    """The validity alerts alone (the job queue runs them more often than the daily retention):
    "<document id>:<days>" of each mail queued; committed. Safe to run twice, or in two workers at
    once: each alert is mailed once per document, threshold and date."""
    report = RetentionReport()
    _validity_alerts(db, gdpr=gdpr, dry_run=False, today=today or gdpr.settings.today(), report=report)
    db.commit()
    return report.validity_alerts


def _validity_alerts(db: Session, *, gdpr: GdprService, dry_run: bool, today: date,
                     report: RetentionReport) -> None:
    """"Your document is valid until …" 30 days, then 7 days before its date; never once it has
    passed (the expiry notice below takes over). The alerts domain remembers what it sent."""
    last = today + timedelta(days=max(VALIDITY_THRESHOLDS))
    for document in gdpr.documents.ending(db, first=today, last=last):
        assert document.owner_id is not None and document.valid_until is not None  # the query's conditions
        if dry_run:
            days = gdpr.alerts.validity_due(db, document_id=document.id, valid_until=document.valid_until, today=today)
        else:
            days = gdpr.alerts.validity_ending(db, citizen_id=document.owner_id, document_id=document.id,
                                               title=document.title, valid_until=document.valid_until, today=today)
        if days is not None:
            report.validity_alerts.append(f"{document.id}:{days}")


def _expired_documents(db: Session, *, gdpr: GdprService, mailer: MailQueue, dry_run: bool, today: date,
                       now: datetime, report: RetentionReport) -> None:
    """A notice mail when a document's validity has passed, its deletion 30 days later."""
    settings, documents = gdpr.settings, gdpr.documents
    for document in documents.expired(db, today):
        citizen = gdpr.accounts.get_citizen(db=db, citizen_id=document.owner_id)
        if document.retention_notice_at is None:
            report.documents_noticed.append(str(document.id))
            if not dry_run and citizen is not None and citizen.email:
                send_mail(mailer, settings, db=db, to=citizen.email, template="document_expired", citizen_id=citizen.id,
                          document=document, deletion_date=today + NOTICE)
                documents.notice_sent(document, at=now)
        elif now - document.retention_notice_at >= NOTICE:
            report.documents_deleted.append(str(document.id))
            if not dry_run:
                blob_key = documents.remove(db, document)
                db.commit()  # the row first: a row never points to a missing object
                documents.delete_blob_later(blob_key)
                audit.record(db, actor=SYSTEM.actor, action="retention.document_deleted",
                             target=f"subject:{gdpr.subject(db, citizen.id)}" if citizen else "")
    if not dry_run:
        documents.forget_renewed_notices(db, today)


def _unused_accounts(db: Session, *, gdpr: GdprService, mailer: MailQueue, dry_run: bool, today: date,
                     now: datetime, report: RetentionReport) -> None:
    """A notice mail 30 days before an unused account's erasure, then the erasure (with its
    certificate) if the citizen did not come back."""
    settings, accounts = gdpr.settings, gdpr.accounts
    years = settings.retention_inactive_years
    horizon = now - timedelta(days=365 * years)
    for citizen in accounts.unused_accounts(db=db, inactive_before=horizon + NOTICE):
        last = citizen.last_login_at or citizen.created_at
        if citizen.retention_notice_at is None or citizen.retention_notice_at < last:
            report.accounts_noticed.append(str(citizen.id))
            if not dry_run:
                deletion_date = max(today + NOTICE, (last + timedelta(days=365 * years)).date())
                if citizen.email:  # an account opened at the counter without an address: no notice to send
                    send_mail(mailer, settings, db=db, to=citizen.email, template="account_unused",
                              citizen_id=citizen.id, last_activity=last, deletion_date=deletion_date)
                accounts.notice_sent(citizen, at=now)
        elif last < horizon and now - citizen.retention_notice_at >= NOTICE:
            report.accounts_erased.append(str(citizen.id))
            if not dry_run:
                db.commit()
                gdpr.erase(db, citizen_id=citizen.id, by=SYSTEM, reason=f"compte inutilisé depuis plus de {years} ans")
