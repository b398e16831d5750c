"""Outgoing mail: SMTP when ``VAULT_SMTP_URL`` is set, else ``.eml`` files in the outbox folder.

Mail carries single-use links (verification, password reset): the log says a mail left and where
it went on disk, never its body.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from vault.settings import Settings

logger = logging.getLogger(__name__)


class MailError(Exception):
    """The mail could not be handed over."""


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class OutboxMailer:
    """Development: each mail becomes a file in the outbox folder (never sent)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # Named in sending order (nanoseconds first), so that `ls` lists them in order.
        path = self.folder / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(bytes(message))
        os.replace(tmp, path)  # a reader never sees half a mail
        logger.info("mail written to the outbox", extra={"path": str(path), "subject": message["Subject"]})


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
            logger.error("mail not sent", extra={"error": type(exc).__name__, "smtp_host": self.host})
            raise MailError(type(exc).__name__) from None
        logger.info("mail sent", extra={"subject": message["Subject"], "smtp_host": self.host})


def make_mailer(settings: Settings) -> Mailer:
    if settings.smtp_url:
        return SmtpMailer(settings.smtp_url.get_secret_value())
    return OutboxMailer(settings.outbox_dir)


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
