"""Test helpers: a browser that fills the pages' forms (with their CSRF token), the mail outbox,
registration through the pages. The factories for test data are in tests/factories.py."""

from __future__ import annotations

import email
import email.policy
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from vault.mail import OutboxMailer, deliver_due

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LINK = re.compile(r"(https?://\S+)")

IDENTITY = {
    "given_name": "Jeanne Marie",
    "family_name": "Martin",
    "birthdate": "1990-05-17",
    "gender": "female",
    "birthplace": "69123",
    "birthcountry": "99100",
}
PASSWORD = "un chat vert mange des prunes"


class Page(httpx.Response):
    """A response whose ``text`` reads as a person reads it (HTML entities decoded)."""

    @property
    def text(self) -> str:
        return html.unescape(super().text)


class Browser(TestClient):
    """A citizen's browser: keeps cookies, reads the CSRF token of the last form page."""

    def __init__(self, app: Any, base_url: str = "http://testserver",
                 client: tuple[str, int] = ("testclient", 50000)) -> None:
        """``client``: the peer's address the app sees (a proxy's, for the X-Forwarded-For tests)."""
        super().__init__(app, base_url=base_url, follow_redirects=False, client=client)

    def request(self, *args: Any, **kwargs: Any) -> httpx.Response:
        response = super().request(*args, **kwargs)
        response.__class__ = Page
        return response

    def form_token(self, path: str) -> str:
        page = self.get(path)
        assert page.status_code == 200, (path, page.status_code, page.text[:500])
        match = CSRF.search(page.text)
        assert match, f"no CSRF token in {path}"
        return html.unescape(match.group(1))

    def submit(self, page: str, data: dict[str, str], action: str | None = None) -> httpx.Response:
        """Open ``page``, then post ``data`` with the page's CSRF token to ``action`` (default: same path)."""
        token = self.form_token(page)
        return self.post(action or page.split("?", maxsplit=1)[0], data={**data, "csrf_token": token})

    def register(self, email_address: str, password: str = PASSWORD, **identity: str) -> httpx.Response:
        return self.submit("/register", {"email": email_address, "password": password, **IDENTITY, **identity})

    def login(self, email_address: str, password: str = PASSWORD, **extra: str) -> httpx.Response:
        return self.submit("/login", {"email": email_address, "password": password, **extra})


@dataclass
class Mail:
    to: str
    subject: str
    body: str
    headers: dict[str, str] = field(default_factory=dict)

    def link(self) -> str:
        match = LINK.search(self.body)
        assert match, self.body
        return match.group(1)

    def path(self) -> str:
        """The link without scheme and host, to follow it with the test browser."""
        return re.sub(r"^https?://[^/]+", "", self.link())


class Outbox:
    """The development outbox folder: each file is one mail, named in sending order. With
    ``engine``, the mail queued in that database is delivered to the folder first (what the sender
    of ``vault worker`` or of the app does a moment later, done here at once)."""

    def __init__(self, folder: Path, engine: Engine | None = None) -> None:
        self.folder = folder
        self.engine = engine

    def deliver(self) -> None:
        if self.engine is not None:
            deliver_due(self.engine, OutboxMailer(self.folder))

    def all(self) -> list[Mail]:
        self.deliver()
        if not self.folder.exists():
            return []
        mails = []
        for path in sorted(self.folder.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            body = message.get_body(preferencelist=("plain",)).get_content()
            mails.append(Mail(to=str(message["To"]), subject=str(message["Subject"]), body=body,
                              headers={name: str(value) for name, value in message.items()}))
        return mails

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.all() if m.to == address]

    def last(self, address: str) -> Mail:
        mails = self.to(address)
        assert mails, f"no mail to {address}"
        return mails[-1]


def verified_citizen(browser: Browser, outbox: Outbox, address: str, password: str = PASSWORD) -> None:
    """Register ``address`` through the pages and confirm it from the mailed link."""
    assert browser.register(address, password).status_code == 200
    link = outbox.last(address).path()
    token = link.split("token=", 1)[1]
    response = browser.submit(link, {"token": token}, action="/verify-email")
    assert response.status_code == 303, response.text[:500]


# ---- OpenID Connect ----------------------------------------------------------------------------------

RP_CALLBACK = "https://rp.example.org/callback"
RP_LOGGED_OUT = "https://rp.example.org/bye"


@dataclass
class App:
    client_id: str
    secret: str | None


def query_of(location: str) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlsplit

    return dict(parse_qsl(urlsplit(location).query))
