"""What the provider accepts once, and from whom: a client assertion is good once (on every
replica), and an ``id_token_hint`` must be one of the ID tokens it issued, never another JWT it
signed with the same keys (a signed userinfo, an erasure certificate)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import pytest
from joserfc import jwk, jwt
from sqlalchemy import update
from sqlmodel import Session, select

from tests.factories import make_citizen, make_oidc_app
from tests.gdpr.test_retention import run as retention_run
from tests.oidc.oidc_support import authorize, exchange
from tests.support import RP_CALLBACK, RP_LOGGED_OUT, App, Browser
from vault.app import create_app
from vault.db import utcnow
from vault.gdpr.service import Staff
from vault.oidc.models import ClientAssertion

EMAIL = "hints@example.org"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture
def citizen(app) -> str:
    return make_citizen(app, email=EMAIL).email


# ---- private_key_jwt: each assertion once --------------------------------------------------------------------


def _key_app(engine) -> tuple[App, jwk.ECKey]:
    key = jwk.ECKey.generate_key("P-256", private=True)
    public = {"keys": [key.as_dict(private=False) | {"kid": "rp-1", "use": "sig"}]}
    return make_oidc_app(engine, auth_method="private_key_jwt", jwks_json=json.dumps(public)), key


def _assertion(app: App, key: jwk.ECKey, jti: str | None = None, lifetime: int = 60) -> str:
    now = int(time.time())
    return jwt.encode({"alg": "ES256", "kid": "rp-1"},
                      {"iss": app.client_id, "sub": app.client_id, "aud": "http://127.0.0.1:8000/token",
                       "jti": jti or str(uuid.uuid4()), "iat": now, "exp": now + lifetime}, key)


def _exchange_with(browser: Browser, code: str, assertion: str):
    return browser.post("/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": RP_CALLBACK,
                                        "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion})


def test_a_client_assertion_is_accepted_once_on_every_replica(browser: Browser, citizen: str, app, settings,
                                                                 engine) -> None:
    key_app, key = _key_app(engine)
    assertion = _assertion(key_app, key)
    first = authorize(browser, key_app, email=EMAIL).result["code"]
    assert _exchange_with(browser, first, assertion).status_code == 200
    # Another replica (another app process on the same database) refuses the captured assertion.
    second = authorize(browser, key_app, email=EMAIL).result["code"]
    with Browser(create_app(settings, engine=engine)) as replica:
        replayed = _exchange_with(replica, second, assertion)
        assert replayed.status_code in (400, 401) and replayed.json()["error"] == "invalid_client", replayed.text
        # The refused attempt spent nothing: the app, with a fresh assertion, gets its tokens.
        assert _exchange_with(replica, second, _assertion(key_app, key)).status_code == 200
    # A replay anywhere else that authenticates the app is refused too.
    for path in ("/introspect", "/revoke"):
        answer = browser.post(path, data={"token": "x", "client_assertion_type": ASSERTION_TYPE,
                                          "client_assertion": assertion})
        assert answer.status_code in (400, 401) and answer.json()["error"] == "invalid_client", (path, answer.text)


def test_jti_values_are_per_app_and_swept_once_expired(browser: Browser, citizen: str, app, engine) -> None:
    one, one_key = _key_app(engine)
    other, other_key = _key_app(engine)
    code = authorize(browser, one, email=EMAIL).result["code"]
    assert _exchange_with(browser, code, _assertion(one, one_key, jti="same-jti")).status_code == 200
    code = authorize(browser, other, email=EMAIL).result["code"]
    assert _exchange_with(browser, code, _assertion(other, other_key, jti="same-jti")).status_code == 200
    with Session(engine) as db:
        assert len(db.exec(select(ClientAssertion)).all()) == 2
    assert retention_run(app, engine).housekeeping["client_assertions"] == 0  # still within their lifetime
    with Session(engine) as db:
        db.exec(update(ClientAssertion).where(ClientAssertion.client_id == one.client_id)
                .values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    assert retention_run(app, engine).housekeeping["client_assertions"] == 1
    with Session(engine) as db:
        assert [row.client_id for row in db.exec(select(ClientAssertion))] == [other.client_id]


# ---- id_token_hint: ID tokens only ----------------------------------------------------------------------------


@pytest.fixture
def signed_app(engine) -> App:
    return make_oidc_app(engine, userinfo_signed=True)


def _signed_userinfo(browser: Browser, app: App) -> tuple[str, str]:
    """(the ID token, the signed userinfo JWT) an app with signed userinfo gets for the citizen."""
    body = exchange(browser, authorize(browser, app, email=EMAIL)).json()
    answer = browser.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert answer.headers["content-type"] == "application/jwt"
    return body["id_token"], answer.text


def test_a_signed_userinfo_is_no_id_token_hint_at_logout(browser: Browser, citizen: str, signed_app: App) -> None:
    _, userinfo = _signed_userinfo(browser, signed_app)
    params = {"id_token_hint": userinfo, "post_logout_redirect_uri": RP_LOGGED_OUT, "state": "s1"}
    asked = browser.get("/logout", params=params)  # as without a hint: the citizen is asked, no redirect
    assert asked.status_code == 200 and "Se déconnecter ?" in asked.text, asked.headers.get("location")
    assert RP_LOGGED_OUT not in asked.text
    assert browser.get("/api/v1/me").status_code == 200


def test_a_signed_userinfo_is_no_id_token_hint_at_authorize(browser: Browser, citizen: str, signed_app: App) -> None:
    id_token, userinfo = _signed_userinfo(browser, signed_app)
    assert "code" in authorize(browser, signed_app, prompt="none", id_token_hint=id_token).result
    assert authorize(browser, signed_app, prompt="none", id_token_hint=userinfo).result["error"] == "login_required"


def test_an_erasure_certificate_is_no_id_token_hint(app, browser: Browser, citizen: str, engine) -> None:
    app_ = make_oidc_app(engine)
    erased = make_citizen(app)
    with Session(engine) as db:
        certificate = app.state.services.gdpr.erase(db, citizen_id=erased.id, reason="demande de la personne",
                                                    by=Staff(actor="staff:test", label="DPO"))
    assert "code" in authorize(browser, app_, email=EMAIL).result  # logged in here
    params = {"id_token_hint": certificate, "client_id": app_.client_id, "post_logout_redirect_uri": RP_LOGGED_OUT}
    asked = browser.get("/logout", params=params)
    assert asked.status_code == 200 and "Se déconnecter ?" in asked.text, asked.headers.get("location")
    assert browser.get("/api/v1/me").status_code == 200
    # FranceConnect's logout requires a hint: this one is refused, and the citizen stays logged in.
    fc = browser.get("/api/v2/session/end", params={"id_token_hint": certificate})
    assert fc.status_code == 400 and "Déconnexion impossible" in fc.text
    assert browser.get("/api/v1/me").status_code == 200
