"""What a citizen changes in "Mon compte", and the mails that tell them about security changes and
their erasure — each mail dated, the erasure's with its certificate attached."""

from __future__ import annotations

import email
import email.policy

from joserfc import jwk, jws

from tests.factories import citizen_browser, make_citizen
from tests.support import PASSWORD, Browser, Outbox
from vault.gdpr.service import Staff

NEW_PASSWORD = "une toute nouvelle phrase de passe"


def test_changing_the_password_keeps_this_device_and_logs_out_the_others(app, outbox: Outbox) -> None:
    citizen = make_citizen(app, email="change@example.org")
    with citizen_browser(app, citizen) as here, citizen_browser(app, citizen) as elsewhere:
        page = here.get("/account")
        assert 'href="/account/password"' in page.text
        wrong = here.submit("/account/password", {"password": "pas le mot de passe", "new_password": NEW_PASSWORD})
        assert wrong.status_code == 400 and "Mot de passe actuel incorrect" in wrong.text
        weak = here.submit("/account/password", {"password": PASSWORD, "new_password": "motdepasse123"})
        assert weak.status_code == 400 and 'id="new_password-error"' in weak.text
        same = here.submit("/account/password", {"password": PASSWORD, "new_password": PASSWORD})
        assert same.status_code == 400 and "différent" in same.text
        assert not [m for m in outbox.to(citizen.email) if "mot de passe a été changé" in m.subject]
        done = here.submit("/account/password", {"password": PASSWORD, "new_password": NEW_PASSWORD})
        assert done.status_code == 303 and done.headers["location"] == "/account?notice=password_changed"
        assert here.get("/account").status_code == 200  # this device stays
        assert elsewhere.get("/account").status_code == 303  # the others are out
    mail = outbox.last(citizen.email)
    assert mail.subject == "Votre mot de passe a été changé" and "Mot de passe oublié" in mail.body
    assert mail.headers["Date"]  # RFC 5322: every mail is dated
    with Browser(app) as fresh:
        assert fresh.login(citizen.email, PASSWORD).status_code == 401
        assert fresh.login(citizen.email, NEW_PASSWORD).status_code == 303


def test_wrong_current_passwords_are_throttled_like_logins(app) -> None:
    with citizen_browser(app, email="throttle@example.org") as browser:
        answers = [browser.submit("/account/password", {"password": f"faux {n}", "new_password": NEW_PASSWORD}).status_code
                   for n in range(6)]
    assert answers[:5] == [400] * 5 and answers[5] == 429


def test_turning_two_factor_login_on_and_off_is_mailed(app, outbox: Outbox) -> None:
    citizen = make_citizen(app, email="totp-mails@example.org", totp=True)
    assert outbox.last(citizen.email).subject == "La double authentification est activée"
    with citizen_browser(app, citizen) as browser:
        assert browser.submit("/account/totp", {"password": PASSWORD}, action="/account/totp/disable").status_code == 303
    assert outbox.last(citizen.email).subject == "La double authentification est désactivée"


def test_an_erasure_is_mailed_when_asked_and_when_done_with_its_certificate(app, outbox: Outbox, engine) -> None:
    from sqlmodel import Session

    citizen = make_citizen(app, email="erase-me@example.org")
    with citizen_browser(app, citizen) as browser:
        asked = browser.submit("/account/data", {"confirm": "yes"}, action="/account/data/erasure")
        assert asked.status_code == 303
    request_mail = outbox.last(citizen.email)
    assert request_mail.subject == "Votre demande d'effacement est enregistrée" and "au plus tard le" in request_mail.body
    with Session(engine) as db:
        certificate = app.state.services.gdpr.erase(db, citizen_id=citizen.id, reason="demande de la personne",
                                                    by=Staff(actor="staff:test", label="DPO"))
    done = outbox.last(citizen.email)
    assert done.subject == "Vos données ont été effacées"
    raw = email.message_from_bytes(sorted(outbox.folder.glob("*.eml"))[-1].read_bytes(), policy=email.policy.default)
    [attachment] = list(raw.iter_attachments())
    assert attachment.get_filename() == "certificat-effacement.jwt" and attachment.get_content_type() == "application/jwt"
    attached = attachment.get_content()
    attached = attached.decode() if isinstance(attached, bytes) else attached
    assert attached.strip() == certificate
    with Browser(app) as browser:  # the certificate verifies with the service's published keys
        keys = jwk.KeySet.import_key_set(browser.get("/jwks").json())
    assert jws.deserialize_compact(certificate, keys).headers()["typ"] == "erasure-certificate+jwt"


def test_changing_the_email_needs_the_password_and_the_new_address_s_link(app, outbox: Outbox, engine) -> None:
    from sqlmodel import Session

    from vault.auth.models import Citizen

    citizen = make_citizen(app, email="old@example.org")
    with citizen_browser(app, citizen) as browser:
        assert 'href="/account/email"' in browser.get("/account").text
        for form, field in (({"new_email": "new@example.org", "password": "faux"}, "password"),
                            ({"new_email": "old@example.org", "password": PASSWORD}, "new_email"),
                            ({"new_email": "pas-une-adresse", "password": PASSWORD}, "new_email")):
            refused = browser.submit("/account/email", form)
            assert refused.status_code == 400 and f'id="{field}-error"' in refused.text, form
        sent = browser.submit("/account/email", {"new_email": "New@Example.org", "password": PASSWORD})
        assert sent.status_code == 303 and sent.headers["location"] == "/account?notice=email_change_sent"
        with Session(engine) as db:
            assert db.get(Citizen, citizen.id).email == "old@example.org"  # nothing changes before the link
        told = outbox.last("old@example.org")
        assert told.subject == "Changement d'adresse e-mail demandé" and "n***@example.org" in told.body
        link = outbox.last("new@example.org").path()
        assert browser.get(link).status_code == 200  # a button: mail scanners consume nothing
        with Session(engine) as db:
            assert db.get(Citizen, citizen.id).email == "old@example.org"
        token = link.split("token=", 1)[1]
        confirmed = browser.submit(link, {"token": token}, action="/account/email/confirm")
        assert confirmed.status_code == 303 and confirmed.headers["location"] == "/account?notice=email_changed"
        reused = browser.post("/account/email/confirm", data={"token": token, "csrf_token": browser.form_token("/login")})
        assert reused.status_code == 400  # single use
    with Session(engine) as db:
        changed = db.get(Citizen, citizen.id)
        assert changed.email == "new@example.org" and changed.email_verified_at is not None
    assert outbox.last("old@example.org").subject == "L'adresse e-mail de votre compte a changé"
    with Browser(app) as fresh:
        assert fresh.login("new@example.org", PASSWORD).status_code == 303


def test_an_address_another_account_uses_is_not_taken_nor_revealed(app, outbox: Outbox, engine) -> None:
    from sqlmodel import Session

    from vault.auth.models import Citizen

    make_citizen(app, email="taken@example.org")
    citizen = make_citizen(app, email="mine@example.org")
    with citizen_browser(app, citizen) as browser:
        answer = browser.submit("/account/email", {"new_email": "taken@example.org", "password": PASSWORD})
        assert answer.status_code == 303 and answer.headers["location"] == "/account?notice=email_change_sent"
    assert outbox.last("taken@example.org").subject == "Une inscription a été tentée avec votre adresse"
    with Session(engine) as db:
        assert db.get(Citizen, citizen.id).email == "mine@example.org"


def test_a_rectification_request_reaches_the_register_in_the_persons_words(app, engine) -> None:
    from sqlmodel import Session, select

    from vault.gdpr.models import DataRequest

    with citizen_browser(app, email="rectify@example.org") as browser:
        empty = browser.submit("/account/data", {"details": "   "}, action="/account/data/rectification")
        assert empty.status_code == 400 and 'id="details-error"' in empty.text
        too_long = browser.submit("/account/data", {"details": "x" * 801}, action="/account/data/rectification")
        assert too_long.status_code == 400 and "x" * 100 in too_long.text  # what was typed is kept
        sent = browser.submit("/account/data", {"details": "Mon nom d'usage est Dupont, pas Durand."},
                              action="/account/data/rectification")
        assert sent.status_code == 303
        page = browser.get(sent.headers["location"])
        assert "demande de rectification est enregistrée" in page.text and "Rectification" in page.text
    with Session(engine) as db:
        [item] = db.exec(select(DataRequest)).all()
    assert item.kind == "rectification" and item.channel == "online"
    assert item.details == "Mon nom d'usage est Dupont, pas Durand."


def test_the_services_messages_read_in_english_on_english_pages(app) -> None:
    """Messages the account service gives (not only the forms' own) follow the page's language."""
    with citizen_browser(app, email="english@example.org") as browser:
        browser.get("/account?lang=en")
        wrong = browser.submit("/account/password", {"password": "not the one", "new_password": NEW_PASSWORD})
        assert wrong.status_code == 400
        assert "Current password incorrect." in wrong.text and "Mot de passe actuel incorrect" not in wrong.text
    with Browser(app) as browser:
        browser.get("/register?lang=en")
        refused = browser.register("not-an-address", gender="other", birthdate="2999-01-01")
        assert refused.status_code == 400
        assert "This email address is not valid." in refused.text
        assert "Choose “Female” or “Male”" in refused.text and "The birth date cannot be in the future." in refused.text
