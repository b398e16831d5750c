"""Database round trips per request on the endpoints an app calls most: the authorization request
with a remembered consent, the code-for-token exchange, userinfo and introspection.

Each round trip costs the service and PostgreSQL CPU and the request a network wait
(``bench/oidc.py`` measures the rates). The counts below are the figures measured when this was
written; a change that adds a statement to one of these requests makes its test fail, so the
count cannot grow unnoticed (lower it here when a change saves one).

Counted: every SQL statement sent (SQLAlchemy's ``before_cursor_execute``), every transaction
committed, and every connection taken from the pool (a connection idle more than
``vault.db.IDLE_PING_SECONDS`` costs a ping). On PostgreSQL a transaction costs two round trips more
(``BEGIN``, ``COMMIT``): the endpoints apps call run without one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session

from tests.factories import logged_in, make_citizen, make_oidc_app
from tests.oidc.oidc_support import authorize, exchange, pkce_pair
from tests.support import App, Browser

SCOPE = "openid profile email"

# Measured with the service's unit of work: statements, then commits and checkouts (one each).
EXPECTED_STATEMENTS = {
    # session, citizen, client, pending insert, consent, pending delete, code, audit log (4, and on
    # PostgreSQL its advisory lock: see _check)
    "authorize": 11,
    # code (consumed and read back with its citizen's one field, if its app's row still has the version of
    # the app's record kept since the first exchange: UPDATE … RETURNING), token insert; on PostgreSQL
    # both in one statement (see _check)
    "token": 2,
    "userinfo": 1,  # the token with its app and its citizen (one SELECT with two joins)
    "introspect": 2,  # client, token
}


@dataclass
class RoundTrips:
    statements: list[str] = field(default_factory=list)
    commits: int = 0
    checkouts: int = 0
    in_transaction: list[bool] = field(default_factory=list)  # PostgreSQL: a statement after a BEGIN


@contextmanager
def counting(engine: Engine) -> Iterator[RoundTrips]:
    seen = RoundTrips()

    def statement(conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        seen.statements.append(" ".join(sql.split())[:120])
        if conn.dialect.name == "postgresql":
            driver = conn.connection.driver_connection
            seen.in_transaction.append(not driver.autocommit)  # psycopg sends a BEGIN first

    def commit(_conn: Any) -> None:
        seen.commits += 1

    def checkout(*_args: Any) -> None:
        seen.checkouts += 1

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    event.listen(engine.pool, "checkout", checkout)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)
        event.remove(engine.pool, "checkout", checkout)


@pytest.fixture
def setup(app, engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Browser, App, Engine]]:
    # The signing keys are read once per SIGNING_KEYS_REFRESH_SECONDS, not per token: here once,
    # by the warm-up exchange below, whatever the machine's speed.
    monkeypatch.setattr("vault.oidc.keys.SIGNING_KEYS_REFRESH_SECONDS", 3600.0)
    with Session(engine) as db:  # the signing keys and secrets, as `vault db upgrade` makes them
        app.state.services.keystore.ensure(db)
        db.commit()
    citizen = make_citizen(app)
    rp = make_oidc_app(engine, scope=SCOPE)
    with Browser(app) as browser:
        logged_in(browser, citizen)
        # The consent, given once: the requests measured below show no page.
        first = authorize(browser, rp, scope=SCOPE)
        assert first.steps == ["consent"] and "code" in first.result
        assert exchange(browser, first).status_code == 200
        yield browser, rp, engine


def _code(browser: Browser, rp: App) -> tuple[Any, str]:
    verifier, challenge = pkce_pair()
    flow = authorize(browser, rp, scope=SCOPE, code_challenge=challenge, code_challenge_method="S256")
    assert flow.steps == [] and "code" in flow.result, flow.steps
    return flow, verifier


def _check(name: str, seen: RoundTrips, dialect: str) -> None:
    expected = EXPECTED_STATEMENTS[name] + {("authorize", "postgresql"): 1, ("token", "postgresql"): -1}.get(
        (name, dialect), 0)
    assert len(seen.statements) <= expected, (
        f"{name}: {len(seen.statements)} statements, at most {expected} expected:\n  " + "\n  ".join(seen.statements))
    assert (seen.commits, seen.checkouts) == (1, 1), (name, seen.commits, seen.checkouts)
    if name != "authorize":
        # The endpoints apps call run statements that each stand alone, without the BEGIN and COMMIT
        # round trips of a transaction around them (vault.db.statements_engine).
        assert not any(seen.in_transaction), (name, seen.statements)


def test_authorize_with_remembered_consent(setup: tuple[Browser, App, Engine]) -> None:
    browser, rp, engine = setup
    with counting(engine) as seen:
        _code(browser, rp)
    _check("authorize", seen, engine.dialect.name)


def test_token_exchange(setup: tuple[Browser, App, Engine]) -> None:
    browser, rp, engine = setup
    flow, verifier = _code(browser, rp)
    with Browser(browser.app) as app_backend, counting(engine) as seen:
        answer = exchange(app_backend, flow, code_verifier=verifier)
    assert answer.status_code == 200 and answer.json()["id_token"], answer.text
    _check("token", seen, engine.dialect.name)


def test_userinfo_and_introspection(setup: tuple[Browser, App, Engine]) -> None:
    browser, rp, engine = setup
    flow, verifier = _code(browser, rp)
    with Browser(browser.app) as app_backend:
        access_token = exchange(app_backend, flow, code_verifier=verifier).json()["access_token"]
        with counting(engine) as seen:
            answer = app_backend.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})
        assert answer.status_code == 200 and answer.json()["email"], answer.text
        _check("userinfo", seen, engine.dialect.name)
        with counting(engine) as seen:
            answer = app_backend.post("/introspect", data={"token": access_token, "client_id": rp.client_id,
                                                           "client_secret": rp.secret})
        assert answer.status_code == 200 and answer.json()["active"] is True, answer.text
        _check("introspect", seen, engine.dialect.name)
