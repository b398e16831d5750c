"""The row a code-for-token exchange writes, and that a refused exchange leaves none. On PostgreSQL
the code is spent and its token written by one statement, before the redirect URI and PKCE are
checked; on SQLite the token is written after them. Both must end the same."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from tests.factories import logged_in, make_citizen, make_oidc_app
from tests.oidc.oidc_support import authorize, exchange, pkce_pair
from tests.support import Browser
from vault.crypto.tokens import token_hash
from vault.db import utcnow
from vault.oidc.models import AuthorizationCode, OAuthToken

SCOPE = "openid profile email"


@pytest.fixture
def browser(app):
    with Browser(app) as browser:
        logged_in(browser, make_citizen(app))
        yield browser


def _rows(engine, code: str) -> list[OAuthToken]:
    with Session(engine) as db:
        return list(db.exec(select(OAuthToken).where(OAuthToken.code_id == token_hash(code))).all())


def test_the_token_row_holds_what_was_answered(app, engine, browser) -> None:
    rp = make_oidc_app(engine, scope=SCOPE, allow_refresh=True)
    verifier, challenge = pkce_pair()
    flow = authorize(browser, rp, scope=SCOPE, code_challenge=challenge, code_challenge_method="S256")
    code = flow.result["code"]
    with Session(engine) as db:
        stored = db.get(AuthorizationCode, token_hash(code))
        assert stored is not None
        citizen_id, sid, auth_time, amr = stored.citizen_id, stored.sid, stored.auth_time, stored.amr
    answer = exchange(browser, flow, code_verifier=verifier)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    [row] = _rows(engine, code)
    assert (row.client_id, row.citizen_id, row.scope) == (rp.client_id, citizen_id, body["scope"])
    assert row.access_token_hash == token_hash(body["access_token"])
    assert row.refresh_token_hash == token_hash(body["refresh_token"])
    assert (row.sid, row.auth_time, row.acr, row.amr) == (sid, auth_time, "eidas1", amr)
    assert row.access_expires_at - row.issued_at == timedelta(seconds=body["expires_in"])
    days = app.state.services.settings.refresh_token_days
    assert row.refresh_expires_at is not None and row.refresh_expires_at - row.issued_at == timedelta(days=days)
    assert row.revoked_at is None and row.authorization_details is None and row.act is None
    with Session(engine) as db:
        spent = db.get(AuthorizationCode, token_hash(code))
        assert spent is not None and spent.used_at is not None


def test_no_refresh_token_row_for_an_app_without_refresh(engine, browser) -> None:
    rp = make_oidc_app(engine, scope=SCOPE, allow_refresh=False)
    flow = authorize(browser, rp, scope=SCOPE)
    answer = exchange(browser, flow)
    assert answer.status_code == 200 and "refresh_token" not in answer.json()
    [row] = _rows(engine, flow.result["code"])
    assert row.refresh_token_hash is None and row.refresh_expires_at is None


@pytest.mark.parametrize("mistake", ["pkce", "redirect_uri"])
def test_an_exchange_refused_after_the_code_is_spent_leaves_no_token(engine, browser, mistake) -> None:
    rp = make_oidc_app(engine, scope=SCOPE, allow_refresh=True)
    verifier, challenge = pkce_pair()
    flow = authorize(browser, rp, scope=SCOPE, code_challenge=challenge, code_challenge_method="S256")
    wrong = ({"code_verifier": pkce_pair()[0]} if mistake == "pkce"
             else {"code_verifier": verifier, "redirect_uri": "https://rp.example.org/other"})
    refused = exchange(browser, flow, **wrong)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text
    assert _rows(engine, flow.result["code"]) == []
    # The code is spent all the same (RFC 6749 §4.1.2: used once, whatever the outcome).
    again = exchange(browser, flow, code_verifier=verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert _rows(engine, flow.result["code"]) == []


def test_an_expired_code_gets_no_token(engine, browser) -> None:
    rp = make_oidc_app(engine, scope=SCOPE)
    flow = authorize(browser, rp, scope=SCOPE)
    with Session(engine) as db:
        db.exec(update(AuthorizationCode).where(AuthorizationCode.id == token_hash(flow.result["code"]))
                .values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    refused = exchange(browser, flow)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text
    assert _rows(engine, flow.result["code"]) == []
