""""S'identifier avec FranceConnect" against a stand-in configured like FranceConnect: a first login
opens an account from the pivot identity, an existing account is linked only after its password,
the identity is certified and refreshed, our ID tokens say so, logout goes through FranceConnect,
and every bad answer is a plain failure page with nothing created or linked."""

from __future__ import annotations

import time

import pytest
from joserfc import jwk, jwt
from sqlmodel import Session, select

from tests.factories import make_citizen, make_oidc_app
from tests.federation.conftest import VAULT, local, query
from tests.oidc.oidc_support import authorize, exchange, verify_id_token
from tests.support import PASSWORD, RP_LOGGED_OUT, Browser
from vault.auth.federation import FederationClient, FederationError, IdentityProvider
from vault.auth.models import Citizen, FederatedIdentity, LoginSession

FAILED = "La connexion n'a pas abouti"


def start(browser: Browser, next_path: str = "/account") -> str:
    answer = browser.get(f"/login/franceconnect?next={next_path}")
    assert answer.status_code == 303, answer.text[:300]
    return answer.headers["location"]


def fc_login(browser: Browser, fc_user, login: str = "angela", next_path: str = "/account"):
    back = fc_user.authorize(start(browser, next_path), login)
    assert back.startswith(f"{VAULT}/login/franceconnect/callback"), back
    return browser.get(local(back))


def citizens(engine) -> list[Citizen]:
    with Session(engine) as db:
        return list(db.exec(select(Citizen)))


def test_the_buttons_show_only_when_franceconnect_is_configured(browser: Browser, citizen_browser_fc) -> None:
    assert "S'identifier avec" not in browser.get("/login").text
    assert browser.get("/login/franceconnect").status_code == 404
    page = citizen_browser_fc.get("/login?next=/documents")
    assert "S'identifier avec" in page.text and 'href="/login/franceconnect?next=/documents"' in page.text
    assert "S'identifier avec" in citizen_browser_fc.get("/register").text


def test_a_first_login_opens_a_certified_account_from_the_pivot_identity(citizen_browser_fc, fc_user, engine,
                                                                          franceconnect) -> None:
    url = start(citizen_browser_fc, "/documents")
    params = query(url)
    assert url.startswith(franceconnect.issuer) and params["acr_values"] == "eidas1"
    assert len(params["state"]) >= 32 and len(params["nonce"]) >= 32 and "code_challenge" not in params
    assert "identite_pivot" in params["scope"] or "given_name" in params["scope"]
    back = fc_user.authorize(url, "angela")
    assert query(back)["iss"] == franceconnect.issuer
    answer = citizen_browser_fc.get(local(back))
    assert answer.status_code == 303 and answer.headers["location"] == "/documents"
    assert citizen_browser_fc.get("/account").status_code == 200
    [citizen] = citizens(engine)
    assert (citizen.given_name, citizen.family_name, str(citizen.birthdate), citizen.birthplace) == (
        "Angela Claire Louise", "DUBOIS", "1962-08-24", "75107")
    assert citizen.email == "angela.dubois@example.org" and citizen.email_verified_at is not None
    assert citizen.identity_source == "franceconnect" and citizen.identity_certified_at is not None
    with Session(engine) as db:
        session = db.exec(select(LoginSession)).one()
        assert session.amr == "fc" and session.federation == "franceconnect" and session.federation_id_token
    # Replaying FranceConnect's callback finds nothing: the state was single use.
    assert citizen_browser_fc.get(local(back)).status_code == 400
    assert len(citizens(engine)) == 1


def test_our_id_tokens_say_how_and_whether_the_identity_is_certified(citizen_browser_fc, fc_user, engine) -> None:
    fc_login(citizen_browser_fc, fc_user)
    app = make_oidc_app(engine)
    flow = authorize(citizen_browser_fc, app)
    _, claims = verify_id_token(citizen_browser_fc, exchange(citizen_browser_fc, flow).json()["id_token"])
    assert claims["amr"] == ["fc"] and claims["identity_certified"] is True
    # A self-declared account says the opposite.
    make_citizen(citizen_browser_fc.app, email="self@example.org")
    with Browser(citizen_browser_fc.app) as other:
        flow = authorize(other, app, email="self@example.org")
        _, claims = verify_id_token(other, exchange(other, flow).json()["id_token"])
    assert claims["amr"] == ["pwd"] and claims["identity_certified"] is False


def test_an_existing_account_is_linked_only_after_its_password(citizen_browser_fc, fc_user, engine, fc_app) -> None:
    make_citizen(fc_app, email="angela.dubois@example.org", given_name="Angie", family_name="Dubois")
    answer = fc_login(citizen_browser_fc, fc_user)
    assert answer.status_code == 303 and answer.headers["location"] == "/login/franceconnect/link"
    page = citizen_browser_fc.get("/login/franceconnect/link")
    assert "angela.dubois@example.org" in page.text and 'name="password"' in page.text
    assert citizen_browser_fc.get("/account").status_code == 303  # not logged in yet
    wrong = citizen_browser_fc.submit("/login/franceconnect/link", {"password": "pas le bon mot de passe"})
    assert wrong.status_code == 401
    with Session(engine) as db:
        assert db.exec(select(FederatedIdentity)).first() is None  # nothing linked
        assert db.exec(select(Citizen)).one().given_name == "Angie"
    done = citizen_browser_fc.submit("/login/franceconnect/link", {"password": PASSWORD})
    assert done.status_code == 303 and done.headers["location"] == "/account"
    [citizen] = citizens(engine)
    assert citizen.given_name == "Angela Claire Louise" and citizen.identity_source == "franceconnect"
    # From now on FranceConnect logs straight in, refreshing the identity.
    citizen_browser_fc.post("/logout", data={"csrf_token": citizen_browser_fc.cookies.get("csrf", "")})
    with Browser(fc_app) as fresh:
        again = fc_login(fresh, fc_user)
        assert again.status_code == 303 and again.headers["location"] == "/account"


def test_an_account_with_totp_is_linked_only_with_the_code_too(citizen_browser_fc, fc_user, engine, fc_app) -> None:
    data = make_citizen(fc_app, email="angela.dubois@example.org", totp=True)
    fc_login(citizen_browser_fc, fc_user)
    without = citizen_browser_fc.submit("/login/franceconnect/link", {"password": PASSWORD})
    assert without.status_code == 401
    with_code = citizen_browser_fc.submit("/login/franceconnect/link", {"password": PASSWORD, "otp": data.totp.now()})
    assert with_code.status_code == 303


def test_logout_goes_through_franceconnect_and_comes_back(citizen_browser_fc, fc_user, engine, franceconnect) -> None:
    fc_login(citizen_browser_fc, fc_user)
    out = citizen_browser_fc.submit("/account", {}, action="/logout")
    assert out.status_code == 303 and out.headers["location"].startswith(franceconnect.issuer)
    params = query(out.headers["location"])
    assert params["id_token_hint"] and params["post_logout_redirect_uri"] == f"{VAULT}/logout/franceconnect/callback"
    assert citizen_browser_fc.get("/account").status_code == 303  # logged out here already
    back = fc_user.end_session(out.headers["location"])
    assert back.startswith(f"{VAULT}/logout/franceconnect/callback") and query(back)["state"] == params["state"]
    final = citizen_browser_fc.get(local(back))
    assert final.status_code == 303 and final.headers["location"] == "/?notice=logged_out"


def test_an_app_initiated_logout_goes_through_franceconnect_then_to_the_app(citizen_browser_fc, fc_user, engine,
                                                                             franceconnect) -> None:
    fc_login(citizen_browser_fc, fc_user)
    app = make_oidc_app(engine)
    id_token = exchange(citizen_browser_fc, authorize(citizen_browser_fc, app)).json()["id_token"]
    out = citizen_browser_fc.get("/logout", params={"id_token_hint": id_token, "post_logout_redirect_uri": RP_LOGGED_OUT,
                                                    "state": "s42"})
    assert out.headers["location"].startswith(franceconnect.issuer)
    final = citizen_browser_fc.get(local(fc_user.end_session(out.headers["location"])))
    assert final.headers["location"] == RP_LOGGED_OUT + "?state=s42"


def test_a_person_born_abroad_has_no_birthplace(citizen_browser_fc, fc_user, engine) -> None:
    assert fc_login(citizen_browser_fc, fc_user, "born_abroad").status_code == 303
    [citizen] = citizens(engine)
    assert citizen.birthplace == "" and citizen.birthcountry == "99139"


# ---- bad answers: a plain page, nothing created or linked -----------------------------------------------------


def test_a_cancelled_login_says_so_and_creates_nothing(citizen_browser_fc, fc_user, engine) -> None:
    back = fc_user.authorize(start(citizen_browser_fc), None)
    assert query(back)["error"] == "access_denied"
    page = citizen_browser_fc.get(local(back))
    assert page.status_code == 400 and "annulé la connexion avec FranceConnect" in page.text
    assert citizens(engine) == []


def test_a_wrong_or_missing_state_fails_and_creates_nothing(citizen_browser_fc, fc_user, engine) -> None:
    back = fc_user.authorize(start(citizen_browser_fc), "angela")
    forged = local(back).replace(query(back)["state"], "x" * 43)
    page = citizen_browser_fc.get(forged)
    assert page.status_code == 400 and FAILED in page.text
    assert citizen_browser_fc.get("/login/franceconnect/callback?code=abc").status_code == 400
    assert citizens(engine) == []


def test_an_id_token_for_another_login_is_refused_by_its_nonce(citizen_browser_fc, fc_user, engine) -> None:
    first = fc_user.authorize(start(citizen_browser_fc), "angela")
    second_url = start(citizen_browser_fc)
    # FranceConnect's code of the first login, brought back with the state (and nonce) of the second.
    swapped = local(first).replace(query(first)["state"], query(second_url)["state"])
    page = citizen_browser_fc.get(swapped)
    assert page.status_code == 400 and FAILED in page.text
    assert citizens(engine) == []


def test_an_iss_naming_another_provider_is_refused(citizen_browser_fc, fc_user, engine) -> None:
    back = fc_user.authorize(start(citizen_browser_fc), "angela")
    mixed = local(back).replace("iss=", "iss=https%3A%2F%2Fevil.example%2F&was=")
    assert citizen_browser_fc.get(mixed).status_code == 400
    assert citizens(engine) == []


def test_unsigned_userinfo_is_refused(settings, engine, franceconnect, fc_user) -> None:
    from tests.federation.conftest import fc_settings
    from vault.app import create_app

    app = create_app(fc_settings(settings, franceconnect, client="unsigned"), engine=engine)
    with Browser(app) as browser:
        page = fc_login(browser, fc_user)
        assert page.status_code == 400 and FAILED in page.text
    assert citizens(engine) == []


# ---- the ID token and userinfo checks, with tokens signed here (real keys) ------------------------------------

ISSUER = "https://fc.example"


class FakeKeys(FederationClient):
    """The client's checks against a key set given here (no network)."""

    def __init__(self, keys: jwk.KeySet) -> None:
        super().__init__(IdentityProvider(name="franceconnect", label="FranceConnect", issuer=ISSUER,
                                          client_id="vault", client_secret="x" * 40, scope="openid"))
        self._keys = keys

    def _keyset(self, *, refresh: bool = False) -> jwk.KeySet:  # noqa: ARG002  (the signature it replaces)
        assert self._keys is not None
        return self._keys


KEY = jwk.ECKey.generate_key("P-256", private=True, parameters={"kid": "fc-1"})
OTHER = jwk.ECKey.generate_key("P-256", private=True, parameters={"kid": "fc-1"})


def token(claims: dict, key=KEY, alg: str = "ES256") -> str:
    now = int(time.time())
    return jwt.encode({"alg": alg, "kid": "fc-1"}, {"iss": ISSUER, "aud": "vault", "sub": "abc" * 20 + "v1",
                                                    "iat": now, "exp": now + 60, "nonce": "n1", **claims}, key)


@pytest.mark.parametrize(("claims", "key", "problem"), [
    ({"aud": "another-app"}, KEY, "aud"),
    ({"iss": "https://evil.example"}, KEY, "iss"),
    ({"exp": int(time.time()) - 3600}, KEY, "exp"),
    ({"nonce": "replayed"}, KEY, "nonce"),
    ({}, OTHER, "signature"),
])
def test_the_id_token_checks(claims, key, problem) -> None:
    client = FakeKeys(jwk.KeySet([jwk.ECKey.import_key(KEY.as_dict(private=False))]))
    with pytest.raises(FederationError) as refused:
        client.check_id_token(token(claims, key), nonce="n1")
    assert problem in refused.value.reason
    assert client.check_id_token(token({}), nonce="n1")["sub"].endswith("v1")


def test_a_symmetric_id_token_is_refused() -> None:
    secret = jwk.OctKey.import_key("x" * 40)
    client = FakeKeys(jwk.KeySet([secret]))
    with pytest.raises(FederationError):
        client.check_id_token(token({}, key=secret, alg="HS256"), nonce="n1")



def test_a_certified_identity_cannot_be_rectified_here(citizen_browser_fc, fc_user, engine, fc_app) -> None:
    from vault.gdpr.service import GdprError, Staff

    fc_login(citizen_browser_fc, fc_user)
    [citizen] = citizens(engine)
    with Session(engine) as db, pytest.raises(GdprError, match="certifiée par FranceConnect"):
        fc_app.state.services.gdpr.rectify(db, citizen_id=citizen.id, changes={"family_name": "MARTIN"},
                                           reason="acte de mariage", by=Staff(actor="staff:t", label="DPO"))
    assert citizens(engine)[0].family_name == "DUBOIS"


def test_a_franceconnect_session_confirms_with_franceconnect_and_changes_its_email_without_a_password(
        citizen_browser_fc, fc_user, engine, settings) -> None:
    """An account opened through FranceConnect has no password its owner knows: the confirmation
    page offers FranceConnect again, which comes back confirmed; its email changes then without a
    password."""
    from tests.factories import stale_proof
    from tests.support import Outbox

    browser = citizen_browser_fc
    assert fc_login(browser, fc_user).status_code == 303
    stale_proof(engine)  # its password was made at random: nobody knows it
    asked = browser.get("/account/email")
    assert asked.status_code == 303 and asked.headers["location"] == "/account/confirm?next=/account/email"
    page = browser.get(asked.headers["location"])
    assert 'href="/login/franceconnect?next=/account/email"' in page.text
    back = fc_login(browser, fc_user, next_path="/account/email")
    assert back.status_code == 303 and back.headers["location"] == "/account/email"
    form = browser.get("/account/email")
    assert form.status_code == 200 and 'name="password"' not in form.text
    sent = browser.submit("/account/email", {"new_email": "angela.nouvelle@example.org"})
    assert sent.status_code == 303 and sent.headers["location"] == "/account?notice=email_change_sent"
    assert Outbox(settings.outbox_dir, engine).last("angela.nouvelle@example.org").path()


def test_the_confirmation_page_of_an_account_with_a_password_still_asks_for_it(citizen_browser_fc, fc_app,
                                                                               engine) -> None:
    from tests.factories import stale_proof

    citizen = make_citizen(fc_app)
    browser = citizen_browser_fc
    assert browser.login(citizen.email, citizen.password).status_code == 303
    stale_proof(engine)
    page = browser.get("/account/confirm?next=/account/totp")
    assert 'name="password"' in page.text and "/login/franceconnect" not in page.text  # logged in without it
    form = browser.get("/account/email")
    assert 'name="password"' in form.text
