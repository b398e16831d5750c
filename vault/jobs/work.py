"""The jobs' work: plain functions of the services, each returning what it did (JSON-able).

Each may run twice (a worker killed mid-job: the queue runs the job again) and in two workers at
once; what makes it safe is in the database, never in the job:

- ``send_mail``: ``deliver_due`` claims each message (an advisory lock of the sender's connection
  on PostgreSQL, ended with it; a claim time on SQLite), marks it sent after the server took it (at
  least once; a duplicate keeps its Message-ID);
- ``finish_erasures``: each unfinished tombstone is taken ``FOR UPDATE SKIP LOCKED`` and held until
  its certificate is committed; deleting objects twice deletes nothing more;
- ``validity_alerts``: the record of an alert is inserted before its mail, in the same transaction;
- ``retention``: each notice is recorded with its mail, each deletion and erasure is staged as above.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import date, timedelta
from typing import Any

from procrastinate import sql as procrastinate_sql
from sqlalchemy import event
from sqlmodel import Session

from vault.db import utcnow
from vault.gdpr import retention as gdpr_retention
from vault.gdpr.retention import RetentionReport
from vault.mail import deliver_due, on_mail_committed, purge_sent
from vault.services import Services
from vault.settings import Settings

logger = logging.getLogger(__name__)


def send_mail(services: Services) -> dict[str, Any]:
    """Deliver the mail outbox (retries and giving up as ``vault.mail`` says), then purge the mail
    delivered more than ``VAULT_MAIL_RETENTION_DAYS`` ago."""
    settings = services.settings
    report = deliver_due(services.engine, services.mail_transport,
                         give_up_after=timedelta(hours=settings.mail_give_up_hours))
    with Session(services.engine) as db:
        purged = purge_sent(db, before=utcnow() - timedelta(days=settings.mail_retention_days))
        db.commit()
    return {**asdict(report), "purged": purged}


def retention(services: Services, *, dry_run: bool = False, today: date | None = None) -> RetentionReport:
    """The daily retention (``vault.gdpr.retention``), the counter's ended assisted sessions, and the
    queue's jobs failed for good more than ``VAULT_JOBS_FAILED_RETENTION_DAYS`` ago."""
    with Session(services.engine) as db:
        report = gdpr_retention.run(db, gdpr=services.gdpr, mailer=services.mailer, dry_run=dry_run, today=today)
        if not dry_run:  # the counter's assisted sessions (a floor above the GDPR tooling)
            report.housekeeping["assisted_sessions"] = services.assist.purge_ended(db, utcnow())
            report.housekeeping["failed_jobs"] = purge_failed_jobs(
                db, older_than=timedelta(days=services.settings.jobs_failed_retention_days))
        db.commit()
    return report


def purge_failed_jobs(db: Session, *, older_than: timedelta) -> int:
    """Delete the queue's jobs that ended failed (or cancelled, or aborted) more than ``older_than``
    ago, with procrastinate's own statement (its events date the end); how many. Successful jobs are
    deleted as they end. Nothing on SQLite (no queue)."""
    connection = db.connection()
    if connection.dialect.name != "postgresql":
        return 0
    return connection.exec_driver_sql(procrastinate_sql.queries["delete_old_jobs"], {
        "nb_hours": max(1, int(older_than.total_seconds() // 3600)), "queue": None,
        "statuses": ["failed", "cancelled", "aborted"]}).rowcount


def validity_alerts(services: Services) -> dict[str, Any]:
    """"Your document ends soon" mails now due (30 and 7 days before a validity date)."""
    with Session(services.engine) as db:
        sent = gdpr_retention.validity_alerts(db, gdpr=services.gdpr)
    return {"validity_alerts": len(sent)}


def finish_erasures(services: Services) -> dict[str, Any]:
    """Every erasure whose objects and certificate are left to do: staged by the register for a large
    vault, or cut short by the object store (``BlobStoreUnavailable`` fails the job: retried)."""
    finished = 0
    while True:
        with Session(services.engine) as db:
            if services.gdpr.finish_pending(db) is None:
                return {"erasures_finished": finished}
        finished += 1


def retention_job(services: Services) -> dict[str, Any]:
    report = retention(services)
    return {"documents_deleted": len(report.documents_deleted), "accounts_erased": len(report.accounts_erased),
            "validity_alerts": len(report.validity_alerts)}


WORK = {"send_mail": send_mail, "finish_erasures": finish_erasures, "validity_alerts": validity_alerts,
        "retention": retention_job}

# When each job runs on its own (cron, UTC). Mail and erasures are also deferred after the commit that
# needs them: their passes here catch what a lost deferral (a crash right after the commit) or a
# failed job left.
SCHEDULES = {"send_mail": "* * * * *", "finish_erasures": "*/5 * * * *", "validity_alerts": "0 * * * *"}


def schedules(settings: Settings) -> dict[str, str]:
    """Each job's cron (UTC); retention's is ``VAULT_RETENTION_SCHEDULE``."""
    return SCHEDULES | {"retention": settings.retention_schedule}


# ---- "run sooner": after a commit that staged work ---------------------------------------------------

_listeners: list[Callable[[str], None]] = []


def on_work_committed(listener: Callable[[str], None]) -> Callable[[], None]:
    """Call ``listener(job name)`` after each commit that queued mail or staged an erasure (it must
    not raise, nor take long); returns what removes it."""
    _listeners.append(listener)
    forget_mail = on_mail_committed(lambda: listener("send_mail"))

    def remove() -> None:
        forget_mail()
        if listener in _listeners:
            _listeners.remove(listener)
    return remove


@event.listens_for(Session, "after_commit")
def _erasure_committed(db: Session) -> None:
    if db.info.pop("erasure_pending", False):
        for listener in list(_listeners):
            listener("finish_erasures")
