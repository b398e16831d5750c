"""The provider, module by module after the OpenID Foundation's Basic OP plan, plus the
FranceConnect-style rules (pairwise sub, eIDAS acr, state/nonce/redirect_uri mandatory, PKCE S256)."""

from __future__ import annotations

import base64
import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from joserfc import jwt
from sqlalchemy import update
from sqlmodel import Session, select

from tests.factories import logged_in, make_citizen, make_oidc_app
from tests.oidc.oidc_support import (
    authorize,
    exchange,
    pkce_pair,
    token_request,
    verify_id_token,
)
from tests.support import RP_CALLBACK, RP_LOGGED_OUT, App, Browser
from vault.db import utcnow
from vault.oidc.models import AuthorizationCode, OAuthToken

EMAIL = "oidc@example.org"


@pytest.fixture
def citizen(app) -> str:
    return make_citizen(app, email=EMAIL).email


@pytest.fixture
def app_(engine) -> App:
    return make_oidc_app(engine, allow_refresh=True)


def logged_in_flow(browser: Browser, app: App, **kw):
    return authorize(browser, app, email=EMAIL, **kw)


# ---- discovery and keys ----------------------------------------------------------------------------------


def test_discovery_document(browser: Browser) -> None:
    meta = browser.get("/.well-known/openid-configuration").json()
    issuer = meta["issuer"]
    assert issuer == "http://127.0.0.1:8000"
    for name, path in (("authorization_endpoint", "/authorize"), ("token_endpoint", "/token"),
                       ("userinfo_endpoint", "/userinfo"), ("jwks_uri", "/jwks"),
                       ("end_session_endpoint", "/logout"), ("revocation_endpoint", "/revoke"),
                       ("introspection_endpoint", "/introspect")):
        assert meta[name] == issuer + path
    assert meta["response_types_supported"] == ["code"]
    assert meta["subject_types_supported"] == ["pairwise"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert {"identite_pivot", "profile", "birth", "email", "given_name", "birthcountry"} <= set(meta["scopes_supported"])
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]


def test_jwks_has_distinct_kids_and_no_private_parts(browser: Browser) -> None:
    keys = browser.get("/jwks").json()["keys"]
    kids = [k["kid"] for k in keys]
    assert len(kids) == len(set(kids)) >= 2
    assert {k["alg"] for k in keys} == {"ES256", "RS256"}
    for key in keys:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
    rsa = next(k for k in keys if k["kty"] == "RSA")
    assert len(base64.urlsafe_b64decode(rsa["n"] + "==")) * 8 == 3072


# ---- the happy flow and the ID token -------------------------------------------------------------------


def test_code_flow_and_id_token(browser: Browser, citizen: str, app_: App) -> None:
    flow = logged_in_flow(browser, app_)
    assert flow.steps == ["login", "consent"]
    result = flow.result
    assert result["state"] == flow.params["state"]
    assert result["iss"] == "http://127.0.0.1:8000"  # RFC 9207
    token = exchange(browser, flow)
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    assert token.headers["cache-control"] == "no-store"
    header, claims = verify_id_token(browser, body["id_token"])
    assert header["alg"] == "ES256" and header["kid"] in {k["kid"] for k in browser.get("/jwks").json()["keys"]}
    now = time.time()
    assert claims["iss"] == "http://127.0.0.1:8000" and claims["aud"] == app_.client_id
    assert now - 5 <= claims["iat"] <= now + 5 and claims["exp"] > claims["iat"]
    assert claims["nonce"] == flow.params["nonce"]
    assert claims["acr"] == "eidas1" and claims["amr"] == ["pwd"] and claims["sid"]
    assert abs(claims["auth_time"] - now) < 10
    assert len(claims["sub"]) == 66 and claims["sub"].endswith("v1")


def test_consent_page_says_what_the_app_receives(browser: Browser, citizen: str, engine) -> None:
    app = make_oidc_app(engine, scope="openid identite_pivot email")
    flow = authorize(browser, app, email=EMAIL, consent=None, scope="openid identite_pivot email")
    page = flow.response.text
    for line in ("Inscriptions scolaires", "Vos prénoms", "Votre nom de naissance", "Votre date de naissance",
                 "Votre sexe", "Votre commune de naissance", "Votre pays de naissance", "Votre adresse e-mail"):
        assert line in page
    assert 'name="decision" value="allow"' in page and 'name="decision" value="deny"' in page


def test_consent_is_remembered_and_asked_again_for_more(browser: Browser, citizen: str, app_: App) -> None:
    assert logged_in_flow(browser, app_).steps == ["login", "consent"]
    assert authorize(browser, app_).steps == []  # logged in, consent remembered: straight back to the app
    assert authorize(browser, app_, scope="openid email").steps == ["consent"]
    assert authorize(browser, app_, scope="openid email profile").steps == []


def test_allowing_an_app_at_the_same_moment_as_another_tab_still_gives_the_code(
        browser: Browser, citizen: str, app_: App, engine) -> None:
    """Two tabs of one citizen allow the same app at once: the second to store the remembered
    consent finds the first's row; it adds its scopes to it and the app gets its code (not a 500)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("concurrent writers: PostgreSQL (SQLite has a single writer)")
    from sqlalchemy import event

    from vault.auth.models import Citizen
    from vault.oidc.models import Consent

    with Session(engine) as db:
        citizen_id = db.exec(select(Citizen.id).where(Citizen.email == citizen)).one()
    raced: list[bool] = []

    def other_tab_first(conn, cursor, statement, *args) -> None:
        if statement.startswith("INSERT INTO oauth_consent") and not raced:
            raced.append(True)  # the other tab's transaction commits just before this one's insert
            with Session(engine) as other:
                other.add(Consent(citizen_id=citizen_id, client_id=app_.client_id, scope="email openid"))
                other.commit()

    event.listen(engine, "before_cursor_execute", other_tab_first)
    try:
        flow = logged_in_flow(browser, app_)
    finally:
        event.remove(engine, "before_cursor_execute", other_tab_first)
    assert raced and flow.steps == ["login", "consent"]
    assert "code" in flow.result
    with Session(engine) as db:
        assert db.get(Consent, (citizen_id, app_.client_id)).scope == "email openid profile"


def test_consent_refused(browser: Browser, citizen: str, app_: App) -> None:
    flow = logged_in_flow(browser, app_, consent="deny")
    assert flow.result["error"] == "access_denied" and flow.result["state"] == flow.params["state"]


# ---- userinfo ------------------------------------------------------------------------------------------


@pytest.fixture
def tokens(browser: Browser, citizen: str, app_: App) -> dict:
    flow = logged_in_flow(browser, app_, scope="openid profile birth email")
    return exchange(browser, flow).json()


def test_userinfo_get_post_header_post_body(browser: Browser, tokens: dict) -> None:
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    answers = [browser.get("/userinfo", headers=bearer), browser.post("/userinfo", headers=bearer),
               browser.post("/userinfo", data={"access_token": tokens["access_token"]})]
    for answer in answers:
        assert answer.status_code == 200, answer.text
    assert answers[0].json() == answers[1].json() == answers[2].json()
    info = answers[0].json()
    assert info == {"sub": info["sub"], "given_name": "Jeanne Marie", "family_name": "Martin",
                    "birthdate": "1990-05-17", "gender": "female", "preferred_username": "",
                    "birthplace": "69123", "birthcountry": "99100", "email": EMAIL}


@pytest.mark.parametrize(("scope", "claims"), [
    ("openid", set()),
    ("openid email", {"email"}),
    ("openid profile", {"given_name", "family_name", "birthdate", "gender", "preferred_username"}),
    ("openid birth", {"birthplace", "birthcountry"}),
    ("openid identite_pivot", {"given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry"}),
    ("openid given_name birthcountry", {"given_name", "birthcountry"}),
    ("email openid", {"email"}),  # scope order does not matter
])
def test_scopes_give_their_claims(browser: Browser, citizen: str, engine, scope: str, claims: set) -> None:
    app = make_oidc_app(engine, scope="openid profile birth email identite_pivot given_name birthcountry")
    flow = logged_in_flow(browser, app, scope=scope)
    access = exchange(browser, flow).json()["access_token"]
    info = browser.get("/userinfo", headers={"Authorization": f"Bearer {access}"}).json()
    assert set(info) == {"sub"} | claims


def test_userinfo_refuses_bad_tokens(browser: Browser, tokens: dict) -> None:
    missing = browser.get("/userinfo")  # RFC 6750 §3.1: no credentials, a bare challenge
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = browser.get("/userinfo", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    both = browser.post("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"},
                        data={"access_token": tokens["access_token"]})
    assert both.status_code == 400


def test_signed_userinfo(browser: Browser, citizen: str, engine) -> None:
    app = make_oidc_app(engine, userinfo_signed=True, id_token_alg="RS256")
    flow = logged_in_flow(browser, app)
    body = exchange(browser, flow).json()
    header, _ = verify_id_token(browser, body["id_token"])
    assert header["alg"] == "RS256"
    answer = browser.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert answer.headers["content-type"] == "application/jwt"
    _, claims = verify_id_token(browser, answer.text)
    assert claims["iss"] == "http://127.0.0.1:8000" and claims["aud"] == app.client_id
    assert claims["given_name"] == "Jeanne Marie"


# ---- request parameters -----------------------------------------------------------------------------------


def test_unknown_parameters_and_order_are_ignored(browser: Browser, citizen: str, app_: App) -> None:
    flow = logged_in_flow(browser, app_, extra_parameter="whatever", claims_locales="fr", scope="profile openid")
    assert "code" in flow.result


def test_authorization_request_by_post(browser: Browser, citizen: str, app_: App) -> None:
    flow = logged_in_flow(browser, app_, method="POST")
    assert exchange(browser, flow).status_code == 200


def test_login_hint_and_ui_locales(browser: Browser, citizen: str, app_: App) -> None:
    flow = authorize(browser, app_, login_hint=EMAIL, ui_locales="en-GB fr")
    login = browser.get(flow.location)
    assert f'value="{EMAIL}"' in login.text
    assert '<html lang="en">' in login.text and "Log in to continue to" in login.text


def test_acr_is_the_level_reached_never_higher(browser: Browser, citizen: str, app_: App) -> None:
    flow = logged_in_flow(browser, app_, acr_values="eidas2 eidas3")
    _, claims = verify_id_token(browser, exchange(browser, flow).json()["id_token"])
    assert claims["acr"] == "eidas1"


@pytest.mark.parametrize(("missing", "error"), [("response_type", "unsupported_response_type"),
                                                ("state", "invalid_request"), ("nonce", "invalid_request"),
                                                ("scope", "invalid_scope")])
def test_missing_parameters_are_redirected_errors(browser: Browser, app_: App, missing: str, error: str) -> None:
    flow = authorize(browser, app_, **{missing: None})
    assert flow.location.startswith(RP_CALLBACK)
    assert flow.result["error"] == error and flow.result["iss"] == "http://127.0.0.1:8000"


def test_nonce_may_be_optional_per_app(browser: Browser, citizen: str, engine) -> None:
    app = make_oidc_app(engine, require_nonce=False)
    flow = logged_in_flow(browser, app, nonce=None)
    _, claims = verify_id_token(browser, exchange(browser, flow).json()["id_token"])
    assert "nonce" not in claims


@pytest.mark.parametrize("redirect_uri", ["https://evil.example/callback", RP_CALLBACK + "/extra", RP_CALLBACK + "?a=1",
                                          None])
def test_bad_redirect_uri_shows_a_page_and_never_redirects(browser: Browser, app_: App, redirect_uri) -> None:
    flow = authorize(browser, app_, redirect_uri=redirect_uri)
    assert flow.response.status_code == 400 and "location" not in flow.response.headers
    assert "Demande de connexion incorrecte" in flow.response.text


def test_unknown_client_shows_a_page(browser: Browser) -> None:
    flow = authorize(browser, App(client_id="nobody", secret=None))
    assert flow.response.status_code == 400 and "location" not in flow.response.headers


# ---- prompt, max_age, id_token_hint -----------------------------------------------------------------------


def test_prompt_login_reauthenticates(browser: Browser, citizen: str, app_: App) -> None:
    first = logged_in_flow(browser, app_)
    _, before = verify_id_token(browser, exchange(browser, first).json()["id_token"])
    time.sleep(1.1)
    again = logged_in_flow(browser, app_, prompt="login")
    assert again.steps == ["login"]
    _, after = verify_id_token(browser, exchange(browser, again).json()["id_token"])
    assert after["auth_time"] > before["auth_time"]


def test_prompt_none(browser: Browser, citizen: str, app_: App) -> None:
    logged_out = authorize(browser, app_, prompt="none")
    assert logged_out.result["error"] == "login_required" and logged_out.result["state"] == logged_out.params["state"]
    browser.login(EMAIL)
    no_consent = authorize(browser, app_, prompt="none")
    assert no_consent.result["error"] == "consent_required"
    logged_in_flow(browser, app_)  # consent given
    silent = authorize(browser, app_, prompt="none")
    assert "code" in silent.result and silent.steps == []
    assert authorize(browser, app_, prompt="none login").result["error"] == "invalid_request"


def test_max_age(browser: Browser, citizen: str, app_: App) -> None:
    logged_in_flow(browser, app_)
    assert authorize(browser, app_, max_age="10000").steps == []
    time.sleep(1.1)
    assert authorize(browser, app_, max_age="1", email=EMAIL).steps == ["login"]
    # max_age=0 (OIDC Core §3.1.2.1: like prompt=login): one fresh login, then the code.
    zero = authorize(browser, app_, max_age="0", email=EMAIL)
    assert zero.steps == ["login"] and "code" in zero.result
    assert authorize(browser, app_, max_age="-3").result["error"] == "invalid_request"


def test_request_objects_and_other_response_modes_are_refused(browser: Browser, citizen: str, app_: App) -> None:
    # OIDC Core §6: refused with the right code (never silently ignored), state echoed to the app.
    for extra, error in (({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
                         ({"request_uri": "https://ecoles.example.fr/req/1"}, "request_uri_not_supported"),
                         ({"response_mode": "form_post"}, "invalid_request"),
                         ({"response_mode": "fragment"}, "invalid_request")):
        flow = authorize(browser, app_, **extra)
        assert flow.result["error"] == error and flow.result["state"] == flow.params["state"], extra
    assert "code" in authorize(browser, app_, response_mode="query", email=EMAIL).result


def test_id_token_hint(browser: Browser, app, citizen: str, app_: App) -> None:
    flow = logged_in_flow(browser, app_)
    id_token = exchange(browser, flow).json()["id_token"]
    same = authorize(browser, app_, prompt="none", id_token_hint=id_token)
    assert "code" in same.result
    # Someone else is logged in on this browser now: the app's hint does not match.
    logged_in(browser, make_citizen(app, email="other@example.org"))
    other = authorize(browser, app_, prompt="none", id_token_hint=id_token)
    assert other.result["error"] == "login_required"
    # Without prompt=none, one login is offered; if it still is not the hinted person, the app is
    # told (login_required), never a loop of login pages.
    relogin = authorize(browser, app_, id_token_hint=id_token, email="other@example.org")
    assert relogin.steps == ["login"] and relogin.result["error"] == "login_required"


# ---- codes ----------------------------------------------------------------------------------------------


def test_code_reuse_fails_and_revokes_the_tokens(browser: Browser, citizen: str, app_: App) -> None:
    flow = logged_in_flow(browser, app_)
    first = exchange(browser, flow).json()
    bearer = {"Authorization": f"Bearer {first['access_token']}"}
    assert browser.get("/userinfo", headers=bearer).status_code == 200
    replay = exchange(browser, flow)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert browser.get("/userinfo", headers=bearer).status_code == 401
    refresh = token_request(browser, app_, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert refresh.json()["error"] == "invalid_grant"


def test_code_reuse_also_revokes_the_tokens_refreshed_since(browser: Browser, citizen: str, app_: App) -> None:
    flow = logged_in_flow(browser, app_)
    first = exchange(browser, flow).json()
    refreshed = token_request(browser, app_, grant_type="refresh_token", refresh_token=first["refresh_token"]).json()
    assert exchange(browser, flow).json()["error"] == "invalid_grant"  # the code replayed
    bearer = {"Authorization": f"Bearer {refreshed['access_token']}"}
    assert browser.get("/userinfo", headers=bearer).status_code == 401
    again = token_request(browser, app_, grant_type="refresh_token", refresh_token=refreshed["refresh_token"])
    assert again.json()["error"] == "invalid_grant"


def test_code_expires_after_60_seconds(browser: Browser, citizen: str, app_: App, engine) -> None:
    from vault.db import utcnow

    flow = logged_in_flow(browser, app_)
    with Session(engine) as db:
        row = db.exec(select(AuthorizationCode)).one()
        assert timedelta(seconds=59) <= row.expires_at - row.created_at <= timedelta(seconds=60)
        db.exec(update(AuthorizationCode).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    assert exchange(browser, flow).json()["error"] == "invalid_grant"


def test_code_is_bound_to_client_and_redirect_uri(browser: Browser, citizen: str, app_: App, engine) -> None:
    other = make_oidc_app(engine)
    flow = logged_in_flow(browser, app_)
    stolen = token_request(browser, other, grant_type="authorization_code", code=flow.result["code"],
                           redirect_uri=RP_CALLBACK)
    assert stolen.json()["error"] == "invalid_grant"
    flow2 = authorize(browser, app_)
    wrong_uri = exchange(browser, flow2, redirect_uri="https://rp.example.org/other")
    assert wrong_uri.status_code == 400


# ---- client authentication --------------------------------------------------------------------------------


def test_client_secret_post_and_basic(browser: Browser, citizen: str, engine) -> None:
    post_app = make_oidc_app(engine, auth_method="client_secret_post")
    flow = logged_in_flow(browser, post_app)
    wrong = browser.post("/token", data={"grant_type": "authorization_code", "code": flow.result["code"],
                                         "redirect_uri": RP_CALLBACK, "client_id": post_app.client_id,
                                         "client_secret": "wrong"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"

    basic_app = make_oidc_app(engine, auth_method="client_secret_basic")
    flow = authorize(browser, basic_app, email=EMAIL)
    as_post = exchange(browser, flow)  # the app is registered for basic: post is refused
    assert as_post.json()["error"] == "invalid_client"
    flow = authorize(browser, basic_app)
    ok = browser.post("/token", auth=(basic_app.client_id, basic_app.secret),
                      data={"grant_type": "authorization_code", "code": flow.result["code"], "redirect_uri": RP_CALLBACK})
    assert ok.status_code == 200, ok.text


def test_private_key_jwt(browser: Browser, citizen: str, engine) -> None:
    import json
    import uuid

    from joserfc import jwk

    key = jwk.ECKey.generate_key("P-256", private=True)
    public = {"keys": [key.as_dict(private=False) | {"kid": "rp-1", "use": "sig"}]}
    app = make_oidc_app(engine, auth_method="private_key_jwt", jwks_json=json.dumps(public))
    flow = logged_in_flow(browser, app)
    now = int(time.time())

    def token_with(lifetime: int):
        assertion = jwt.encode({"alg": "ES256", "kid": "rp-1"},
                               {"iss": app.client_id, "sub": app.client_id, "aud": "http://127.0.0.1:8000/token",
                                "jti": str(uuid.uuid4()), "iat": now, "exp": now + lifetime}, key)
        return browser.post("/token", data={
            "grant_type": "authorization_code", "code": flow.result["code"], "redirect_uri": RP_CALLBACK,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion})

    # jti values are not stored: an assertion living longer than 5 minutes could be replayed for long.
    too_long = token_with(3600)
    assert too_long.status_code == 400 and too_long.json()["error"] == "invalid_client"
    answer = token_with(60)
    assert answer.status_code == 200, answer.text


# ---- PKCE -------------------------------------------------------------------------------------------------


def test_pkce_required_and_s256_only_for_public_apps(browser: Browser, citizen: str, engine) -> None:
    public = make_oidc_app(engine, auth_method="none")
    assert public.secret is None
    assert authorize(browser, public).result["error"] == "invalid_request"
    verifier, challenge = pkce_pair()
    plain = authorize(browser, public, code_challenge=challenge, code_challenge_method="plain")
    assert plain.result["error"] == "invalid_request"
    flow = authorize(browser, public, email=EMAIL, code_challenge=challenge, code_challenge_method="S256")
    wrong = exchange(browser, flow, code_verifier=pkce_pair()[0])
    assert wrong.json()["error"] == "invalid_grant"
    flow = authorize(browser, public, code_challenge=challenge, code_challenge_method="S256")
    assert exchange(browser, flow).json()["error"] == "invalid_request"  # verifier missing
    flow = authorize(browser, public, code_challenge=challenge, code_challenge_method="S256")
    assert exchange(browser, flow, code_verifier=verifier).status_code == 200


# ---- refresh tokens ---------------------------------------------------------------------------------------


def test_refresh_rotates_and_reuse_revokes_the_grant(browser: Browser, tokens: dict, app_: App) -> None:
    first = tokens["refresh_token"]
    rotated = token_request(browser, app_, grant_type="refresh_token", refresh_token=first)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["refresh_token"] != first and new["access_token"] != tokens["access_token"]
    assert browser.get("/userinfo", headers={"Authorization": f"Bearer {new['access_token']}"}).status_code == 200
    reuse = token_request(browser, app_, grant_type="refresh_token", refresh_token=first)
    assert reuse.json()["error"] == "invalid_grant"
    # The whole grant died: the newest tokens too.
    assert browser.get("/userinfo", headers={"Authorization": f"Bearer {new['access_token']}"}).status_code == 401
    assert token_request(browser, app_, grant_type="refresh_token",
                         refresh_token=new["refresh_token"]).json()["error"] == "invalid_grant"


def test_refresh_token_is_bound_to_its_client(browser: Browser, tokens: dict, app_: App, engine) -> None:
    thief = make_oidc_app(engine, allow_refresh=True)
    stolen = token_request(browser, thief, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    # Another app's attempt spends nothing: the app it was issued to still refreshes with it, once.
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert browser.get("/userinfo", headers=bearer).status_code == 200
    own = token_request(browser, app_, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert own.status_code == 200, own.text


def test_a_refresh_asking_for_more_scope_spends_nothing(browser: Browser, tokens: dict, app_: App) -> None:
    more = token_request(browser, app_, grant_type="refresh_token", refresh_token=tokens["refresh_token"],
                         scope="openid profile birth email phone")
    assert more.status_code == 400 and more.json()["error"] == "invalid_scope"
    same = token_request(browser, app_, grant_type="refresh_token", refresh_token=tokens["refresh_token"],
                         scope="openid email")
    assert same.status_code == 200, same.text
    assert same.json()["scope"] == "openid email"


def test_no_refresh_token_for_apps_not_allowed(browser: Browser, citizen: str, engine) -> None:
    app = make_oidc_app(engine, allow_refresh=False)
    body = exchange(browser, logged_in_flow(browser, app)).json()
    assert "refresh_token" not in body


# ---- pairwise sub -------------------------------------------------------------------------------------------


def test_sub_is_pairwise_per_sector_and_stable(browser: Browser, citizen: str, engine) -> None:
    school = make_oidc_app(engine, sector="education")
    canteen = make_oidc_app(engine, sector="education")
    portal = make_oidc_app(engine)

    def sub(app: App) -> str:
        flow = authorize(browser, app, email=EMAIL)
        return verify_id_token(browser, exchange(browser, flow).json()["id_token"])[1]["sub"]

    assert sub(school) == sub(canteen) == sub(school)
    assert sub(portal) != sub(school)


def test_sid_is_pairwise_per_sector_and_logout_still_finds_the_session(app, browser: Browser, citizen: str,
                                                                      engine) -> None:
    from vault.auth.models import LoginSession

    school = make_oidc_app(engine, sector="education")
    canteen = make_oidc_app(engine, sector="education")
    portal = make_oidc_app(engine, sector="mairie")

    def id_token(app_: App) -> str:
        return exchange(browser, authorize(browser, app_, email=EMAIL)).json()["id_token"]

    tokens = {name: id_token(app_) for name, app_ in (("school", school), ("canteen", canteen), ("portal", portal))}
    sids = {name: verify_id_token(browser, token)[1]["sid"] for name, token in tokens.items()}
    with Session(engine) as db:
        session_sids = set(db.exec(select(LoginSession.sid)).all())
    assert sids["school"] == sids["canteen"]  # one login, one sector: one sid
    assert sids["portal"] != sids["school"]  # another sector cannot join its subjects on the sid
    assert not session_sids & set(sids.values())  # no app sees the session's own sid

    # Logout from another device with the portal's hint ends this login session (the one it knows).
    with Browser(app) as elsewhere:
        out = elsewhere.get("/logout", params={"id_token_hint": tokens["portal"],
                                               "post_logout_redirect_uri": RP_LOGGED_OUT})
        assert out.status_code == 303 and out.headers["location"] == RP_LOGGED_OUT
    assert browser.get("/account").status_code == 303


# ---- revocation and introspection ----------------------------------------------------------------------------


def test_revocation_and_introspection(browser: Browser, tokens: dict, app_: App, engine) -> None:
    def introspect(app: App, value: str) -> dict:
        return browser.post("/introspect", data={"token": value, "client_id": app.client_id,
                                                 "client_secret": app.secret}).json()

    active = introspect(app_, tokens["access_token"])
    assert active["active"] is True and active["client_id"] == app_.client_id and active["scope"]
    assert active["sub"].endswith("v1")
    other = make_oidc_app(engine)
    assert introspect(other, tokens["access_token"]) == {"active": False}
    # A refresh token is judged by its own life, not its access token's.
    with Session(engine) as db:
        db.exec(update(OAuthToken).values(access_expires_at=utcnow() - timedelta(minutes=1)))
        db.commit()
    assert introspect(app_, tokens["access_token"]) == {"active": False}
    refresh = introspect(app_, tokens["refresh_token"])
    assert refresh["active"] is True and "token_type" not in refresh and refresh["exp"] > time.time() + 86_400
    revoked = browser.post("/revoke", data={"token": tokens["refresh_token"], "client_id": app_.client_id,
                                            "client_secret": app_.secret})
    assert revoked.status_code == 200
    assert introspect(app_, tokens["access_token"]) == {"active": False}
    assert browser.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 401


def test_token_endpoint_bad_requests(browser: Browser, app_: App) -> None:
    as_json = browser.post("/token", json={"grant_type": "authorization_code"})
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    unknown_grant = token_request(browser, app_, grant_type="password", username="a", password="b")
    assert unknown_grant.json()["error"] == "unsupported_grant_type"
    assert token_request(browser, app_, grant_type="authorization_code").json()["error"] == "invalid_request"


# ---- logout -----------------------------------------------------------------------------------------------


def test_rp_initiated_logout(browser: Browser, citizen: str, app_: App) -> None:
    id_token = exchange(browser, logged_in_flow(browser, app_)).json()["id_token"]
    refused = browser.get("/logout", params={"id_token_hint": id_token,
                                             "post_logout_redirect_uri": "https://evil.example/"})
    assert refused.status_code == 400 and "location" not in refused.headers
    assert "demande de déconnexion incorrecte" in refused.text and "connexion incorrecte" not in refused.text.replace(
        "déconnexion incorrecte", "")
    assert browser.get("/account").status_code == 200  # still logged in
    out = browser.get("/logout", params={"id_token_hint": id_token, "post_logout_redirect_uri": RP_LOGGED_OUT,
                                         "state": "bye42"})
    assert out.status_code == 303 and out.headers["location"] == RP_LOGGED_OUT + "?state=bye42"
    assert browser.get("/account").status_code == 303
    assert authorize(browser, app_, prompt="none").result["error"] == "login_required"


def test_logout_with_a_hint_from_before_a_new_login_still_logs_out(browser: Browser, citizen: str, app_: App) -> None:
    id_token = exchange(browser, logged_in_flow(browser, app_)).json()["id_token"]
    assert authorize(browser, app_, prompt="login", email=EMAIL).steps == ["login"]  # a new session, a new sid
    out = browser.get("/logout", params={"id_token_hint": id_token, "post_logout_redirect_uri": RP_LOGGED_OUT})
    assert out.headers["location"] == RP_LOGGED_OUT
    assert browser.get("/account").status_code == 303  # the same person: logged out here
    assert authorize(browser, app_, prompt="none").result["error"] == "login_required"


def test_logout_without_hint_asks_first(browser: Browser, citizen: str, app_: App) -> None:
    browser.login(EMAIL)
    page = browser.get("/logout", params={"post_logout_redirect_uri": RP_LOGGED_OUT, "client_id": app_.client_id})
    assert page.status_code == 200 and "Se déconnecter ?" in page.text
    assert browser.get("/account").status_code == 200
    confirmed = browser.submit("/account", {"post_logout_redirect_uri": RP_LOGGED_OUT, "client_id": app_.client_id},
                               action="/logout")
    assert confirmed.headers["location"] == RP_LOGGED_OUT
    assert browser.get("/account").status_code == 303


def test_forged_id_token_hint_is_refused(browser: Browser, citizen: str, app_: App) -> None:
    from joserfc import jwk

    forged = jwt.encode({"alg": "ES256"}, {"aud": app_.client_id, "sub": "x"},
                        jwk.ECKey.generate_key("P-256", private=True))
    params = {"id_token_hint": forged, "post_logout_redirect_uri": RP_LOGGED_OUT, "state": "s1"}
    # Treated as no hint: never a redirect to the address it names (nothing proves the app sent it).
    logged_out = browser.get("/logout", params=params)
    assert logged_out.status_code == 303 and logged_out.headers["location"] == "/?notice=logged_out"
    browser.login(EMAIL)
    asked = browser.get("/logout", params=params)  # logged in: the citizen is asked, as without a hint
    assert asked.status_code == 200 and "Se déconnecter ?" in asked.text
    assert RP_LOGGED_OUT not in asked.text and forged not in asked.text
    assert browser.get("/api/v1/me").status_code == 200  # still logged in until they confirm
    confirmed = browser.submit("/logout?" + urlencode(params), {}, action="/logout")
    assert confirmed.headers["location"] == "/?notice=logged_out" and browser.get("/api/v1/me").status_code == 401


# ---- "Mes applications" and disabled apps ----------------------------------------------------------------------


def test_my_apps_lists_and_revokes(browser: Browser, tokens: dict, app_: App) -> None:
    page = browser.get("/account/apps")
    assert "Inscriptions scolaires" in page.text and "Votre adresse e-mail" in page.text
    answer = browser.submit("/account/apps", {"client_id": app_.client_id}, action="/account/apps/revoke")
    assert answer.headers["location"] == "/account/apps?notice=revoked"
    assert "Aucune application" in browser.get("/account/apps").text
    assert browser.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 401
    assert authorize(browser, app_).steps == ["consent"]


def test_disabled_app_can_no_longer_log_in(browser: Browser, tokens: dict, app_: App, engine) -> None:
    from vault.oidc.clients import disable_client

    with Session(engine) as db:
        disable_client(db=db, client_id=app_.client_id)
        db.commit()
    assert authorize(browser, app_).response.status_code == 400
    assert browser.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 401


def test_key_rotation_keeps_old_tokens_verifiable(browser: Browser, tokens: dict, app, engine) -> None:
    header, _ = verify_id_token(browser, tokens["id_token"])
    with Session(engine) as db:
        new_kids = [key.kid for key in app.state.services.oidc.keystore.rotate(db)]
        db.commit()
    kids = {k["kid"] for k in browser.get("/jwks").json()["keys"]}
    assert header["kid"] in kids and set(new_kids) <= kids
    verify_id_token(browser, tokens["id_token"])



def test_demo_cookie_changed_into_other_json_counts_as_none(browser: Browser) -> None:
    # The demo app keeps a JSON object in its cookie; one changed into a list, a string or a number
    # is ignored like a missing cookie (it used to fail the page with a server error).
    for value in ("[1]", '"x"', "5"):
        browser.cookies.set("demo_rp", value, domain="testserver.local", path="/demo")
        logout = browser.get("/demo/logout")
        assert logout.status_code == 303 and "client_id=demo-app" in logout.headers["location"], value
        callback = browser.get("/demo/callback?state=abc")
        assert callback.status_code == 400 and "(state)" in callback.text, value
        browser.cookies.clear()
