"""Step-up: the account's sensitive pages (TOTP, recovery codes, the export of the citizen's data,
passkeys, email, password) need a proof of identity less than 5 minutes old in this session. A
stolen session cookie alone must not be able to turn TOTP on with the thief's phone (and lock the
owner out), read new recovery codes, or download the citizen's data."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import update
from sqlmodel import Session, col, select

from tests.auth.softkey import SoftKey
from tests.conftest import make_settings
from tests.factories import CitizenData, logged_in, make_citizen
from tests.support import PASSWORD, Browser
from vault.app import create_app
from vault.auth.models import Citizen, LoginSession, RecoveryCode
from vault.db import utcnow


def age_proof(engine, citizen_id: uuid.UUID, minutes: int = 6) -> None:
    """The citizen logged in (proved it is them) ``minutes`` ago and has used the site since."""
    then = utcnow() - timedelta(minutes=minutes)
    with Session(engine) as db:
        db.exec(update(LoginSession).where(col(LoginSession.citizen_id) == citizen_id)
                .values(created_at=then, auth_time=then, stepped_up_at=then))
        db.commit()


def confirm_url(next_path: str) -> str:
    return "/account/confirm?next=" + quote(next_path)


def test_a_fresh_login_opens_the_totp_page_at_once(app) -> None:
    citizen = make_citizen(app)
    with Browser(app) as browser:
        logged_in(browser, citizen)
        page = browser.get("/account/totp")
        assert page.status_code == 200 and "data:image/svg+xml" in page.text


def test_totp_enrolment_needs_a_recent_proof(app, engine) -> None:
    citizen = make_citizen(app)
    with Browser(app) as browser:
        logged_in(browser, citizen)
        age_proof(engine, citizen.id)
        stale = browser.get("/account/totp")
        assert stale.status_code == 303 and stale.headers["location"] == confirm_url("/account/totp")
        # The form sent from an older tab does not enrol either: back to its page, through the confirmation.
        sent = browser.post("/account/totp", data={"otp": "123456", "csrf_token": browser.cookies["csrf"]})
        assert sent.status_code == 303 and sent.headers["location"] == confirm_url("/account/totp")
        with Session(engine) as db:
            assert db.get(Citizen, citizen.id).totp_secret is None  # no seed was even drawn

        page = browser.get(stale.headers["location"])
        assert page.status_code == 200 and "Confirmez que c'est bien vous" in page.text
        assert '<label for="password">' in page.text and 'name="next" value="/account/totp"' in page.text
        wrong = browser.submit(stale.headers["location"], {"password": "pas le bon mot de passe", "next": "/account/totp"})
        assert wrong.status_code == 400 and "Mot de passe incorrect." in wrong.text
        assert 'class="error-summary"' in wrong.text and 'aria-invalid="true"' in wrong.text
        empty = browser.submit(stale.headers["location"], {"password": "", "next": "/account/totp"})
        assert empty.status_code == 400 and "Saisissez votre mot de passe." in empty.text
        ok = browser.submit(stale.headers["location"], {"password": PASSWORD, "next": "/account/totp"})
        assert ok.status_code == 303 and ok.headers["location"] == "/account/totp"
        assert "data:image/svg+xml" in browser.get("/account/totp").text
        # Still fresh: the confirmation page steps aside.
        assert browser.get(confirm_url("/account/totp")).headers["location"] == "/account/totp"


def test_recovery_codes_and_turning_totp_off_need_a_recent_proof(app, engine) -> None:
    citizen = make_citizen(app, totp=True)
    with Browser(app) as browser:
        logged_in(browser, citizen)
        age_proof(engine, citizen.id)
        for action in ("/account/totp/recovery-codes", "/account/totp/disable"):
            answer = browser.post(action, data={"csrf_token": browser.cookies["csrf"]})
            assert answer.status_code == 303 and answer.headers["location"] == confirm_url("/account/totp"), action
        with Session(engine) as db:
            assert db.get(Citizen, citizen.id).totp_enabled_at is not None
            assert sorted(c.used_at is None for c in db.exec(select(RecoveryCode)
                                                               .where(RecoveryCode.citizen_id == citizen.id))) == [True] * 10

        # The code of the application is a proof too, as the page says.
        page = browser.get(confirm_url("/account/totp"))
        assert "Code à 6 chiffres de votre application" in page.text
        wrong = browser.submit(confirm_url("/account/totp"), {"otp": "000000", "next": "/account/totp"})
        assert wrong.status_code == 400 and "incorrect" in wrong.text
        # The login used the current time step; the next one (within the drift window) is still free.
        next_code = citizen.totp.at(time.time() + 30)
        ok = browser.submit(confirm_url("/account/totp"), {"otp": next_code, "next": "/account/totp"})
        assert ok.status_code == 303 and ok.headers["location"] == "/account/totp"
        codes = browser.submit("/account/totp", {}, action="/account/totp/recovery-codes")
        assert codes.status_code == 200 and len(re.findall(r"<code>[a-z2-9]{4}-", codes.text)) == 10
        off = browser.submit("/account/totp", {}, action="/account/totp/disable")
        assert off.status_code == 303 and off.headers["location"] == "/account?notice=totp_disabled"
    with Session(engine) as db:
        assert db.get(Citizen, citizen.id).totp_enabled_at is None


def test_the_export_of_my_data_needs_a_recent_proof(app, engine) -> None:
    citizen = make_citizen(app)
    with Browser(app) as browser:
        logged_in(browser, citizen)
        age_proof(engine, citizen.id)
        stale = browser.submit("/account/data", {}, action="/account/data/export")
        assert stale.status_code == 303 and stale.headers["location"] == confirm_url("/account/data")
        ok = browser.submit(stale.headers["location"], {"password": PASSWORD, "next": "/account/data"})
        assert ok.headers["location"] == "/account/data"
        archive = browser.submit("/account/data", {}, action="/account/data/export")
        assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"


def test_the_password_typed_to_change_the_address_counts_as_a_proof(app, engine) -> None:
    citizen = make_citizen(app)
    with Browser(app) as browser:
        logged_in(browser, citizen)
        age_proof(engine, citizen.id)
        sent = browser.submit("/account/email", {"password": PASSWORD, "new_email": "nouvelle@example.org"})
        assert sent.status_code == 303
        assert browser.get("/account/totp").status_code == 200


def test_the_confirmation_is_throttled_like_a_login(app, engine) -> None:
    citizen = make_citizen(app)
    with Browser(app) as browser:
        logged_in(browser, citizen)
        age_proof(engine, citizen.id)
        attempts = app.state.settings.login_free_failures_per_account
        answers = [browser.submit(confirm_url("/account/totp"), {"password": f"mauvais {n} mot de passe",
                                                                  "next": "/account/totp"}).status_code
                   for n in range(attempts + 1)]
        assert answers[0] == 400 and answers[-1] == 429
        locked = browser.submit(confirm_url("/account/totp"), {"password": PASSWORD, "next": "/account/totp"})
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
        assert "réessayez dans" in locked.text.lower()
        assert browser.get("/account/totp").status_code == 303  # still not confirmed


@pytest.mark.parametrize("target", ["https://evil.example.org/", "//evil.example.org/x", "/\\evil.example.org",
                                    "javascript:alert(1)"])
def test_the_confirmation_goes_on_to_a_page_of_this_site_only(app, engine, target: str) -> None:
    citizen = make_citizen(app)
    with Browser(app) as browser:
        logged_in(browser, citizen)
        age_proof(engine, citizen.id)
        ok = browser.submit(confirm_url(target), {"password": PASSWORD, "next": target})
        assert ok.status_code == 303 and ok.headers["location"] == "/account"


def test_the_confirmation_page_needs_a_login(app) -> None:
    with Browser(app) as browser:
        answer = browser.get(confirm_url("/account/totp"))
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")


def test_the_confirmation_page_in_english(app, engine) -> None:
    citizen = make_citizen(app, totp=True)
    with Browser(app) as browser:
        logged_in(browser, citizen)
        age_proof(engine, citizen.id)
        page = browser.get(confirm_url("/account/totp") + "&lang=en")
        assert page.status_code == 200 and "Confirm it is you" in page.text and "Confirmez" not in page.text


# ---- with a passkey -----------------------------------------------------------------------------------------

ISSUER = "http://localhost:8000"


@pytest.fixture
def passkey_app(data_dir, database_url, engine):
    """The service at http://localhost:8000: RP ID "localhost" (browsers refuse an IP address)."""
    return create_app(make_settings(data_dir, database_url, issuer=ISSUER), engine=engine)


def _post_json(browser: Browser, url: str, body: dict, token: str):
    return browser.post(url, content=json.dumps(body), headers={"Content-Type": "application/json",
                                                                 "X-CSRF-Token": token})


def _add_passkey(browser: Browser, citizen: CitizenData, key: SoftKey) -> None:
    token = browser.form_token("/account/passkeys/new")
    options = _post_json(browser, "/account/passkeys/options", {"name": "Téléphone", "password": citizen.password}, token)
    assert options.status_code == 200, options.text
    added = _post_json(browser, "/account/passkeys", {"credential": key.create(options.json())}, token)
    assert added.status_code == 200, added.text


def _confirm_with(browser: Browser, key: SoftKey):
    token = browser.form_token(confirm_url("/account/totp"))
    options = _post_json(browser, "/account/confirm/passkey/options", {}, token)
    assert options.status_code == 200, options.text
    return _post_json(browser, "/account/confirm/passkey",
                      {"credential": key.get(options.json()), "next": "/account/totp"}, token)


def test_a_passkey_of_the_account_is_a_proof(passkey_app, engine) -> None:
    owner, other = make_citizen(passkey_app), make_citizen(passkey_app)
    owner_key, other_key = SoftKey(origin=ISSUER, rp_id="localhost"), SoftKey(origin=ISSUER, rp_id="localhost")
    with Browser(passkey_app) as browser:
        logged_in(browser, other)
        _add_passkey(browser, other, other_key)
    with Browser(passkey_app) as browser:
        logged_in(browser, owner)
        _add_passkey(browser, owner, owner_key)
        age_proof(engine, owner.id)
        page = browser.get(confirm_url("/account/totp"))
        assert 'data-action="/account/confirm/passkey"' in page.text
        refused = _confirm_with(browser, other_key)  # a passkey, but another account's
        assert refused.status_code == 400 and "n'appartient pas au compte connecté" in refused.json()["error"]
        assert browser.get("/account/totp").status_code == 303
        ok = _confirm_with(browser, owner_key)
        assert ok.status_code == 200 and ok.json() == {"redirect": "/account/totp"}
        assert browser.get("/account/totp").status_code == 200


@pytest.mark.parametrize("target", ["/\t/evil.example.org/", "/\n/evil.example.org", "/\r\n/evil.example.org",
                                    "/\x7f/evil.example.org", "/account\\..\\x"])
def test_a_control_character_never_makes_the_next_page_another_site(app, engine, target: str) -> None:
    """Browsers drop tabs and newlines from an address ("/<tab>/host" opens "//host"), which the
    passkey confirmation hands to window.location: such a ``next`` goes to the account page."""
    citizen = make_citizen(app)
    with Browser(app) as browser:
        logged_in(browser, citizen)
        age_proof(engine, citizen.id)
        ok = browser.submit(confirm_url("/account/totp"), {"password": PASSWORD, "next": target})
        assert ok.status_code == 303 and ok.headers["location"] == "/account"


def test_a_burst_of_wrong_codes_on_the_confirmation_page_gets_no_more_checks_than_the_free_failures(
        settings, engine) -> None:
    """A stolen session testing TOTP codes in bursts: each try is counted before the code is
    checked, so no more than the free failures are checked before the lock answers."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from vault.app import create_app

    app = create_app(settings.model_copy(update={"login_free_failures_per_account": 3}), engine=engine)
    citizen = make_citizen(app, totp=True)
    with Browser(app) as browser:
        logged_in(browser, citizen)
        age_proof(engine, citizen.id)
        token = browser.form_token(confirm_url("/account/totp"))
        start = threading.Barrier(12)

        def one(n: int) -> int:
            start.wait()
            return browser.post("/account/confirm", data={"otp": f"{n:06d}", "next": "/account/totp",
                                                          "csrf_token": token}).status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(one, range(12)))
        assert answers.count(400) == 3 and answers.count(429) == 9, answers
        assert browser.get("/account/totp").status_code == 303  # still not confirmed
