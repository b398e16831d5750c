"""A password reset and "log out everywhere": every session ends, and so do the apps' grants (their
access and refresh tokens, codes not yet exchanged), while the consents stay. A reset of an account
with TOTP needs a code of the application or a recovery code on top of the mailed link: the mailbox
alone does not take the account over."""

from __future__ import annotations

import time

from sqlmodel import Session, select

from tests.factories import CitizenData, logged_in, make_citizen, make_oidc_app
from tests.oidc.oidc_support import authorize, exchange, token_request
from tests.support import App, Browser, Outbox
from vault.oidc.models import Consent

NEW_PASSWORD = "une toute nouvelle phrase de passe"


def app_tokens(browser: Browser, app: App, citizen: CitizenData) -> dict:
    """The citizen logs in to ``app`` (and consents): its access and refresh tokens."""
    flow = authorize(browser, app, email=citizen.email, password=citizen.password, scope="openid profile",
                     otp=citizen.totp.at(time.time() + 30) if citizen.totp else None)
    answer = exchange(browser, flow)
    assert answer.status_code == 200, answer.text
    return answer.json()


def introspect(browser: Browser, app: App, token: str) -> dict:
    return browser.post("/introspect", data={"token": token, "client_id": app.client_id,
                                             "client_secret": app.secret}).json()


def assert_grants_ended(browser: Browser, app: App, tokens: dict) -> None:
    refreshed = token_request(browser, app, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    assert introspect(browser, app, tokens["refresh_token"]) == {"active": False}
    assert introspect(browser, app, tokens["access_token"]) == {"active": False}
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert browser.get("/userinfo", headers=bearer).status_code == 401


def reset_link(browser: Browser, outbox: Outbox, email: str) -> tuple[str, str]:
    browser.submit("/password/forgot", {"email": email})
    path = outbox.last(email).path()
    return path, path.split("token=")[1]


def test_a_reset_ends_the_apps_grants(app, engine, outbox: Outbox) -> None:
    citizen = make_citizen(app)
    rp = make_oidc_app(engine, allow_refresh=True)
    with Browser(app) as rp_side, Browser(app) as browser:
        tokens = app_tokens(rp_side, rp, citizen)
        assert introspect(rp_side, rp, tokens["refresh_token"])["active"] is True

        path, token = reset_link(browser, outbox, citizen.email)
        done = browser.submit(path, {"token": token, "password": NEW_PASSWORD}, action="/password/reset")
        assert done.status_code == 303
        notice = browser.get(done.headers["location"])
        assert "ainsi que les applications et services en ligne" in notice.text
        assert "les applications et services en ligne où vous vous étiez connecté(e)" in outbox.last(citizen.email).body

        assert_grants_ended(rp_side, rp, tokens)
    with Session(engine) as db:  # the consent stays: the next login does not ask again
        assert db.exec(select(Consent).where(Consent.citizen_id == citizen.id)).first() is not None


def test_log_out_everywhere_ends_the_apps_grants(app, engine) -> None:
    citizen = make_citizen(app)
    rp = make_oidc_app(engine, allow_refresh=True)
    with Browser(app) as rp_side, Browser(app) as browser:
        tokens = app_tokens(rp_side, rp, citizen)
        logged_in(browser, citizen)
        assert "ferme aussi l'accès des applications" in browser.get("/account").text
        out = browser.submit("/account", {}, action="/logout/everywhere")
        assert out.status_code == 303
        assert "n'y ont plus accès" in browser.get(out.headers["location"]).text
        assert_grants_ended(rp_side, rp, tokens)
        # The app may ask again: the citizen logs in, no consent asked (it was kept), new tokens work.
        flow = authorize(rp_side, rp, email=citizen.email, password=citizen.password, scope="openid profile")
        assert "consent" not in flow.steps
        assert exchange(rp_side, flow).status_code == 200


def test_a_reset_of_an_account_with_totp_asks_for_a_code(app, outbox: Outbox) -> None:
    citizen = make_citizen(app, totp=True)
    with Browser(app) as browser:
        path, token = reset_link(browser, outbox, citizen.email)
        page = browser.get(path)
        assert page.status_code == 200 and '<label for="otp">' in page.text
        assert "guichet de la mairie" in page.text  # without the phone nor the codes: the counter

        missing = browser.submit(path, {"token": token, "password": NEW_PASSWORD}, action="/password/reset")
        assert missing.status_code == 400 and "protégé par la double authentification" in missing.text
        assert 'class="error-summary"' in missing.text
        wrong = browser.submit(path, {"token": token, "password": NEW_PASSWORD, "otp": "000000"},
                               action="/password/reset")
        assert wrong.status_code == 400 and "Code incorrect" in wrong.text
        assert browser.login(citizen.email, NEW_PASSWORD).status_code == 401  # nothing changed

        # A recovery code does it; the link still worked after the refusals.
        done = browser.submit(path, {"token": token, "password": NEW_PASSWORD, "otp": citizen.recovery_codes[0]},
                              action="/password/reset")
        assert done.status_code == 303 and done.headers["location"] == "/login?notice=password_reset"
        # TOTP stays on: the new password alone does not log in.
        step = browser.login(citizen.email, NEW_PASSWORD)
        assert step.status_code == 303 and step.headers["location"] == "/login/otp"


def test_reset_codes_are_throttled(app, outbox: Outbox) -> None:
    citizen = make_citizen(app, totp=True)
    with Browser(app) as browser:
        path, token = reset_link(browser, outbox, citizen.email)
        answers = [browser.submit(path, {"token": token, "password": NEW_PASSWORD, "otp": f"{n:06d}"},
                                  action="/password/reset").status_code
                   for n in range(app.state.settings.login_free_failures_per_account + 1)]
        assert answers[0] == 400 and answers[-1] == 429
        locked = browser.submit(path, {"token": token, "password": NEW_PASSWORD,
                                       "otp": citizen.totp.at(time.time() + 30)}, action="/password/reset")
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0


def test_a_reset_without_totp_needs_no_code(app, outbox: Outbox) -> None:
    citizen = make_citizen(app)
    with Browser(app) as browser:
        path, token = reset_link(browser, outbox, citizen.email)
        assert 'name="otp"' not in browser.get(path).text
        done = browser.submit(path, {"token": token, "password": NEW_PASSWORD}, action="/password/reset")
        assert done.status_code == 303
