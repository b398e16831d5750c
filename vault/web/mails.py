"""The text of outgoing mail: one plain-text template per mail, in ``templates/mail/``.

A mail template sets its subject (``{% set subject = _("…") %}``) and writes its body. Its
sentences go through the same catalogue as the pages; a mail is in French unless the reader's
language is known. Sending is ``vault.mail``'s business (``compose``, and the ``MailQueue`` that
writes the message to the outbox in the caller's transaction).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlmodel import Session

from vault.mail import Attachment, MailQueue, OutgoingMail, compose
from vault.settings import Settings
from vault.web.i18n import SOURCE_LANGUAGE, translations

MAIL_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates" / "mail"),
    autoescape=False,  # noqa: S701  (plain text: an escaped "&" or "'" would reach the reader as "&amp;" or "&#39;")
    keep_trailing_newline=True,
    undefined=StrictUndefined,  # a missing value fails the sending instead of leaving a blank in the mail
    extensions=["jinja2.ext.i18n"],
)


def render_mail(name: str, context: Mapping[str, Any], *, lang: str | None = None) -> tuple[str, str]:
    """The subject and body of ``mail/<name>.txt`` with ``context``, in ``lang`` (French when None)."""
    translated = translations(lang or SOURCE_LANGUAGE)
    module = MAIL_TEMPLATES.get_template(f"{name}.txt").make_module({
        **context,
        "_": translated.gettext,
        "gettext": translated.gettext,
        "ngettext": translated.ngettext,
    })
    subject = getattr(module, "subject", None)
    if not subject:
        raise ValueError(f"mail template {name}.txt sets no subject")
    return str(subject), str(module)


def send_mail(mailer: MailQueue, settings: Settings, *, db: Session, to: str, template: str,
              citizen_id: uuid.UUID | None = None, attachments: Sequence[Attachment] = (),
              forget_when_done: bool = False, **context: object) -> OutgoingMail:
    """Render ``mail/<template>.txt`` (in French: an account has no language of its own) and queue it
    in ``db``'s transaction: it leaves once that commits (``citizen_id``: whose mail it is;
    ``forget_when_done``: deleted from the outbox once delivered instead of kept a few days)."""
    subject, body = render_mail(template, {"settings": settings, **context})
    return mailer.send(compose(settings, to=to, subject=subject, body=body, attachments=attachments), db=db,
                       kind=template, citizen_id=citizen_id, forget_when_done=forget_when_done)
