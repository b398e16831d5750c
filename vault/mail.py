"""Outgoing mail, through a transactional outbox.

A mail is never sent inside the request that causes it: ``MailQueue.send`` writes the rendered
message to the ``mail_outbox`` table in the caller's database transaction, so the mail exists if and
only if the change that causes it was committed. ``deliver_due`` (run by ``vault worker``, or by a
thread of the web app in development: ``VAULT_JOBS``; a job of the queue in ``vault.jobs``) hands the waiting messages to the
transport — SMTP when ``VAULT_SMTP_URL`` is set, else ``.eml`` files in the outbox folder — with
retries and a growing delay; a message is marked sent only after the SMTP server accepted it.

Delivery is at least once: a sender that crashes after the server accepted a message and before
marking it sent leaves it to the next pass — at once on PostgreSQL (its claim, an advisory lock of
its connection, ended with it), once its claim runs out (``CLAIM_SECONDS``) on SQLite — which sends
it again, with the same ``Message-ID`` (mail clients and servers recognise the duplicate).

Mail carries single-use links (verification, password reset): the log says a mail left, its kind
and id, never its address or body. The body is kept only while the sender needs it: it is cleared
(``content`` emptied) as soon as the message is marked sent or failed, so that the rows kept for the
retention period (and the export) hold subject, address and dates, never a link still usable. A
mail that keeps failing for a while (``VAULT_MAIL_GIVE_UP_HOURS`` after it was written) is given up:
marked failed, logged at ERROR (without its address), then purged like the others.

A waiting message is stored in clear: its links are single-use and short-lived, and encrypting it
would take a key from the key hierarchy (``vault/crypto``, ``KeyStore`` secrets in ``vault/oidc``),
which live on floors above this module (docs/architecture.md): the queue would then need a cipher
injected by ``vault/services.py`` on both sides. Not done; the clearing above bounds the exposure to
the time a mail waits.
"""

from __future__ import annotations

import logging
import os
import random
import smtplib
import ssl
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import ColumnElement, Connection, Engine, delete, event, or_, text, update
from sqlalchemy import select as core_select
from sqlalchemy.exc import DBAPIError
from sqlmodel import Field, Session, SQLModel, col, select

from vault.settings import Settings

logger = logging.getLogger(__name__)

# How long a sender holds a message it took (longer than any SMTP exchange with its timeouts); a
# sender that died meanwhile leaves it to the next pass once this has run out.
CLAIM_SECONDS = 600
_FIRST_RETRY_SECONDS = 30
_MAX_RETRY_SECONDS = 3600
_BATCH = 20
# A mail still failing (for a while, 4xx or the server away) this long after it was written is given up.
GIVE_UP_AFTER = timedelta(hours=72)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MailError(Exception):
    """The mail could not be handed over; ``permanent``: the server refused it for good (5xx)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


class Mailer(Protocol):
    """A transport: hands one message over (SMTP, or the development folder), or raises MailError."""

    def send(self, message: EmailMessage) -> None: ...


class OutboxMailer:
    """Development: each mail becomes a file in the outbox folder (never sent)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: EmailMessage) -> None:
        # Named in sending order (nanoseconds first), so that `ls` lists them in order.
        path = self.folder / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.eml"
        tmp = path.with_suffix(".tmp")
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            # 0600 whatever the umask: a mail holds live links (a reset, an activation).
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(bytes(message))
            os.replace(tmp, path)  # a reader never sees half a mail
        except OSError as exc:
            raise MailError(type(exc).__name__) from None
        logger.info("mail written to the outbox", extra={"path": str(path), "subject": message["Subject"]})


def _permanent(exc: Exception) -> bool:
    """A refusal the server will repeat (5xx): retrying would only repeat it."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException) and not isinstance(exc, smtplib.SMTPAuthenticationError):
        return exc.smtp_code >= 500
    return False


class SmtpMailer:
    """``smtp://`` (plain, for a local relay), ``smtp+starttls://`` or ``smtps://``; user:password in the URL."""

    def __init__(self, url: str, timeout: float = 15.0) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (465 if parts.scheme == "smtps" else 587 if parts.scheme == "smtp+starttls" else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = float(parse_qs(parts.query).get("timeout", [timeout])[0])

    def send(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        try:
            if self.scheme == "smtps":
                client: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                if self.scheme == "smtp+starttls":
                    client.starttls(context=context)
                if self.username:
                    client.login(self.username, self.password or "")
                client.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(type(exc).__name__, permanent=_permanent(exc)) from None


def make_transport(settings: Settings) -> Mailer:
    """What delivers the outbox: SMTP when configured, else the development folder."""
    if settings.smtp_url:
        return SmtpMailer(settings.smtp_url.get_secret_value())
    return OutboxMailer(settings.outbox_dir)


# ---- the outbox -------------------------------------------------------------------------------------


class OutgoingMail(SQLModel, table=True):
    """A rendered message waiting for (or kept a while after) its delivery. Holds personal data
    (the address, links with tokens): deleted ``VAULT_MAIL_RETENTION_DAYS`` after delivery, and with
    the citizen's other data at erasure."""

    __tablename__ = "mail_outbox"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    message_id: str = Field(max_length=255)
    recipient: str = Field(max_length=320, index=True)
    citizen_id: uuid.UUID | None = Field(default=None, index=True)  # whose mail, for erasure and export
    kind: str = Field(max_length=80)  # the template: what the log and the export say of it
    subject: str = Field(max_length=500)
    content: bytes  # the whole message (RFC 5322) while it waits; emptied once sent or failed
    created_at: datetime = Field(default_factory=_utcnow)
    next_attempt_at: datetime = Field(default_factory=_utcnow, index=True)
    claimed_until: datetime | None = None
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=200)
    sent_at: datetime | None = Field(default=None, index=True)
    failed_at: datetime | None = None
    # Deleted as soon as it left (or was refused for good) instead of kept: the certificate mailed
    # to a citizen just erased, whose address nothing else keeps.
    forget_when_done: bool = False


class MailQueue:
    """Where the services post their mail: a row of the outbox, in the caller's transaction."""

    def send(self, message: EmailMessage, *, db: Session, kind: str, citizen_id: uuid.UUID | None = None,
             forget_when_done: bool = False) -> OutgoingMail:
        row = OutgoingMail(message_id=str(message["Message-ID"]), recipient=str(message["To"])[:320],
                           citizen_id=citizen_id, kind=kind[:80], subject=str(message["Subject"])[:500],
                           content=bytes(message), forget_when_done=forget_when_done)
        db.add(row)
        db.info["mail_queued"] = True
        return row


def make_mailer(settings: Settings) -> MailQueue:  # noqa: ARG001  (one signature with make_transport)
    """The mail queue the services use (delivery is ``deliver_due``'s business)."""
    return MailQueue()


@dataclass
class Delivery:
    """What one pass of the sender did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def _retry_delay(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min… capped at one hour, with a little jitter so that senders spread out."""
    seconds = min(_MAX_RETRY_SECONDS, _FIRST_RETRY_SECONDS * 2 ** max(0, attempts - 1))
    return timedelta(seconds=seconds * random.uniform(0.9, 1.1))  # noqa: S311  (not a secret)


def _unclaimed(now: datetime) -> ColumnElement[bool]:
    """No sender holds the message by ``claimed_until`` at ``now``."""
    return or_(col(OutgoingMail.claimed_until).is_(None), col(OutgoingMail.claimed_until) < now)


def _due(now: datetime) -> list[ColumnElement[bool]]:
    """A message waiting for its time, not sent nor given up, not claimed by ``claimed_until``."""
    return [col(OutgoingMail.sent_at).is_(None), col(OutgoingMail.failed_at).is_(None),
            col(OutgoingMail.next_attempt_at) <= now, _unclaimed(now)]


def _claim(engine: Engine, *, now: datetime, limit: int, holder: Connection | None = None) -> list[OutgoingMail]:
    """Take up to ``limit`` due messages for this sender, so that no other sender takes them while
    it sends, without a transaction open during SMTP.

    With a ``holder`` (PostgreSQL: ``_claims``), a claim is an advisory lock of the holder's session:
    it ends with the session, whatever ends it — the sender marking the message, or the sender
    killed, its connection gone, and the message is free at once for the next pass. Without one
    (SQLite, one writer at a time), a claim is ``claimed_until``, committed before anything is sent,
    which a sender that died leaves to run out (``CLAIM_SECONDS``). Claims of either kind are
    honoured by both."""
    if holder is not None:
        return _lock_due(holder, now=now, limit=limit)
    with Session(engine, expire_on_commit=False) as db:
        rows = db.exec(select(OutgoingMail).where(*_due(now)).order_by(col(OutgoingMail.next_attempt_at))
                       .limit(limit).with_for_update(skip_locked=True)).all()
        claimed = []
        for row in rows:
            # Conditional: of two senders that read the same row (SQLite) only one takes it.
            taken = db.exec(update(OutgoingMail).where(col(OutgoingMail.id) == row.id, _unclaimed(now))
                            .values(claimed_until=now + timedelta(seconds=CLAIM_SECONDS)))
            if taken.rowcount == 1:
                claimed.append(row)
        db.commit()
    return claimed


# PostgreSQL's advisory locks of the mail claims: (this namespace, 32 bits of the message's id). Two
# messages sharing the 32 bits (one chance in four billion a pair) are sent one pass apart.
_CLAIM_LOCKS = 0x6D61696C  # "mail"


def _claim_key(mail_id: uuid.UUID) -> int:
    return int.from_bytes(mail_id.bytes[:4], "big", signed=True)


def _lock_due(holder: Connection, *, now: datetime, limit: int) -> list[OutgoingMail]:
    """The claims of a PostgreSQL sender (see ``_claim``): each due message whose advisory lock the
    holder gets, read again once locked (another sender may have sent it in between)."""
    candidates = holder.execute(core_select(col(OutgoingMail.id)).where(*_due(now))
                                .order_by(col(OutgoingMail.next_attempt_at)).limit(limit * 4)).scalars().all()
    claimed: list[OutgoingMail] = []
    with Session(bind=holder, expire_on_commit=False) as db:
        for mail_id in candidates:
            if len(claimed) == limit:
                break
            if not holder.execute(text("SELECT pg_try_advisory_lock(:space, :key)"),
                                  {"space": _CLAIM_LOCKS, "key": _claim_key(mail_id)}).scalar():
                continue  # another sender's
            row = db.exec(select(OutgoingMail).where(col(OutgoingMail.id) == mail_id, *_due(now))).first()
            if row is None:
                _release(holder, mail_id)
                continue
            claimed.append(row)
        db.expunge_all()
    return claimed


def _release(holder: Connection | None, mail_id: uuid.UUID) -> None:
    if holder is not None:
        holder.execute(text("SELECT pg_advisory_unlock(:space, :key)"),
                       {"space": _CLAIM_LOCKS, "key": _claim_key(mail_id)})


@contextmanager
def _claims(engine: Engine) -> Iterator[Connection | None]:
    """The connection that holds a PostgreSQL sender's claims for one pass (not in a transaction);
    None on SQLite. Its advisory locks are all released before it goes back to the pool."""
    if engine.dialect.name != "postgresql":
        yield None
        return
    with engine.connect() as connection:
        holder = connection.execution_options(isolation_level="AUTOCOMMIT")
        try:
            yield holder
        finally:
            if not holder.invalidated:
                try:
                    holder.execute(text("SELECT pg_advisory_unlock_all()"))
                except DBAPIError:
                    holder.invalidate()  # closed instead: its locks end with it


def deliver_due(engine: Engine, transport: Mailer, *, now: datetime | None = None, limit: int = _BATCH,
                give_up_after: timedelta = GIVE_UP_AFTER) -> Delivery:
    """One pass of the sender: hand every due message to ``transport``, at most ``limit`` at a time
    until none is left. A plain callable (a job queue can run it). A message the transport refuses
    for a while is tried again later (30 s, then twice as long each time, at most an hour apart)
    until ``give_up_after`` from when it was written; then, or when the server refuses it for good
    (5xx), it is marked failed and logged."""
    report = Delivery()
    with _claims(engine) as holder:
        while True:
            moment = now or _utcnow()
            rows = _claim(engine, now=moment, limit=limit, holder=holder)
            for row in rows:
                try:
                    _deliver_one(engine, transport, row, report, now=moment, give_up_after=give_up_after)
                finally:
                    _release(holder, row.id)  # once marked: another sender reads it sent
            if len(rows) < limit or report.errors:  # all done, or the transport is failing: the next pass
                return report


def _aware(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes (stored in UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _deliver_one(engine: Engine, transport: Mailer, row: OutgoingMail, report: Delivery, *, now: datetime,
                 give_up_after: timedelta) -> None:
    message = message_from_bytes(row.content, _class=EmailMessage, policy=default_policy)
    described = {"mail_id": str(row.id), "kind": row.kind, "message_id": row.message_id, "attempt": row.attempts + 1}
    try:
        try:
            transport.send(message)
        except MailError:
            raise
        except Exception as exc:  # noqa: BLE001  (whatever the transport met: the message waits and is retried)
            raise MailError(type(exc).__name__) from None
    except MailError as exc:
        done = _utcnow()
        values: dict[str, object] = {"attempts": row.attempts + 1, "last_error": str(exc)[:200], "claimed_until": None}
        if exc.permanent:
            values["failed_at"] = done
            report.failed += 1
            logger.error("mail refused for good", extra={**described, "error": str(exc)})
        elif now - _aware(row.created_at) >= give_up_after:
            values["failed_at"] = done
            report.failed += 1
            logger.error("mail given up: still failing too long after it was written",
                         extra={**described, "error": str(exc), "give_up_hours": give_up_after.total_seconds() / 3600})
        else:
            values["next_attempt_at"] = done + _retry_delay(row.attempts + 1)
            report.retried += 1
            logger.warning("mail not sent, will retry", extra={**described, "error": str(exc)})
        report.errors.append(str(exc))
    else:
        values = {"attempts": row.attempts + 1, "sent_at": _utcnow(), "claimed_until": None, "last_error": None}
        report.sent += 1
        logger.info("mail sent", extra=described)
    # If this write is lost (a crash, the database away), the claim runs out and the message goes
    # again: at least once, never lost.
    with Session(engine) as db:
        done_with = bool(values.get("sent_at") or values.get("failed_at"))
        if row.forget_when_done and done_with:
            db.exec(delete(OutgoingMail).where(col(OutgoingMail.id) == row.id))
        else:
            if done_with:
                values["content"] = b""  # its links must not outlive the sending in the table or its backups
            db.exec(update(OutgoingMail).where(col(OutgoingMail.id) == row.id).values(**values))
        db.commit()


def purge_sent(db: Session, *, before: datetime) -> int:
    """Delete the messages delivered (or refused for good) before ``before``; how many. The body of
    any other message done with is cleared too (rows a sender marked before it cleared bodies)."""
    result = db.exec(delete(OutgoingMail).where(
        or_(col(OutgoingMail.sent_at) < before, col(OutgoingMail.failed_at) < before)))
    db.exec(update(OutgoingMail).where(
        or_(col(OutgoingMail.sent_at).is_not(None), col(OutgoingMail.failed_at).is_not(None)),
        col(OutgoingMail.content) != b"").values(content=b""))
    return result.rowcount


def forget_recipient(db: Session, *, citizen_id: uuid.UUID, addresses: Sequence[str]) -> int:
    """Erasure: every message of the citizen, sent or waiting (by account, and by address for those
    written before the account was known); how many."""
    condition = col(OutgoingMail.citizen_id) == citizen_id
    if addresses:
        condition = or_(condition, col(OutgoingMail.recipient).in_(list(addresses)))
    return db.exec(delete(OutgoingMail).where(condition)).rowcount


def messages_of(db: Session, *, citizen_id: uuid.UUID) -> list[dict[str, object]]:
    """For the export: the mails the service keeps for the citizen (subject, dates, state)."""
    rows = db.exec(select(OutgoingMail).where(OutgoingMail.citizen_id == citizen_id)
                   .order_by(col(OutgoingMail.created_at)))
    return [{"objet": r.subject, "destinataire": r.recipient, "cree_le": r.created_at, "envoye_le": r.sent_at,
             "etat": "envoyé" if r.sent_at else "refusé" if r.failed_at else "en attente"} for r in rows]


# Told after a commit that queued mail: the jobs (vault.jobs) run or defer the mail job at once.
_mail_listeners: list[Callable[[], None]] = []


def on_mail_committed(listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener`` after each commit that queued mail (it must not raise, nor take long); returns
    what removes it."""
    _mail_listeners.append(listener)
    return lambda: _mail_listeners.remove(listener) if listener in _mail_listeners else None


@event.listens_for(Session, "after_commit")
def _mail_committed(db: Session) -> None:
    """After a commit that queued mail, the mail job runs (or is deferred) at once, not at its next poll."""
    if db.info.pop("mail_queued", False):
        for listener in list(_mail_listeners):
            listener()


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # "application/jwt"…
    data: bytes


def compose(settings: Settings, *, to: str, subject: str, body: str,
            headers: Mapping[str, str] | None = None, attachments: Sequence[Attachment] = ()) -> EmailMessage:
    """A plain-text mail, dated (RFC 5322 requires ``Date``); ``headers``: more header fields
    (``List-Unsubscribe``…); ``attachments``: files joined to it (an erasure certificate)."""
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=urlsplit(settings.issuer).hostname or "localhost")
    message["Auto-Submitted"] = "auto-generated"
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    for attachment in attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename)
    return message
