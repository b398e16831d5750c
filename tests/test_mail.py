"""Mail leaves through SMTP when VAULT_SMTP_URL is set (a local SMTP server captures it)."""

from __future__ import annotations

import socket
from email import message_from_bytes
from email.policy import default

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr

from tests.support import Browser
from vault.app import create_app


class Capture:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802, ARG002  (aiosmtpd's handler hook)
        self.messages.append(message_from_bytes(envelope.content, policy=default))
        return "250 OK"


@pytest.fixture
def smtp_server():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    capture = Capture()
    controller = Controller(capture, hostname="127.0.0.1", port=port)
    controller.start()
    yield capture, port
    controller.stop()


def test_registration_mail_goes_through_smtp(settings, engine, smtp_server) -> None:
    capture, port = smtp_server
    app = create_app(settings.model_copy(update={"smtp_url": SecretStr(f"smtp://127.0.0.1:{port}"),
                                                 "mail_from": "Mairie <ne-pas-repondre@ville.example.fr>"}),
                     engine=engine)
    with Browser(app) as browser:
        from tests.support import IDENTITY, PASSWORD

        assert browser.submit("/register", {"email": "smtp@example.org", "password": PASSWORD,
                                            **IDENTITY}).status_code == 200
    assert len(capture.messages) == 1
    message = capture.messages[0]
    assert message["To"] == "smtp@example.org"
    assert message["From"] == "Mairie <ne-pas-repondre@ville.example.fr>"
    assert "/verify-email?token=" in message.get_body(("plain",)).get_content()
    assert not settings.outbox_dir.exists()


def test_unreachable_smtp_creates_nothing(settings, engine) -> None:
    from sqlmodel import Session, select

    from vault.auth.models import Citizen

    app = create_app(settings.model_copy(update={"smtp_url": SecretStr("smtp://127.0.0.1:9?timeout=2")}), engine=engine)
    with Browser(app) as browser:
        from tests.support import IDENTITY, PASSWORD

        page = browser.submit("/register", {"email": "nomail@example.org", "password": PASSWORD, **IDENTITY})
    assert page.status_code == 503 and "Rien n'a été enregistré" in page.text
    with Session(engine) as db:
        assert db.exec(select(Citizen)).all() == []
