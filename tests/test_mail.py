"""Mail goes through the outbox: queued in the transaction of the change that causes it, delivered
afterwards by a sender (SMTP when VAULT_SMTP_URL is set; a local aiosmtpd server captures it), with
retries while the server is away, never lost and never sent twice by two senders."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr
from sqlmodel import Session, select

from tests.factories import make_citizen
from tests.services import free_port
from tests.support import Browser
from vault.app import create_app
from vault.auth.models import Citizen
from vault.mail import CLAIM_SECONDS, MailError, OutgoingMail, SmtpMailer, _claim, deliver_due, purge_sent


class Capture:
    def __init__(self, answer: str = "250 OK") -> None:
        self.messages: list = []
        self.answer = answer

    async def handle_DATA(self, server, session, envelope):  # noqa: N802, ARG002  (aiosmtpd's handler hook)
        if self.answer.startswith("250"):
            self.messages.append(message_from_bytes(envelope.content, policy=default))
        return self.answer


class SmtpServer:
    """An SMTP server on a fixed loopback port that can be stopped and started again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.capture = Capture()
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?timeout=3"

    def start(self) -> None:
        self.controller = Controller(self.capture, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp():
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp_down():
    server = SmtpServer(free_port())  # nothing listens until the test starts it
    yield server
    server.stop()


def smtp_app(settings, engine, smtp: SmtpServer, **overrides):
    return create_app(settings.model_copy(update={"smtp_url": SecretStr(smtp.url), **overrides}), engine=engine)


def deliver(app, *, now: datetime | None = None):
    return deliver_due(app.state.engine, app.state.services.mail_transport, now=now)


def queued(engine) -> list[OutgoingMail]:
    with Session(engine) as db:
        return list(db.exec(select(OutgoingMail)))


def test_registration_mail_is_queued_then_goes_through_smtp(settings, engine, smtp) -> None:
    app = smtp_app(settings, engine, smtp, mail_from="Mairie <ne-pas-repondre@ville.example.fr>")
    with Browser(app) as browser:
        assert browser.register("smtp@example.org").status_code == 200
    assert smtp.capture.messages == []  # nothing leaves during the request
    [row] = queued(engine)
    assert row.sent_at is None and row.kind == "verify_email" and row.recipient == "smtp@example.org"
    assert deliver(app).sent == 1
    [message] = smtp.capture.messages
    assert message["To"] == "smtp@example.org"
    assert message["From"] == "Mairie <ne-pas-repondre@ville.example.fr>"
    assert message["Message-ID"] == row.message_id
    assert "/verify-email?token=" in message.get_body(("plain",)).get_content()
    assert deliver(app).sent == 0 and len(smtp.capture.messages) == 1  # delivered once
    assert not settings.outbox_dir.exists()


def test_with_smtp_down_the_answer_is_the_same_and_the_mail_arrives_when_it_is_back(settings, engine, smtp_down,
                                                                                      caplog) -> None:
    app = smtp_app(settings, engine, smtp_down)
    with Browser(app) as browser:
        page = browser.register("down@example.org")
    assert page.status_code == 200 and "Vérifiez votre boîte mail" in page.text
    with Session(engine) as db:  # the account exists: nothing was refused for the mail's sake
        assert db.exec(select(Citizen).where(Citizen.email == "down@example.org")).one()
    with caplog.at_level(logging.INFO, logger="vault.mail"):
        first = deliver(app)
    assert (first.sent, first.retried) == (0, 1)
    [row] = queued(engine)
    assert row.sent_at is None and row.attempts == 1 and row.next_attempt_at > datetime.now(UTC)
    assert deliver(app).retried == 0  # not due yet: the next try waits (30 s, then longer)

    smtp_down.start()
    later = datetime.now(UTC) + timedelta(minutes=2)
    assert deliver(app, now=later).sent == 1
    [message] = smtp_down.capture.messages
    assert message["Message-ID"] == row.message_id
    token = message.get_body(("plain",)).get_content().split("token=")[1].split()[0]
    assert deliver(app, now=later + timedelta(hours=2)).sent == 0 and len(smtp_down.capture.messages) == 1
    # The log says a mail waits and then left, never its address or its link.
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "mail not sent, will retry" in logged
    assert "down@example.org" not in logged and token not in logged


def test_a_mail_the_server_refuses_for_good_is_not_retried(settings, engine, smtp) -> None:
    smtp.capture.answer = "550 5.1.1 no such mailbox"
    app = smtp_app(settings, engine, smtp)
    with Browser(app) as browser:
        assert browser.register("nobody@example.org").status_code == 200
    assert deliver(app).failed == 1
    [row] = queued(engine)
    assert row.failed_at is not None and row.sent_at is None
    assert deliver(app, now=datetime.now(UTC) + timedelta(days=1)).failed == 0


def test_a_sender_that_died_after_sending_resends_once_with_the_same_message_id(settings, engine, smtp) -> None:
    app = smtp_app(settings, engine, smtp)
    with Browser(app) as browser:
        assert browser.register("crash@example.org").status_code == 200
    # A sender claims the mail, hands it over, and dies before marking it sent.
    [claimed] = _claim(engine, now=datetime.now(UTC), limit=10)
    SmtpMailer(smtp.url).send(message_from_bytes(claimed.content, policy=default))  # type: ignore[arg-type]
    assert deliver(app).sent == 0  # still claimed: no other sender takes it meanwhile
    after_claim = datetime.now(UTC) + timedelta(seconds=CLAIM_SECONDS + 1)
    assert deliver(app, now=after_claim).sent == 1
    assert deliver(app, now=after_claim + timedelta(hours=1)).sent == 0
    first, second = smtp.capture.messages
    assert first["Message-ID"] == second["Message-ID"]  # a recognisable duplicate, at worst


def test_on_postgresql_a_killed_sender_leaves_its_mail_to_the_next_pass_at_once(settings, engine, smtp) -> None:
    # A worker killed (SIGKILL) while it sends: its claim ends with its connection, so the mail goes
    # with the next pass, not CLAIM_SECONDS later; while the sender lives, nobody else takes it.
    if engine.dialect.name != "postgresql":
        pytest.skip("claims held by a connection: PostgreSQL (SQLite's run out, test above)")
    app = smtp_app(settings, engine, smtp)
    with Browser(app) as browser:
        assert browser.register("killed@example.org").status_code == 200
    sender = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    [claimed] = _claim(engine, now=datetime.now(UTC), limit=10, holder=sender)
    assert claimed.recipient == "killed@example.org"
    assert deliver(app).sent == 0  # a live sender's claim is honoured
    sender.invalidate()  # the sender's process dies: PostgreSQL sees its connection end
    deadline = time.monotonic() + 10
    sent = 0
    while not sent and time.monotonic() < deadline:  # the server ends the session as soon as it sees the close
        sent = deliver(app).sent
        time.sleep(0.05)
    assert sent == 1 and [m["To"] for m in smtp.capture.messages] == ["killed@example.org"]
    assert deliver(app).sent == 0


def test_two_senders_never_send_one_mail_twice(settings, engine, smtp) -> None:
    app = smtp_app(settings, engine, smtp, mail_requests_free_per_address=100)
    with Browser(app) as browser:
        for n in range(12):
            assert browser.register(f"pair{n}@example.org").status_code == 200

    class Slow:
        def send(self, message) -> None:
            time.sleep(0.05)
            SmtpMailer(smtp.url).send(message)

    reports = []
    threads = [threading.Thread(target=lambda: reports.append(deliver_due(engine, Slow(), limit=3))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.sent for r in reports) == 12
    assert sorted(m["To"] for m in smtp.capture.messages) == sorted(f"pair{n}@example.org" for n in range(12))


def test_the_app_delivers_the_outbox_itself_in_development(settings, engine, smtp) -> None:
    """VAULT_JOBS=app (`make run`): the web process's own jobs thread; `worker`: only `vault worker`."""
    app = smtp_app(settings, engine, smtp, jobs="app", mail_poll_seconds=30)
    with Browser(app) as browser:  # the app's lifespan runs its jobs thread
        assert browser.register("thread@example.org").status_code == 200
        deadline = time.monotonic() + 10
        while not smtp.capture.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        # Woken by the commit, not by its 30 s poll.
        assert [m["To"] for m in smtp.capture.messages] == ["thread@example.org"]


def test_delivered_mail_is_purged_after_the_retention(settings, engine, smtp) -> None:
    app = smtp_app(settings, engine, smtp)
    with Browser(app) as browser:
        assert browser.register("old@example.org").status_code == 200
        assert browser.register("waiting@example.org").status_code == 200
    with Session(engine) as db:
        row = db.exec(select(OutgoingMail).where(OutgoingMail.recipient == "old@example.org")).one()
        row.sent_at = datetime.now(UTC) - timedelta(days=settings.mail_retention_days + 1)
        db.commit()
    with Session(engine) as db:
        assert purge_sent(db, before=datetime.now(UTC) - timedelta(days=settings.mail_retention_days)) == 1
        db.commit()
    assert [r.recipient for r in queued(engine)] == ["waiting@example.org"]  # never a mail still waiting


def test_erasure_forgets_the_citizens_mail_and_the_export_lists_it(settings, engine, smtp) -> None:
    import io
    import json
    import zipfile

    from vault.gdpr.service import Staff

    app = smtp_app(settings, engine, smtp)
    citizen = make_citizen(app, email="gone@example.org")
    other = make_citizen(app, email="stays@example.org")
    with Browser(app) as browser:
        for address in (citizen.email, other.email):
            assert browser.submit("/password/forgot", {"email": address}).status_code == 200
    services = app.state.services
    with Session(engine) as db:
        data = b"".join(services.gdpr.export(db, citizen_id=citizen.id, by=Staff(actor="staff:t", label="DPO")))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        [listed] = json.loads(zf.read("e-mails.json"))
        assert "e-mails.json" in zf.read("LISEZ-MOI.txt").decode()
    assert listed["destinataire"] == "gone@example.org" and listed["etat"] == "en attente"
    with Session(engine) as db:
        services.gdpr.erase(db, citizen_id=citizen.id, reason="demande", by=Staff(actor="staff:t", label="DPO"))
    kinds = sorted((r.recipient, r.kind) for r in queued(engine))
    # The reset link to the erased citizen is gone; the certificate's mail waits; the other stays.
    assert kinds == [("gone@example.org", "erasure_done"), ("stays@example.org", "password_reset")]
    # Once the certificate's mail left, nothing keeps the erased citizen's address; other mail stays a while.
    assert deliver(app).sent == 2
    assert [(r.recipient, r.sent_at is not None) for r in queued(engine)] == [("stays@example.org", True)]
    assert [m["To"] for m in smtp.capture.messages if m["Subject"] == "Vos données ont été effacées"] == [
        "gone@example.org"]


def test_a_transport_error_names_no_address(settings) -> None:
    mailer = SmtpMailer(f"smtp://127.0.0.1:{free_port()}?timeout=1")
    with pytest.raises(MailError) as raised:
        mailer.send(message_from_bytes(b"To: x@example.org\r\nSubject: s\r\n\r\nbody", policy=default))  # type: ignore[arg-type]
    assert not raised.value.permanent and "example.org" not in str(raised.value)


def stored_bytes(engine) -> bytes:
    """Everything the outbox table holds, as a backup or a database reader would see it."""
    return b"".join(r.content + r.subject.encode() + r.recipient.encode() for r in queued(engine))


def test_a_link_does_not_stay_in_the_outbox_once_its_mail_left_or_was_refused(settings, engine, smtp) -> None:
    from vault.auth.models import EmailToken

    app = smtp_app(settings, engine, smtp)
    with Browser(app) as browser:
        assert browser.register("link@example.org").status_code == 200
    [waiting] = queued(engine)
    assert b"/verify-email?token=" in waiting.content  # the sender needs it while it waits
    assert deliver(app).sent == 1
    [message] = smtp.capture.messages
    token = message.get_body(("plain",)).get_content().split("token=")[1].split()[0]
    [row] = queued(engine)
    # Kept a while (address, subject, dates for the export), but no usable link any more.
    assert row.sent_at is not None and row.recipient == "link@example.org" and row.content == b""
    assert token.encode() not in stored_bytes(engine)
    with Session(engine) as db:  # the link itself still works: only its copy in the outbox is gone
        assert db.exec(select(EmailToken)).one().used_at is None

    smtp.capture.answer = "550 5.1.1 no such mailbox"
    with Browser(app) as browser:
        assert browser.register("refused@example.org").status_code == 200
    assert deliver(app).failed == 1
    refused = next(r for r in queued(engine) if r.recipient == "refused@example.org")
    assert refused.failed_at is not None and refused.content == b""


def test_the_purge_clears_the_body_of_mail_marked_sent_before_bodies_were_cleared(settings, engine, smtp) -> None:
    app = smtp_app(settings, engine, smtp)
    with Browser(app) as browser:
        assert browser.register("before@example.org").status_code == 200
    with Session(engine) as db:  # a row a sender of an earlier version marked sent, body kept
        row = db.exec(select(OutgoingMail)).one()
        row.sent_at = datetime.now(UTC) - timedelta(hours=1)
        db.commit()
    with Session(engine) as db:
        assert purge_sent(db, before=datetime.now(UTC) - timedelta(days=settings.mail_retention_days)) == 0
        db.commit()
    [row] = queued(engine)
    assert row.content == b"" and row.recipient == "before@example.org"


def backdate(engine, hours: float) -> None:
    """Every waiting mail was written ``hours`` ago and is due now."""
    with Session(engine) as db:
        for row in db.exec(select(OutgoingMail)):
            row.created_at = datetime.now(UTC) - timedelta(hours=hours)
            row.next_attempt_at = datetime.now(UTC) - timedelta(seconds=1)
        db.commit()


def test_a_mail_failing_for_too_long_is_given_up_then_purged(settings, engine, smtp_down, caplog) -> None:
    from vault.jobs.work import send_mail

    app = smtp_app(settings, engine, smtp_down, mail_give_up_hours=72)
    with Browser(app) as browser:
        assert browser.register("stuck@example.org").status_code == 200
    backdate(engine, 71)
    assert send_mail(app.state.services)["retried"] == 1  # within the 72 hours: tried again later
    [row] = queued(engine)
    assert row.failed_at is None and row.content != b""
    backdate(engine, 73)
    with caplog.at_level(logging.INFO, logger="vault.mail"):
        report = send_mail(app.state.services)
    assert (report["failed"], report["retried"]) == (1, 0)
    [row] = queued(engine)
    assert row.failed_at is not None and row.sent_at is None and row.content == b""
    given_up = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(given_up) == 1 and "given up" in given_up[0].getMessage()
    assert all("stuck@example.org" not in f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert deliver(app, now=datetime.now(UTC) + timedelta(days=1)).retried == 0  # never tried again
    with Session(engine) as db:  # purged like any mail done with, after the retention
        assert purge_sent(db, before=datetime.now(UTC) + timedelta(seconds=1)) == 1
        db.commit()
    assert queued(engine) == []


def test_the_erasure_certificate_mail_given_up_is_deleted_at_once(settings, engine, smtp_down) -> None:
    from vault.gdpr.service import Staff

    app = smtp_app(settings, engine, smtp_down)
    citizen = make_citizen(app, email="erased@example.org")
    with Session(engine) as db:
        app.state.services.gdpr.erase(db, citizen_id=citizen.id, reason="demande",
                                      by=Staff(actor="staff:t", label="DPO"))
    assert [r.kind for r in queued(engine)] == ["erasure_done"]
    assert deliver(app).retried == 1
    backdate(engine, 73)
    assert deliver(app).failed == 1
    assert queued(engine) == []  # nothing keeps the erased citizen's address
