"""The token endpoint keeps apps between code-for-token exchanges (``vault.oidc.provider.AppCache``):
an app changed meanwhile, by an operator on any replica, is answered as its row says at the very
next exchange. Here the change is made through another database session, as the command line or
another replica makes it; the service under test holds the app as its first exchange read it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import event
from sqlmodel import Session

from tests.factories import logged_in, make_citizen, make_oidc_app
from tests.oidc.oidc_support import authorize, exchange, verify_id_token
from tests.support import App, Browser
from vault.oidc.clients import disable_client, rotate_secret
from vault.oidc.models import OAuthClient


@pytest.fixture
def setup(app, engine) -> Iterator[tuple[Browser, App]]:
    citizen = make_citizen(app)
    rp = make_oidc_app(engine)
    with Browser(app) as browser:
        logged_in(browser, citizen)
        first = authorize(browser, rp)
        assert first.steps == ["consent"]
        assert exchange(browser, first).status_code == 200  # the app is now kept by the service
        yield browser, rp


def _code(browser: Browser, rp: App):
    flow = authorize(browser, rp)
    assert flow.steps == [] and "code" in flow.result, flow.steps
    return flow


def _statements(engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _k, sql, *_a: seen.append(sql))
    return seen


def test_a_rotated_secret_is_refused_at_the_next_exchange(setup, engine) -> None:
    browser, rp = setup
    flow = _code(browser, rp)
    with Session(engine) as db:
        new_secret = rotate_secret(db=db, client_id=rp.client_id)
        db.commit()
    refused = exchange(browser, flow)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client", refused.text
    # The refused exchange spent nothing: the same code, with the new secret, gets its tokens.
    answer = exchange(browser, replace(flow, app=replace(rp, secret=new_secret)))
    assert answer.status_code == 200 and answer.json()["id_token"], answer.text


def test_a_new_secret_is_accepted_at_once_by_a_service_holding_the_old_record(setup, engine) -> None:
    browser, rp = setup
    with Session(engine) as db:
        new_secret = rotate_secret(db=db, client_id=rp.client_id)
        db.commit()
    rotated = replace(rp, secret=new_secret)
    for _ in range(2):  # the first is answered from the app's row, the next from the record read then
        answer = exchange(browser, replace(_code(browser, rp), app=rotated))
        assert answer.status_code == 200, answer.text


def test_a_disabled_app_gets_no_token_for_a_code_issued_before(setup, engine) -> None:
    browser, rp = setup
    flow = _code(browser, rp)
    with Session(engine) as db:
        disable_client(db=db, client_id=rp.client_id)
        db.commit()
    refused = exchange(browser, flow)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_client", refused.text


def test_an_id_token_is_signed_as_the_row_says_after_a_change(setup, engine) -> None:
    browser, rp = setup
    flow = _code(browser, rp)
    with Session(engine) as db:
        row = db.get(OAuthClient, rp.client_id)
        assert row is not None and row.id_token_alg == "ES256"
        row.id_token_alg = "RS256"
        db.commit()
    answer = exchange(browser, flow)
    assert answer.status_code == 200, answer.text
    header, _ = verify_id_token(browser, answer.json()["id_token"])
    assert header["alg"] == "RS256"


def test_every_change_to_an_app_raises_its_version(engine) -> None:
    rp = make_oidc_app(engine)
    with Session(engine) as db:
        before = db.get(OAuthClient, rp.client_id)
        assert before is not None and before.version == 1
        rotate_secret(db=db, client_id=rp.client_id)
        db.commit()
        db.refresh(before)
        assert before.version == 2
        before.scope = "openid"
        db.commit()
        db.refresh(before)
        assert before.version == 3


def test_a_refused_exchange_of_an_unchanged_app_reads_it_once(setup, engine) -> None:
    browser, rp = setup
    flow = _code(browser, rp)
    seen = _statements(engine)
    refused = exchange(browser, replace(flow, app=replace(rp, secret="not-the-secret")))
    assert refused.status_code == 401, refused.text
    # The app's row, read to check the kept record; nothing else (no code spent, no second answer).
    assert len([sql for sql in seen if "FROM oauth_client" in sql]) == 1, seen
    assert not any("UPDATE oauth_code" in sql for sql in seen), seen
    assert exchange(browser, flow).status_code == 200
