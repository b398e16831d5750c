"""Database round trips of a citizen's most frequent requests: a login, the list of documents, an
upload and a download (the OpenID endpoints': tests/oidc/test_round_trips.py, which explains what
is counted). The counts are those measured when this was written; a change that adds a statement
makes the test fail, so a count cannot grow unnoticed (lower it here when a change saves one).
docs/scaling.md quotes them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session

from tests.factories import logged_in, make_citizen, make_document, pdf, upload
from tests.oidc.test_round_trips import RoundTrips, counting
from tests.support import Browser

EXPECTED_STATEMENTS = {
    # the citizen; the attempt counted for the address and for the account before the password is
    # checked (their own short transaction, on a connection of its own), then cleared; the login
    # recorded, the session
    "login": 12,
    "list": 4,  # session, citizen, count, page
    # session, citizen, quota, citizen key (read, then locked while its document is written), quota
    # checked again under that lock, the document
    "upload": 7,
    "download": 4,  # session, citizen, document, citizen key
}


@contextmanager
def every_engine() -> Iterator[RoundTrips]:
    """Statements sent by any engine (the login's attempt counter has one of its own)."""
    seen = RoundTrips()

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        seen.statements.append(" ".join(sql.split())[:120])

    event.listen(Engine, "before_cursor_execute", statement)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", statement)


def _check(name: str, seen: RoundTrips) -> None:
    assert len(seen.statements) <= EXPECTED_STATEMENTS[name], (
        f"{name}: {len(seen.statements)} statements, at most {EXPECTED_STATEMENTS[name]} expected:\n  "
        + "\n  ".join(seen.statements))


@pytest.fixture
def citizen_browser(app):
    citizen = make_citizen(app)
    with Browser(app) as browser:
        logged_in(browser, citizen)
        make_document(browser)  # the citizen key made, the store warmed
        yield browser, citizen


def test_login(app, engine) -> None:
    with Session(engine) as db:  # the service's secrets, as `vault db upgrade` makes them
        app.state.services.keystore.ensure(db)
        db.commit()
    citizen = make_citizen(app)
    with Browser(app) as first:
        logged_in(first, citizen)  # and read once, as in a running service
    with Browser(app) as browser:
        token = browser.form_token("/login")
        with every_engine() as seen:
            answer = browser.post("/login", data={"email": citizen.email, "password": citizen.password,
                                                  "csrf_token": token})
        assert answer.status_code == 303, answer.text
    _check("login", seen)


def test_list_upload_download(citizen_browser, engine) -> None:
    browser, _ = citizen_browser
    with counting(engine) as seen:
        assert browser.get("/api/v1/documents").status_code == 200
    _check("list", seen)
    content = pdf()
    with counting(engine) as seen:
        answer = upload(browser, content)
    assert answer.status_code == 201, answer.text
    _check("upload", seen)
    with counting(engine) as seen:
        body = browser.get(f"/api/v1/documents/{answer.json()['id']}/content")
    assert body.status_code == 200 and body.content == content
    _check("download", seen)
