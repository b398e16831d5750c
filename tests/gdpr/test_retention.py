"""Retention: a notice first, deletion 30 days later; unused accounts erased; dry runs change nothing."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import update
from sqlmodel import Session, select

from tests.factories import make_citizen, make_document
from tests.support import Browser, Outbox, verified_citizen
from vault.auth.models import Citizen
from vault.db import utcnow
from vault.gdpr import retention
from vault.gdpr.models import Tombstone
from vault.mail import make_mailer
from vault.storage.models import Document


def run(app, engine, **kw):
    with Session(engine) as db:
        report = retention.run(db, gdpr=app.state.services.gdpr, mailer=make_mailer(app.state.settings), **kw)
        db.commit()
        return report


def test_expired_document_is_noticed_then_deleted(app, engine, outbox: Outbox) -> None:
    with Browser(app) as browser:
        # Through the pages: the dry run's check below reads the last mail (the registration's).
        verified_citizen(browser, outbox, "old@example.org")
        browser.login("old@example.org")
        yesterday = (date.today() - timedelta(days=1)).isoformat()
        doc = make_document(browser, valid_until=yesterday)
        keep = make_document(browser, valid_until=(date.today() + timedelta(days=90)).isoformat())

    dry = run(app, engine, dry_run=True)
    assert dry.documents_noticed == [doc["id"]] and outbox.to("old@example.org")[-1].subject != "Un de vos justificatifs a expiré"
    first = run(app, engine)
    assert first.documents_noticed == [doc["id"]] and first.documents_deleted == []
    mail = outbox.last("old@example.org")
    assert mail.subject == "Un de vos justificatifs a expiré" and "sera supprimé" in mail.body
    assert run(app, engine).documents_deleted == []  # 30 days have not passed
    with Session(engine) as db:
        db.exec(update(Document).where(Document.retention_notice_at.is_not(None))
                     .values(retention_notice_at=utcnow() - timedelta(days=31)))
        db.commit()
    assert run(app, engine).documents_deleted == [doc["id"]]
    with Session(engine) as db:
        assert [str(d.id) for d in db.exec(select(Document))] == [keep["id"]]


def test_unused_account_is_noticed_then_erased(app, engine, outbox: Outbox) -> None:
    make_citizen(app, email="gone@example.org")
    with Session(engine) as db:
        db.exec(update(Citizen).values(created_at=utcnow() - timedelta(days=3 * 365 + 1)))
        db.commit()
        citizen_id = db.exec(select(Citizen.id)).one()
    report = run(app, engine)
    assert report.accounts_noticed == [str(citizen_id)] and report.accounts_erased == []
    assert "va être supprimé" in outbox.last("gone@example.org").subject
    with Session(engine) as db:
        db.exec(update(Citizen).values(retention_notice_at=utcnow() - timedelta(days=31)))
        db.commit()
    assert run(app, engine).accounts_erased == [str(citizen_id)]
    with Session(engine) as db:
        assert db.get(Citizen, citizen_id) is None
        assert db.get(Tombstone, app.state.services.gdpr.subject(db, citizen_id)).certificate


def test_coming_back_keeps_the_account(app, engine) -> None:
    make_citizen(app, email="back@example.org")
    with Session(engine) as db:
        db.exec(update(Citizen).values(created_at=utcnow() - timedelta(days=3 * 365 + 1)))
        db.commit()
    assert run(app, engine).accounts_noticed
    with Session(engine) as db:
        db.exec(update(Citizen).values(retention_notice_at=utcnow() - timedelta(days=31)))
        db.commit()
    with Browser(app) as browser:
        browser.login("back@example.org")  # the citizen logs in after the notice
    report = run(app, engine)
    assert report.accounts_erased == [] and report.accounts_noticed == []
