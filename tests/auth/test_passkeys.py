"""Passkeys: a citizen adds one from "Mon compte" (after the password, and the TOTP code when TOTP is
on) and logs in with it; every rule of the ceremonies is broken once, with a software authenticator
making real ES256 signatures (tests/auth/softkey.py): the challenge reused, expired or of another
session, another origin, another RP ID, an unknown credential, another citizen's, a counter going
back. Each refusal says why, is logged, counts in the login throttle, and logs nobody in."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
import zipfile
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, col, select

from tests.auth.softkey import SoftKey
from tests.conftest import make_settings
from tests.factories import logged_in, make_citizen, make_oidc_app
from tests.oidc.oidc_support import authorize, exchange, verify_id_token
from tests.support import Browser
from vault.app import create_app
from vault.auth.models import LoginSession, Passkey, PasskeyChallenge
from vault.auth.passkeys import RelyingParty
from vault.db import utcnow
from vault.gdpr.service import Staff

ISSUER = "http://localhost:8000"


@pytest.fixture
def app(data_dir, database_url, engine):
    """The service at http://localhost:8000: RP ID "localhost" (browsers refuse an IP address)."""
    return create_app(make_settings(data_dir, database_url, issuer=ISSUER), engine=engine)


def key_for(**options) -> SoftKey:
    return SoftKey(origin=ISSUER, rp_id="localhost", **options)


def post_json(browser: Browser, url: str, body: dict, token: str):
    return browser.post(url, content=json.dumps(body), headers={"Content-Type": "application/json",
                                                                 "X-CSRF-Token": token})


def registration_options(browser: Browser, password: str, name: str = "Téléphone de Jeanne", **proof: str):
    token = browser.form_token("/account/passkeys/new")
    return post_json(browser, "/account/passkeys/options", {"name": name, "password": password, **proof}, token), token


def add_passkey(browser: Browser, citizen, key: SoftKey, name: str = "Téléphone de Jeanne", **proof: str):
    options, token = registration_options(browser, citizen.password, name, **proof)
    assert options.status_code == 200, options.text
    return post_json(browser, "/account/passkeys", {"credential": key.create(options.json())}, token)


def login_options(browser: Browser) -> tuple[dict, str]:
    token = browser.form_token("/login")
    options = post_json(browser, "/login/passkey/options", {}, token)
    assert options.status_code == 200, options.text
    return options.json(), token


def passkey_login(browser: Browser, key: SoftKey, *, email: str = "", **answer: object):
    options, token = login_options(browser)
    return post_json(browser, "/login/passkey", {"credential": key.get(options, **answer), "email": email,
                                                 "next": "/account"}, token)


def sessions(engine, citizen_id: uuid.UUID) -> list[LoginSession]:
    with Session(engine) as db:
        return list(db.exec(select(LoginSession).where(LoginSession.citizen_id == citizen_id)
                            .order_by(col(LoginSession.created_at))))


def stored(engine, key: SoftKey) -> Passkey:
    with Session(engine) as db:
        return db.exec(select(Passkey).where(Passkey.credential_id == key.id)).one()


@pytest.fixture
def citizen(app):
    return make_citizen(app)


@pytest.fixture
def enrolled(app, citizen):
    """The citizen with one passkey (device-bound, user verification on), and a browser not logged in."""
    key = key_for()
    with Browser(app) as browser:
        assert add_passkey(logged_in(browser, citizen), citizen, key).status_code == 200
    return citizen, key


# ---- the happy paths ----------------------------------------------------------------------------------


def test_add_a_passkey_then_log_in_with_it(app, citizen, engine) -> None:
    key = key_for()
    with Browser(app) as browser:
        logged_in(browser, citizen)
        options, token = registration_options(browser, citizen.password)
        assert options.status_code == 200
        created = options.json()
        # Resident key and user verification preferred, no attestation, the issuer's host as RP ID.
        assert created["rp"]["id"] == "localhost" and created["attestation"] == "none"
        assert created["authenticatorSelection"]["residentKey"] == "preferred"
        assert created["authenticatorSelection"]["userVerification"] == "preferred"
        assert created["excludeCredentials"] == []
        added = post_json(browser, "/account/passkeys", {"credential": key.create(created)}, token)
        assert added.status_code == 200 and added.json() == {"redirect": "/account?notice=passkey_added"}
        page = browser.get("/account?notice=passkey_added").text
        assert "Votre clé d'accès est enregistrée" in page and "Téléphone de Jeanne" in page and "Jamais" in page

        # The next one excludes it (the same authenticator would not make a second).
        again, _ = registration_options(browser, citizen.password, "Autre")
        assert [c["id"] for c in again.json()["excludeCredentials"]] == [key.id]

    passkey = stored(engine, key)
    assert passkey.name == "Téléphone de Jeanne" and passkey.backup_eligible is False
    assert passkey.attachment == "platform" and passkey.transports == "internal"

    with Browser(app) as browser:
        answer = passkey_login(browser, key)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"redirect": "/account"}
        assert browser.get("/api/v1/me").json()["email"] == citizen.email
        assert sessions(engine, citizen.id)[-1].amr.split() == ["hwk", "user", "mfa"]
        assert "Jamais" not in browser.get("/account").text  # last use shown
    assert stored(engine, key).sign_count == 1 and stored(engine, key).last_used_at is not None


def test_amr_swk_for_a_synced_passkey_and_no_mfa_without_user_verification(app, citizen, engine) -> None:
    synced, plain = key_for(backup_eligible=True), key_for(user_verified=False)
    with Browser(app) as browser:
        logged_in(browser, citizen)
        assert add_passkey(browser, citizen, synced, name="Gestionnaire de mots de passe").status_code == 200
        assert add_passkey(browser, citizen, plain, name="Clé USB").status_code == 200
    assert stored(engine, synced).backup_eligible is True
    with Browser(app) as browser:
        assert passkey_login(browser, synced).status_code == 200
        assert sessions(engine, citizen.id)[-1].amr.split() == ["swk", "user", "mfa"]
    with Browser(app) as browser:
        assert passkey_login(browser, plain).status_code == 200
        assert sessions(engine, citizen.id)[-1].amr.split() == ["hwk"]


def test_login_after_typing_the_email(app, enrolled, engine) -> None:
    citizen, key = enrolled
    with Browser(app) as browser:
        assert passkey_login(browser, key, email=citizen.email.upper()).status_code == 200


def test_the_passkey_reaches_the_id_token(app, enrolled) -> None:
    _citizen, key = enrolled
    oidc_app = make_oidc_app(app.state.services.engine, scope="openid profile")
    with Browser(app) as browser:
        assert passkey_login(browser, key).status_code == 200
        tokens = exchange(browser, authorize(browser, oidc_app, scope="openid profile")).json()
        _, claims = verify_id_token(browser, tokens["id_token"])
    assert claims["amr"] == ["hwk", "user", "mfa"]


# ---- the fresh proof ------------------------------------------------------------------------------------


def test_adding_needs_the_password_now(app, citizen, engine) -> None:
    with Browser(app) as browser:
        logged_in(browser, citizen)
        wrong, _ = registration_options(browser, "pas le bon mot de passe")
        assert wrong.status_code == 400
        assert wrong.json()["fields"] == {"password": "Mot de passe incorrect."}
        unnamed, _ = registration_options(browser, citizen.password, name="   ")
        assert unnamed.status_code == 400 and "name" in unnamed.json()["fields"]
        english = browser.get("/account?lang=en")
        assert english.status_code == 200
        wrong_en, _ = registration_options(browser, "pas le bon mot de passe")
        assert wrong_en.json()["fields"] == {"password": "Wrong password."}
    with Session(engine) as db:
        assert db.exec(select(PasskeyChallenge)).all() == []


def test_adding_needs_the_totp_code_when_totp_is_on(app, engine) -> None:
    citizen = make_citizen(app, totp=True)
    key = key_for()
    with Browser(app) as browser:
        logged_in(browser, citizen)
        assert 'name="otp"' in browser.get("/account/passkeys/new").text
        without, _ = registration_options(browser, citizen.password)
        assert without.status_code == 400 and list(without.json()["fields"]) == ["otp"]
        # A TOTP step is accepted once: the login used the current one, so take the next.
        assert citizen.totp is not None
        code = citizen.totp.at(time.time() + 30)
        assert add_passkey(browser, citizen, key, otp=code).status_code == 200


def test_a_registration_challenge_belongs_to_its_session(app, citizen) -> None:
    """Options asked (with the password) in one session cannot be answered from another."""
    key = key_for()
    with Browser(app) as first, Browser(app) as second:
        logged_in(first, citizen)
        logged_in(second, citizen)
        options, _ = registration_options(first, citizen.password)
        token = second.form_token("/account/passkeys/new")
        refused = post_json(second, "/account/passkeys", {"credential": key.create(options.json())}, token)
        assert refused.status_code == 400 and "a expiré ou a déjà servi" in refused.json()["error"]


def test_remove_a_passkey_needs_the_password_and_it_no_longer_logs_in(app, enrolled, engine) -> None:
    citizen, key = enrolled
    passkey_id = stored(engine, key).id
    with Browser(app) as browser:
        logged_in(browser, citizen)
        page = browser.get(f"/account/passkeys/{passkey_id}/remove")
        assert page.status_code == 200 and "Téléphone de Jeanne" in page.text
        wrong = browser.submit(f"/account/passkeys/{passkey_id}/remove", {"password": "non"})
        assert wrong.status_code == 400 and "Mot de passe incorrect." in wrong.text
        done = browser.submit(f"/account/passkeys/{passkey_id}/remove", {"password": citizen.password})
        assert done.status_code == 303 and done.headers["location"] == "/account?notice=passkey_removed"
        assert "Vous n'avez pas encore de clé d'accès." in browser.get("/account").text
    with Browser(app) as browser:
        refused = passkey_login(browser, key)
        assert refused.status_code == 400 and "n'est pas (ou plus) enregistrée" in refused.json()["error"]
        assert browser.get("/api/v1/me").status_code == 401


def test_another_citizens_passkey_cannot_be_removed(app, enrolled, engine) -> None:
    _, key = enrolled
    other = make_citizen(app)
    with Browser(app) as browser:
        logged_in(browser, other)
        path = f"/account/passkeys/{stored(engine, key).id}/remove"
        assert browser.get(path).status_code == 404
        assert browser.post(path, data={"password": other.password,
                                        "csrf_token": browser.form_token("/account")}).status_code == 404
    assert stored(engine, key)


# ---- refusals ----------------------------------------------------------------------------------------------


def assert_refused(answer, text: str, browser: Browser) -> None:
    assert answer.status_code == 400, answer.text
    assert text in answer.json()["error"]
    assert "set-cookie" not in answer.headers or "session=" not in answer.headers["set-cookie"]
    assert browser.get("/api/v1/me").status_code == 401


def test_a_challenge_is_used_once(app, enrolled, engine, caplog) -> None:
    _, key = enrolled
    with Browser(app) as browser:
        options, token = login_options(browser)
        answer = key.get(options)
        assert post_json(browser, "/login/passkey", {"credential": answer}, token).status_code == 200
    with Browser(app) as browser, caplog.at_level(logging.WARNING, logger="vault.auth.passkeys"):
        token = browser.form_token("/login")
        assert_refused(post_json(browser, "/login/passkey", {"credential": answer}, token),
                       "a expiré ou a déjà servi", browser)
    assert [r.reason for r in caplog.records] == ["unknown_challenge"]


def test_a_challenge_expires_after_five_minutes(app, enrolled, engine) -> None:
    _, key = enrolled
    with Browser(app) as browser:
        options, token = login_options(browser)
        with Session(engine) as db:
            row = db.exec(select(PasskeyChallenge)).one()
            assert timedelta(minutes=4, seconds=59) < row.expires_at - row.created_at <= timedelta(minutes=5)
            db.exec(update(PasskeyChallenge).values(expires_at=utcnow() - timedelta(seconds=1)))
            db.commit()
        assert_refused(post_json(browser, "/login/passkey", {"credential": key.get(options)}, token),
                       "a expiré ou a déjà servi", browser)


def test_a_registration_challenge_does_not_log_in(app, enrolled) -> None:
    citizen, key = enrolled
    with Browser(app) as browser:
        logged_in(browser, citizen)
        options, _ = registration_options(browser, citizen.password, "Autre")
    with Browser(app) as browser:
        token = browser.form_token("/login")
        assert_refused(post_json(browser, "/login/passkey", {"credential": key.get(options.json())}, token),
                       "a expiré ou a déjà servi", browser)


@pytest.mark.parametrize(("answer", "reason"), [
    ({"origin": "https://vault.example.evil"}, "wrong_origin"),
    ({"origin": "http://localhost:8001"}, "wrong_origin"),
    ({"rp_id": "example.org"}, "wrong_rp_id"),
])
def test_wrong_origin_or_rp_id_is_refused_and_logged(app, enrolled, caplog, answer, reason) -> None:
    _, key = enrolled
    with Browser(app) as browser, caplog.at_level(logging.WARNING, logger="vault.auth.passkeys"):
        assert_refused(passkey_login(browser, key, **answer), "n'a pas pu être vérifiée", browser)
    assert [r.reason for r in caplog.records] == [reason]


def test_a_forged_signature_is_refused(app, enrolled, caplog) -> None:
    _, key = enrolled
    impostor = key_for()
    impostor.credential_id, impostor.user_handle = key.credential_id, key.user_handle  # same id, another key
    with Browser(app) as browser, caplog.at_level(logging.WARNING, logger="vault.auth.passkeys"):
        assert_refused(passkey_login(browser, impostor), "n'a pas pu être vérifiée", browser)
    assert [r.reason for r in caplog.records] == ["bad_signature"]


def test_an_unknown_credential_is_refused(app, enrolled, caplog) -> None:
    with Browser(app) as browser, caplog.at_level(logging.WARNING, logger="vault.auth.passkeys"):
        assert_refused(passkey_login(browser, key_for()), "n'est pas (ou plus) enregistrée", browser)
    assert [r.reason for r in caplog.records] == ["unknown_credential"]


def test_another_citizens_credential_is_refused(app, enrolled, caplog) -> None:
    """Typed the other account's email, or an authenticator claiming another user handle."""
    _citizen, key = enrolled
    other = make_citizen(app)
    with Browser(app) as browser, caplog.at_level(logging.WARNING, logger="vault.auth.passkeys"):
        assert_refused(passkey_login(browser, key, email=other.email), "n'appartient pas au compte indiqué", browser)
        assert_refused(passkey_login(browser, key, user_handle=other.id.bytes), "n'appartient pas au compte indiqué",
                       browser)
    assert [r.reason for r in caplog.records] == ["not_the_typed_account", "user_handle_of_another_citizen"]


def test_a_sign_counter_going_back_is_refused_and_logged(app, enrolled, engine, caplog) -> None:
    _citizen, key = enrolled
    with Browser(app) as browser:
        assert passkey_login(browser, key, counter=7).status_code == 200
    with Browser(app) as browser, caplog.at_level(logging.INFO, logger="vault.auth.passkeys"):
        assert_refused(passkey_login(browser, key, counter=3), "semble avoir été copiée", browser)
        assert_refused(passkey_login(browser, key, counter=7), "semble avoir été copiée", browser)  # not increased
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[0].getMessage().startswith("passkey sign counter did not increase")
    assert (warnings[0].stored_count, warnings[0].received_count) == (7, 3)
    logged = " ".join(json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert key.id not in logged and "publicKey" not in logged  # no credential material in the logs
    assert stored(engine, key).sign_count == 7
    with Browser(app) as browser:
        assert passkey_login(browser, key, counter=8).status_code == 200


def test_an_authenticator_without_counter_is_accepted(app, citizen, engine) -> None:
    """0 then 0 (synced passkeys often keep no counter): not a counter going back."""
    key = key_for(backup_eligible=True)
    with Browser(app) as browser:
        assert add_passkey(logged_in(browser, citizen), citizen, key).status_code == 200
    for _ in range(2):
        with Browser(app) as browser:
            assert passkey_login(browser, key, counter=0).status_code == 200


def test_passkey_logins_are_throttled_like_passwords(app, enrolled, engine) -> None:
    citizen, key = enrolled
    with Browser(app) as browser:
        for _ in range(5):
            assert passkey_login(browser, key, origin="https://evil.example").status_code == 400
        locked = passkey_login(browser, key)
        assert locked.status_code == 429 and "Trop de tentatives" in locked.json()["error"]
        assert int(locked.headers["Retry-After"]) > 0
        assert browser.get("/api/v1/me").status_code == 401
        # The password login of that account is locked too: the same counter.
        assert browser.login(citizen.email, citizen.password).status_code == 429


def test_malformed_answers_and_missing_csrf(app, enrolled) -> None:
    with Browser(app) as browser:
        _options, token = login_options(browser)
        for credential in (None, "not json", {"id": "x"}, {"id": "x", "rawId": "x", "type": "public-key",
                                                             "response": {"clientDataJSON": "!!"}}):
            answer = post_json(browser, "/login/passkey", {"credential": credential}, token)
            assert answer.status_code == 400 and answer.json()["error"]
        no_csrf = browser.post("/login/passkey/options", content="{}", headers={"Content-Type": "application/json"})
        assert no_csrf.status_code == 403
        as_form = browser.post("/login/passkey/options", data={"csrf_token": token})
        assert as_form.status_code == 415


# ---- pages, no JavaScript, an IP address as issuer -------------------------------------------------------------


def test_pages_without_javascript_say_passkeys_need_it(app, citizen) -> None:
    with Browser(app) as browser:
        login = browser.get("/login").text
        assert "Se connecter avec une clé d'accès" in login and "<noscript>" in login
        assert "a besoin de JavaScript" in login and '<script src="/static/passkeys.js" defer>' in login
        logged_in(browser, citizen)
        new = browser.get("/account/passkeys/new").text
        assert "ont besoin de JavaScript" in new
        posted = browser.submit("/account/passkeys/new", {"name": "Téléphone", "password": citizen.password})
        assert posted.status_code == 400 and "ont besoin de JavaScript" in posted.text


def test_no_passkeys_on_an_ip_address(settings, engine) -> None:
    """Browsers refuse an IP address as RP ID: the pages do not offer what cannot work."""
    assert RelyingParty.of(settings).rp_id == "127.0.0.1" and not RelyingParty.of(settings).usable
    assert RelyingParty.of(make_settings(settings.data_dir, "sqlite://", issuer="https://moncompte.ville.fr")).usable
    ip_app = create_app(settings, engine=engine)
    with Browser(ip_app) as browser:
        assert "clé d'accès" not in browser.get("/login").text
        token = browser.form_token("/login")
        assert post_json(browser, "/login/passkey/options", {}, token).status_code == 404


# ---- GDPR ----------------------------------------------------------------------------------------------------


def test_export_lists_passkeys_and_erasure_deletes_them(app, enrolled, engine) -> None:
    citizen, key = enrolled
    gdpr = app.state.services.gdpr
    dpo = Staff(actor="staff:test", label="DPO de test")
    with Session(engine) as db:
        archive = b"".join(gdpr.export(db, citizen_id=citizen.id, by=dpo))
        db.commit()
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        listed = json.loads(zf.read("cles-d-acces.json"))
        assert "cles-d-acces.json" in zf.read("LISEZ-MOI.txt").decode()
    assert [p["nom"] for p in listed] == ["Téléphone de Jeanne"] and listed[0]["ajoutee_le"]
    assert key.id not in json.dumps(listed)
    with Session(engine) as db:
        gdpr.erase(db, citizen_id=citizen.id, reason="test", by=dpo)
    with Session(engine) as db:
        assert db.exec(select(Passkey)).all() == []
