"""App profiles: an app registered with ``fc-v1`` or ``fc-v2`` meets FranceConnect's behaviour for that
version (its endpoints, issuer, authorization response, userinfo, scopes and claims, acr answer,
logout); a standard app keeps the standard one; neither may use the other's endpoints."""

from __future__ import annotations

import re
import secrets

import pytest
from joserfc import jwk, jwt

from tests.factories import make_citizen, make_oidc_app
from tests.oidc.oidc_support import authorize, exchange
from tests.support import RP_LOGGED_OUT, Browser

EMAIL = "fc@example.org"
ISSUER = "http://127.0.0.1:8000"  # the test settings' VAULT_ISSUER
V2 = ISSUER + "/api/v2"
NONCE = "n" * 22  # FranceConnect v2 asks for at least 22 characters
# What FranceConnect v1's apps accept in their callback (its example app, service-provider-example, checks
# it and answers 400 otherwise): no parameter but code, state, error and error_description; a code of 10 to
# 100 characters among letters, digits, "-" and "_"; a description without ":", "/", "(", ")" or '"'.
V1_CODE = re.compile(r"[A-Za-z0-9_-]{10,100}")
V1_DESCRIPTION = re.compile(r"[\w .,;'+&=#@\t-]{1,500}")


@pytest.fixture
def citizen(app) -> str:
    return make_citizen(app, email=EMAIL, given_name="Angela Claire Louise", preferred_username="").email


@pytest.fixture
def fc_v2(engine):
    return make_oidc_app(engine, profile="fc-v2", scope="openid profile birth identite_pivot given_name email "
                                                       "idp_birthdate idp_id amr")


@pytest.fixture
def fc_v1(engine):
    return make_oidc_app(engine, profile="fc-v1", scope="openid profile identite_pivot email")


def decode(browser: Browser, token: str, jwks_path: str = "/api/v2/jwks") -> tuple[dict, dict]:
    keys = jwk.KeySet.import_key_set(browser.get(jwks_path).json())
    decoded = jwt.decode(token, keys, algorithms=["ES256", "RS256"])
    return dict(decoded.header), dict(decoded.claims)


def test_fc_v2_discovery_lives_under_api_v2_with_its_issuer(browser: Browser) -> None:
    answer = browser.get("/api/v2/.well-known/openid-configuration")
    assert answer.status_code == 200
    meta = answer.json()
    assert meta["issuer"] == V2
    assert meta["authorization_endpoint"] == V2 + "/authorize" and meta["token_endpoint"] == V2 + "/token"
    assert meta["userinfo_endpoint"] == V2 + "/userinfo" and meta["jwks_uri"] == V2 + "/jwks"
    assert meta["end_session_endpoint"] == V2 + "/session/end"
    assert meta["acr_values_supported"] == ["eidas1"]
    assert "HS256" not in meta["id_token_signing_alg_values_supported"]  # FranceConnect's unsafe choice, not copied
    assert {"given_name_array", "idp_birthdate", "idp_id"} <= set(meta["claims_supported"])
    assert {"identite_pivot", "idp_birthdate", "amr"} <= set(meta["scopes_supported"])
    assert meta["token_endpoint_auth_methods_supported"] == ["client_secret_post", "private_key_jwt"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert browser.get("/api/v2/jwks").json()["keys"]
    # FranceConnect v1 had no discovery document; the standard one is unchanged.
    assert browser.get("/api/v1/.well-known/openid-configuration").status_code == 404
    assert browser.get("/.well-known/openid-configuration").json()["issuer"] == ISSUER


def test_a_fc_v2_app_gets_franceconnect_v2s_flow(browser: Browser, citizen: str, fc_v2) -> None:
    flow = authorize(browser, fc_v2, email=EMAIL, path="/api/v2/authorize", acr_values="eidas1", nonce=NONCE,
                     scope="openid profile birth email idp_birthdate idp_id unknown_scope")
    assert flow.result["iss"] == V2 and flow.result["state"] == flow.params["state"]  # FranceConnect v2 sends iss
    tokens = exchange(browser, flow, path="/api/v2/token")
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    header, claims = decode(browser, body["id_token"])
    assert header["kid"] and header["alg"] == "ES256"
    assert claims["iss"] == V2 and claims["aud"] == fc_v2.client_id and claims["acr"] == "eidas1"
    assert claims["nonce"] == NONCE and claims["sub"].endswith("v1") and len(claims["sub"]) == 66
    assert "sid" not in claims  # FranceConnect's ID tokens carry none

    info = browser.get("/api/v2/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200 and info.headers["content-type"].startswith("application/jwt")
    _, user = decode(browser, info.text)  # always a signed JWT, as FranceConnect v2 sends it
    assert user["iss"] == V2 and user["aud"] == fc_v2.client_id and user["sub"] == claims["sub"]
    assert user["given_name"] == "Angela Claire Louise"
    assert user["given_name_array"] == ["Angela", "Claire", "Louise"]
    assert user["birthcountry"] == "99100" and user["idp_birthdate"] == user["birthdate"]
    assert user["idp_id"] and user["email"] == EMAIL
    assert "unknown_scope" not in body["scope"]  # a scope FranceConnect does not know is ignored


@pytest.mark.parametrize(("acr_values", "outcome"), [
    ("eidas1", "eidas1"), ("niveau_inconnu", "eidas1"), ("eidas1 eidas2 eidas3", "eidas1"), (None, "eidas1"),
    ("eidas2", "expected eidas1, got eidas2"), ("eidas2 eidas3", "expected eidas1, got eidas2"),
    ("inconnu eidas3", "expected eidas1, got eidas3"),
])
def test_fc_profiles_answer_an_acr_they_cannot_reach_as_franceconnect(browser: Browser, citizen: str, fc_v2,
                                                                       acr_values, outcome) -> None:
    flow = authorize(browser, fc_v2, email=EMAIL, path="/api/v2/authorize", acr_values=acr_values, nonce=NONCE)
    if outcome == "eidas1":
        _, claims = decode(browser, exchange(browser, flow, path="/api/v2/token").json()["id_token"])
        assert claims["acr"] == "eidas1"
    else:  # never a lower acr silently: FranceConnect's error, to the app, with its state
        assert flow.result["error"] == "invalid_acr" and outcome in flow.result["error_description"]
        assert flow.result["state"] == flow.params["state"] and "code" not in flow.result


def test_a_known_scope_the_app_is_not_registered_for_is_refused(browser: Browser, citizen: str, fc_v1) -> None:
    flow = authorize(browser, fc_v1, email=EMAIL, path="/api/v1/authorize", scope="openid birthplace", nonce=NONCE)
    assert flow.result["error"] == "invalid_scope" and flow.result["error_description"] == "requested scope is not allowed"


def test_a_fc_v1_app_gets_franceconnect_v1s_flow(browser: Browser, citizen: str, fc_v1) -> None:
    flow = authorize(browser, fc_v1, email=EMAIL, path="/api/v1/authorize", acr_values="eidas1", nonce=NONCE,
                     scope="openid identite_pivot email")
    assert set(flow.result) == {"code", "state"}  # no iss: FranceConnect v1 sends none
    body = exchange(browser, flow, path="/api/v1/token").json()
    _, claims = decode(browser, body["id_token"], "/jwks")  # signed ES256, never HS256 with the secret
    assert claims["iss"] == ISSUER and "sid" not in claims
    info = browser.get("/api/v1/userinfo?schema=openid", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.headers["content-type"].startswith("application/json")  # JSON, as v1 sends it
    user = info.json()
    assert user["preferred_username"] == "" and "given_name_array" not in user  # v1's identite_pivot
    assert user["birthplace"] and user["email"] == EMAIL

    out = browser.get("/api/v1/logout", params={"id_token_hint": body["id_token"], "state": "state42",
                                                "post_logout_redirect_uri": RP_LOGGED_OUT})
    assert out.status_code == 303 and out.headers["location"] == RP_LOGGED_OUT + "?state=state42"
    assert browser.get("/account").status_code == 303  # logged out


def test_fc_v1_answers_pass_the_callback_checks_of_a_v1_app(browser: Browser, citizen: str, fc_v1) -> None:
    state, nonce = "state" + secrets.token_hex(32), "nonce" + secrets.token_hex(32)  # the example app's forms
    flow = authorize(browser, fc_v1, email=EMAIL, path="/api/v1/authorize", acr_values="eidas1", state=state,
                     nonce=nonce, scope="openid profile")
    assert set(flow.result) == {"code", "state"} and flow.result["state"] == state
    assert V1_CODE.fullmatch(flow.result["code"])
    refused = authorize(browser, fc_v1, email=EMAIL, path="/api/v1/authorize", consent="deny", prompt="consent",
                        state=state, nonce=nonce, scope="openid profile")
    assert set(refused.result) == {"error", "error_description", "state"} and refused.result["error"] == "access_denied"
    assert V1_DESCRIPTION.fullmatch(refused.result["error_description"]), refused.result
    unregistered = authorize(browser, fc_v1, email=EMAIL, path="/api/v1/authorize", scope="openid birthplace",
                             state=state, nonce=nonce)
    assert set(unregistered.result) == {"error", "error_description", "state"}
    assert V1_DESCRIPTION.fullmatch(unregistered.result["error_description"]), unregistered.result


def test_fc_v2_logout_needs_the_hint_and_says_when_it_is_done(browser: Browser, citizen: str, fc_v2) -> None:
    flow = authorize(browser, fc_v2, email=EMAIL, path="/api/v2/authorize", acr_values="eidas1", nonce=NONCE)
    id_token = exchange(browser, flow, path="/api/v2/token").json()["id_token"]
    without = browser.get("/api/v2/session/end", params={"post_logout_redirect_uri": RP_LOGGED_OUT})
    assert without.status_code == 400 and "déconnexion incorrecte" in without.text
    assert browser.get("/account").status_code == 200  # nothing was done
    done = browser.get("/api/v2/session/end", params={"id_token_hint": id_token})
    assert done.status_code == 200 and "Vous êtes bien déconnecté(e)" in done.text
    assert browser.get("/account").status_code == 303


def test_an_app_uses_only_its_own_profiles_endpoints(browser: Browser, citizen: str, fc_v2, engine) -> None:
    standard = make_oidc_app(engine)
    wrong = authorize(browser, standard, email=EMAIL, path="/api/v2/authorize", nonce=NONCE)
    assert wrong.response.status_code == 400 and "'oidc' profile" in wrong.response.text
    assert "location" not in wrong.response.headers
    wrong_way = authorize(browser, fc_v2, email=EMAIL, path="/authorize", nonce=NONCE)
    assert wrong_way.response.status_code == 400 and "/api/v2/" in wrong_way.response.text
    flow = authorize(browser, fc_v2, email=EMAIL, path="/api/v2/authorize", acr_values="eidas1", nonce=NONCE)
    refused = exchange(browser, flow, path="/token")
    assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"


def test_the_standard_profile_is_unchanged(browser: Browser, citizen: str, engine) -> None:
    app = make_oidc_app(engine, userinfo_signed=False)
    flow = authorize(browser, app, email=EMAIL, acr_values="eidas2")
    assert flow.result["iss"] == ISSUER  # RFC 9207
    body = exchange(browser, flow).json()
    _, claims = decode(browser, body["id_token"], "/jwks")
    assert claims["acr"] == "eidas1" and claims["sid"]  # the level reached; acr_values is voluntary here
    info = browser.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert "given_name_array" not in info
