"""Accounts opened at the counter: the agent's form, the activation letter (page and PDF), the
citizen's activation with the letter's code or the mailed link, login with the identifier."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, col, select

from tests.factories import COUNTER, citizen_browser, make_citizen, make_staff, staff_browser
from tests.support import Browser, Outbox
from vault.auth.models import Citizen, LoginThrottle
from vault.counter.models import ActivationCode, CounterEnrolment
from vault.db import utcnow
from vault.gdpr.models import AuditEntry
from vault.gdpr.service import Staff

PERSON = {
    "document_kind": "cni", "checked": "yes", "given_name": "Lucienne", "family_name": "Bernard",
    "birthdate": "12 mars 1942", "gender": "female", "birthcountry": "99100", "birthplace": "Quimper",
}
LOGIN_ID = re.compile(r"\b([A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{2})\b")
CODE = re.compile(r"\b([A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4})\b")
BAD_CODE = "Identifiant ou code incorrect, ou code expiré."
NEW_PASSWORD = "trois merles sur la haie du jardin"


def open_account(browser: Browser, **changes: str) -> object:
    return browser.submit("/agent/accounts/new", {**PERSON, **changes})


def opened_id(answer: object) -> str:
    assert answer.status_code == 303, (answer.status_code, answer.text[:800])  # type: ignore[attr-defined]
    location = answer.headers["location"]  # type: ignore[attr-defined]
    assert location.startswith("/agent/citizens/")
    return location.split("?")[0].rsplit("/", 1)[1]


# The agent's word, for a letter after the first one: the person is there, their document checked now.
CHECKED = {"document_kind": "passeport", "checked": "yes"}


def print_letter(browser: Browser, citizen_id: str, fields: dict[str, str] | None = None) -> tuple[str, str]:
    """Print the letter from the citizen's file (``fields``: the identity check, when one is due):
    (the page, its code)."""
    page = browser.submit(f"/agent/citizens/{citizen_id}", fields or {}, action=f"/agent/citizens/{citizen_id}/letter")
    assert page.status_code == 200, page.text[:800]
    codes = CODE.findall(page.text)
    assert codes, page.text
    return page.text, codes[0]


@pytest.fixture
def agent(app):
    return make_staff(app, role="agent", name="Dominique Accueil")


def test_an_account_without_email_gets_an_identifier_and_a_letter(app, agent, browser: Browser) -> None:
    with staff_browser(app, agent) as desk:
        home = desk.get("/agent/")
        assert 'href="/agent/accounts/new"' in home.text and "Ouvrir un compte" in home.text
        form = desk.get("/agent/accounts/new")
        assert "Aucune copie n'est conservée" in form.text
        answer = open_account(desk)
        citizen_id = opened_id(answer)
        file = desk.get(answer.headers["location"])
        assert "Le compte est ouvert" in file.text and "Imprimer la lettre d'activation" in file.text
        assert "Carte nationale d'identité" in file.text and COUNTER in file.text
        login_id = LOGIN_ID.search(file.text).group(1)
        letter, code = print_letter(desk, citizen_id)
        assert login_id in letter and "Lucienne Bernard" in letter and f"{app.state.services.settings.issuer}/activate" in letter
        for step in ("ouvrez la page", "Tapez votre identifiant", "Choisissez votre mot de passe"):
            assert step in letter
        expiry = (utcnow() + timedelta(days=30)).astimezone(ZoneInfo(app.state.services.settings.timezone))
        assert f"valable jusqu'au {expiry:%d/%m/%Y}" in letter
    with Session(app.state.services.engine) as db:
        citizen = db.get(Citizen, uuid.UUID(citizen_id))
        assert citizen.email is None and citizen.password_hash is None and citizen.login_id == login_id
        assert str(citizen.birthdate) == "1942-03-12" and citizen.birthplace == "29232"
        enrolment = db.get(CounterEnrolment, citizen.id)
        assert enrolment.document_kind == "cni" and enrolment.checked_by == agent.id and enrolment.service == COUNTER
        stored = db.exec(select(ActivationCode).where(ActivationCode.citizen_id == citizen.id)).one()
        assert stored.code_hash.startswith("$argon2id$") and code.replace("-", "") not in stored.code_hash
        actions = {e.action: e for e in db.exec(select(AuditEntry)).all()}
        opened = actions["counter.account_opened"]
        assert opened.actor == f"staff:{agent.id}" and opened.target.startswith("subject:")
        assert citizen_id not in opened.target and "counter.letter_printed" in actions

    # The citizen activates the account with the letter, then logs in with the identifier.
    activated = browser.submit("/activate", {"login": login_id.lower().replace("-", " "), "code": code,
                                             "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert activated.status_code == 303 and activated.headers["location"].startswith("/login?notice=account_activated")
    login_page = browser.get(activated.headers["location"])
    assert "votre compte est prêt" in login_page.text and "Adresse e-mail ou identifiant" in login_page.text
    logged = browser.login(login_id, NEW_PASSWORD)
    assert logged.status_code == 303 and logged.headers["location"] == "/account"
    account = browser.get("/account")
    assert "aucune adresse" in account.text and login_id in account.text and "None" not in account.text
    add_email = browser.get("/account/email")
    assert "Ajouter une adresse e-mail" in add_email.text and "L'adresse actuelle sera prévenue" not in add_email.text
    with Session(app.state.services.engine) as db:
        code_row = db.exec(select(ActivationCode)).one()
        assert code_row.used_at is not None
        assert db.exec(select(AuditEntry).where(AuditEntry.action == "account.activated")).one()
    # The code served once.
    again = browser.submit("/activate", {"login": login_id, "code": code, "password": NEW_PASSWORD,
                                         "password_confirm": NEW_PASSWORD})
    assert again.status_code == 400 and BAD_CODE in again.text


def test_an_account_with_email_gets_a_link_to_choose_its_password(app, agent, browser: Browser,
                                                                   outbox: Outbox) -> None:
    with staff_browser(app, agent) as desk:
        answer = open_account(desk, email="Lucienne.Bernard@Example.org")
        citizen_id = opened_id(answer)
        assert "Un e-mail vient de partir" in desk.get(answer.headers["location"]).text
        # A letter is offered too (say the mail never arrives); the identifier is then the address.
        letter, _code = print_letter(desk, citizen_id)
        assert "lucienne.bernard@example.org" in letter
    mail = outbox.last("lucienne.bernard@example.org")
    assert "/account/activate?token=" in mail.body and "7 jours" in mail.body
    # Not usable before the password is chosen.
    assert browser.login("lucienne.bernard@example.org", NEW_PASSWORD).status_code == 401
    page = browser.get(mail.path())
    assert page.status_code == 200 and "Choisissez votre mot de passe" in page.text
    token = mail.path().split("token=", 1)[1]
    weak = browser.submit(mail.path(), {"token": token, "password": "court"}, action="/account/activate")
    assert weak.status_code == 400 and "au moins 12 caractères" in weak.text
    done = browser.submit(mail.path(), {"token": token, "password": NEW_PASSWORD}, action="/account/activate")
    assert done.status_code == 303
    assert browser.login("lucienne.bernard@example.org", NEW_PASSWORD).status_code == 303
    # The link served once; the letter printed meanwhile is void.
    assert browser.get(mail.path()).status_code == 400
    with Session(app.state.services.engine) as db:
        citizen = db.exec(select(Citizen).where(Citizen.email == "lucienne.bernard@example.org")).one()
        assert citizen.email_verified_at is not None and citizen.login_id is None
        assert db.exec(select(ActivationCode)).one().voided_at is not None


def test_a_duplicate_is_refused_and_shown(app, agent) -> None:
    existing = make_citizen(app, email="lucienne@example.org", given_name="Lucienne", family_name="Bernard",
                            birthdate="1942-03-12")
    with staff_browser(app, agent) as desk:
        same_email = open_account(desk, email="LUCIENNE@example.org", given_name="Autre", birthdate="01/01/1950")
        assert same_email.status_code == 400 and "Un compte existe déjà avec cette adresse" in same_email.text
        same_person = open_account(desk, given_name="lucienne", family_name="BERNARD")
        assert same_person.status_code == 409
        assert f'href="/agent/citizens/{existing.id}"' in same_person.text and "autre personne" in same_person.text
        assert 'value="Quimper"' in same_person.text  # the form is kept
        with Session(app.state.services.engine) as db:
            assert len(db.exec(select(Citizen)).all()) == 1
        other = open_account(desk, other_person="yes")
        opened_id(other)
    with Session(app.state.services.engine) as db:
        assert len(db.exec(select(Citizen).where(Citizen.family_name == "Bernard")).all()) == 2


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"document_kind": ""}, "document_kind", "Choisissez la pièce d'identité"),
    ({"checked": ""}, "checked", "Cochez cette case"),
    ({"birthdate": "31/02/1942"}, "birthdate", "n'existe pas dans le calendrier"),
    ({"birthplace": "Nulleparticiville"}, "birthplace", "Aucune commune ne s'appelle"),
    ({"email": "pas-une-adresse"}, "email", "n'est pas valide"),
])
def test_every_bad_input_is_said_next_to_its_field(app, agent, changes, field, message) -> None:
    with staff_browser(app, agent) as desk:
        answer = open_account(desk, **changes)
        assert answer.status_code == 400 and message in answer.text
        assert f'id="{field}"' in answer.text and f'href="#{field}"' in answer.text  # the summary links to it
        assert 'aria-invalid="true"' in answer.text
        assert 'value="Lucienne"' in answer.text  # what was typed is kept
    with Session(app.state.services.engine) as db:
        assert db.exec(select(Citizen)).first() is None and db.exec(select(AuditEntry).where(
            AuditEntry.action == "counter.account_opened")).first() is None


def test_a_commune_with_several_matches_offers_the_choice(app, agent) -> None:
    with staff_browser(app, agent) as desk:
        answer = open_account(desk, birthplace="Saint-Martin")
        assert answer.status_code == 400 and 'name="birthplace_choice"' in answer.text


def test_the_letter_as_pdf_carries_the_same_code(app, agent) -> None:
    with staff_browser(app, agent) as desk:
        citizen_id = opened_id(open_account(desk))
        page, code = print_letter(desk, citizen_id)
        pdf = desk.submit(f"/agent/citizens/{citizen_id}", {"code": code}, action=f"/agent/citizens/{citizen_id}/letter.pdf")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF") and pdf.headers["cache-control"] == "no-store"
        assert b"/Count 1" in pdf.content  # one A4 page
        assert f'action="/agent/citizens/{citizen_id}/letter.pdf"' in page
        # A made-up code gets no letter.
        forged = desk.submit(f"/agent/citizens/{citizen_id}", {"code": "AAAA-BBBB-CCCC"},
                             action=f"/agent/citizens/{citizen_id}/letter.pdf")
        assert forged.status_code == 409 and forged.headers["content-type"].startswith("text/html")


def test_reprinting_voids_the_previous_code(app, agent, browser: Browser) -> None:
    with staff_browser(app, agent) as desk:
        citizen_id = opened_id(open_account(desk))
        _page, first = print_letter(desk, citizen_id)
        _file, second = print_letter(desk, citizen_id, CHECKED)
        assert first != second
        old_pdf = desk.submit(f"/agent/citizens/{citizen_id}", {"code": first},
                              action=f"/agent/citizens/{citizen_id}/letter.pdf")
        assert old_pdf.status_code == 409 and "plus valable" in old_pdf.text
        login_id = LOGIN_ID.search(desk.get(f"/agent/citizens/{citizen_id}").text).group(1)
    refused = browser.submit("/activate", {"login": login_id, "code": first, "password": NEW_PASSWORD,
                                           "password_confirm": NEW_PASSWORD})
    assert refused.status_code == 400 and BAD_CODE in refused.text
    accepted = browser.submit("/activate", {"login": login_id, "code": second, "password": NEW_PASSWORD,
                                            "password_confirm": NEW_PASSWORD})
    assert accepted.status_code == 303
    with Session(app.state.services.engine) as db:
        rows = db.exec(select(ActivationCode).order_by(col(ActivationCode.created_at))).all()
        assert rows[0].voided_at is not None and rows[1].used_at is not None


def _letter(app, agent) -> tuple[str, str]:
    with staff_browser(app, agent) as desk:
        citizen_id = opened_id(open_account(desk))
        _page, code = print_letter(desk, citizen_id)
        login_id = LOGIN_ID.search(desk.get(f"/agent/citizens/{citizen_id}").text).group(1)
    return login_id, code


def test_every_refused_code_gets_the_same_answer(app, agent, browser: Browser) -> None:
    login_id, code = _letter(app, agent)
    attempt = {"code": code, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
    answers = [
        browser.submit("/activate", {**attempt, "login": login_id, "code": "AAAA-BBBB-CCCC"}),  # wrong
        browser.submit("/activate", {**attempt, "login": "ZZZZ-ZZZZ-ZZ"}),  # unknown identifier
    ]
    with Session(app.state.services.engine) as db:
        row = db.exec(select(ActivationCode)).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.add(row)
        db.commit()
    answers.append(browser.submit("/activate", {**attempt, "login": login_id}))  # expired
    for answer in answers:
        assert answer.status_code == 400 and BAD_CODE in answer.text
        assert code not in answer.text and NEW_PASSWORD not in answer.text


def test_a_refused_password_keeps_the_code_usable(app, agent, browser: Browser) -> None:
    login_id, code = _letter(app, agent)
    weak = browser.submit("/activate", {"login": login_id, "code": code, "password": "court", "password_confirm": "court"})
    assert weak.status_code == 400 and "au moins 12 caractères" in weak.text
    mismatch = browser.submit("/activate", {"login": login_id, "code": code, "password": NEW_PASSWORD,
                                            "password_confirm": NEW_PASSWORD + "x"})
    assert mismatch.status_code == 400 and "pas identiques" in mismatch.text
    missing = browser.submit("/activate", {"login": "", "code": "", "password": ""})
    assert missing.status_code == 400 and "Indiquez le code d'activation" in missing.text
    ok = browser.submit("/activate", {"login": login_id, "code": code, "password": NEW_PASSWORD,
                                      "password_confirm": NEW_PASSWORD})
    assert ok.status_code == 303


def test_activation_adds_an_address_confirmed_by_the_usual_link(app, agent, browser: Browser,
                                                               outbox: Outbox) -> None:
    login_id, code = _letter(app, agent)
    ok = browser.submit("/activate", {"login": login_id, "code": code, "password": NEW_PASSWORD,
                                      "password_confirm": NEW_PASSWORD, "email": "lucienne@example.org"})
    assert ok.status_code == 303
    mail = outbox.last("lucienne@example.org")
    assert "/account/email/confirm?token=" in mail.body
    assert browser.login(login_id, NEW_PASSWORD).status_code == 303
    confirm = browser.get(mail.path())
    assert confirm.status_code == 200
    token = mail.path().split("token=", 1)[1]
    assert browser.submit(mail.path(), {"token": token}, action="/account/email/confirm").status_code == 303
    with Browser(app) as other:
        assert other.login("lucienne@example.org", NEW_PASSWORD).status_code == 303


def test_wrong_codes_are_throttled_like_passwords(app, agent, browser: Browser) -> None:
    login_id, code = _letter(app, agent)
    for _ in range(5):
        answer = browser.submit("/activate", {"login": login_id, "code": "AAAA-BBBB-CCCC", "password": NEW_PASSWORD,
                                              "password_confirm": NEW_PASSWORD})
        assert answer.status_code == 400
    locked = browser.submit("/activate", {"login": login_id, "code": code, "password": NEW_PASSWORD,
                                          "password_confirm": NEW_PASSWORD})  # the right code, still refused
    assert locked.status_code == 429 and 0 < int(locked.headers["retry-after"]) <= 30
    assert "Trop de tentatives" in locked.text
    # The same counter as the login's.
    assert browser.login(login_id, NEW_PASSWORD).status_code == 429
    with Session(app.state.services.engine) as db:
        assert db.exec(select(LoginThrottle).where(col(LoginThrottle.key).startswith("account:"))).one().failures == 5


def test_a_burst_of_wrong_codes_gets_no_more_checks_than_the_free_failures(settings, engine) -> None:
    """Twenty guesses of one letter's code sent at once: each is counted before it is checked, so
    only the free failures are checked; the others, and then the right code, meet the lock."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from vault.app import create_app

    app = create_app(settings.model_copy(update={"login_free_failures_per_account": 3}), engine=engine)
    login_id, code = _letter(app, make_staff(app, role="agent", name="Dominique Accueil"))
    with Browser(app) as browser:
        token = browser.form_token("/activate")
        start = Barrier(20)

        def one(n: int) -> int:
            start.wait()
            return browser.post("/activate", data={"login": login_id, "code": f"AAAA-BBBB-{n:04d}",
                                                   "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD,
                                                   "csrf_token": token}).status_code

        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(one, range(20)))
        assert answers.count(400) == 3 and answers.count(429) == 17, answers
        right = browser.submit("/activate", {"login": login_id, "code": code, "password": NEW_PASSWORD,
                                             "password_confirm": NEW_PASSWORD})
        assert right.status_code == 429


def test_one_client_guessing_across_identifiers_is_locked(settings, engine) -> None:
    """Wrong codes spread over many identifiers (made-up ones, and a real one) from one client address
    count on that address: past its free failures, even the right code for a real letter waits."""
    from vault.app import create_app

    app = create_app(settings.model_copy(update={"login_free_failures_per_address": 4}), engine=engine)
    login_id, code = _letter(app, make_staff(app, role="agent", name="Dominique Accueil"))
    with Browser(app) as browser:
        answers = [browser.submit("/activate", {"login": f"ZZZZ-ZZZ{n}-ZZ", "code": "AAAA-BBBB-CCCC",
                                                "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}).status_code
                   for n in range(4)]
        assert answers == [400, 400, 400, 400], answers
        locked = browser.submit("/activate", {"login": login_id, "code": code, "password": NEW_PASSWORD,
                                              "password_confirm": NEW_PASSWORD})
        assert locked.status_code == 429 and 0 < int(locked.headers["retry-after"]) <= 31
    with Browser(app, client=("198.51.100.7", 50000)) as elsewhere:  # another address: the real letter works
        assert elsewhere.submit("/activate", {"login": login_id, "code": code, "password": NEW_PASSWORD,
                                              "password_confirm": NEW_PASSWORD}).status_code == 303


def test_login_by_identifier_fails_like_login_by_email(app, agent, browser: Browser) -> None:
    login_id, code = _letter(app, agent)
    # Before activation: no password, the usual answer.
    assert browser.login(login_id, NEW_PASSWORD).status_code == 401
    assert browser.login("ZZZZ-ZZZZ-ZZ", NEW_PASSWORD).status_code == 401
    browser.submit("/activate", {"login": login_id, "code": code, "password": NEW_PASSWORD,
                                 "password_confirm": NEW_PASSWORD})
    wrong = browser.login(login_id, "pas le bon mot de passe")
    assert wrong.status_code == 401 and "mot de passe incorrect" in wrong.text
    assert browser.login(login_id.replace("-", "").lower(), NEW_PASSWORD).status_code == 303


def test_only_agents_open_accounts(app) -> None:
    with staff_browser(app, role="dpo") as dpo:
        assert dpo.get("/agent/accounts/new").status_code == 404
    with citizen_browser(app) as citizen:
        assert citizen.get("/agent/accounts/new").status_code == 404
    with Browser(app) as nobody:
        assert nobody.get("/agent/accounts/new").status_code == 404


def test_an_activated_account_gets_no_letter(app, agent) -> None:
    citizen = make_citizen(app)
    with staff_browser(app, agent) as desk:
        file = desk.get(f"/agent/citizens/{citizen.id}")
        assert "Imprimer la lettre d'activation" not in file.text
        refused = desk.submit(f"/agent/citizens/{citizen.id}", {}, action=f"/agent/citizens/{citizen.id}/letter")
        assert refused.status_code == 409


def test_the_dpo_pages_read_well_without_an_address(app, agent) -> None:
    with staff_browser(app, agent) as desk:
        opened_id(open_account(desk))
    with staff_browser(app, role="dpo") as dpo:
        found = dpo.get("/dpo/", params={"q_name": "bernard"})
        assert "Lucienne" in found.text and "None" not in found.text


def test_a_letter_activates_an_account_with_an_address_still_to_confirm(app, agent, browser: Browser,
                                                                          outbox: Outbox) -> None:
    with staff_browser(app, agent) as desk:
        citizen_id = opened_id(open_account(desk, email="lucienne@example.org"))
        _page, code = print_letter(desk, citizen_id)
    link = outbox.last("lucienne@example.org").path()
    done = browser.submit("/activate", {"login": "Lucienne@example.org", "code": code, "password": NEW_PASSWORD,
                                        "password_confirm": NEW_PASSWORD})
    assert done.status_code == 303 and "notice=account_activated_confirm" in done.headers["location"]
    assert "pour la confirmer" in browser.get(done.headers["location"]).text
    assert browser.login("lucienne@example.org", NEW_PASSWORD).status_code == 403  # the address first
    assert browser.get(link).status_code == 400  # the mailed activation link died with the letter's use
    verify = outbox.last("lucienne@example.org").path()
    assert "/verify-email?token=" in verify
    token = verify.split("token=", 1)[1]
    assert browser.submit(verify, {"token": token}, action="/verify-email").status_code == 303
    assert browser.login("lucienne@example.org", NEW_PASSWORD).status_code == 303


def test_a_letter_is_void_once_the_password_was_reset_by_mail(app, agent, browser: Browser, outbox: Outbox) -> None:
    with staff_browser(app, agent) as desk:
        citizen_id = opened_id(open_account(desk, email="lucienne@example.org"))
        _page, code = print_letter(desk, citizen_id)
    assert browser.submit("/password/forgot", {"email": "lucienne@example.org"}).status_code == 200
    reset = outbox.last("lucienne@example.org").path()
    token = reset.split("token=", 1)[1]
    assert browser.submit(reset, {"token": token, "password": NEW_PASSWORD}, action="/password/reset").status_code == 303
    refused = browser.submit("/activate", {"login": "lucienne@example.org", "code": code,
                                           "password": "un autre mot de passe assez long",
                                           "password_confirm": "un autre mot de passe assez long"})
    assert refused.status_code == 400 and BAD_CODE in refused.text
    assert browser.login("lucienne@example.org", NEW_PASSWORD).status_code == 303


def test_erasure_takes_the_counter_rows_along(app, agent) -> None:
    with staff_browser(app, agent) as desk:
        citizen_id = opened_id(open_account(desk))
        print_letter(desk, citizen_id)
    services = app.state.services
    with Session(services.engine) as db:
        services.gdpr.erase(db, citizen_id=uuid.UUID(citizen_id), reason="demande de la personne",
                            by=Staff(actor="staff:test", label="test"))
        db.commit()
    with Session(services.engine) as db:
        assert db.exec(select(CounterEnrolment)).first() is None and db.exec(select(ActivationCode)).first() is None
        assert db.get(Citizen, uuid.UUID(citizen_id)) is None


def test_a_password_set_another_way_ends_the_activation_link(app, agent, browser: Browser, outbox: Outbox) -> None:
    """The citizen chose a password with "Mot de passe oublié" instead of the activation mail: the
    mailed link can no longer set another one (it would bypass the code a reset asks of an account
    with TOTP)."""
    with staff_browser(app, agent) as desk:
        opened_id(open_account(desk, email="odette.riviere@example.org"))
    activation = outbox.last("odette.riviere@example.org")
    browser.submit("/password/forgot", {"email": "odette.riviere@example.org"})
    reset = outbox.last("odette.riviere@example.org").path()
    done = browser.submit(reset, {"token": reset.split("token=")[1], "password": NEW_PASSWORD}, action="/password/reset")
    assert done.status_code == 303
    token = activation.path().split("token=", 1)[1]
    assert browser.get(activation.path()).status_code == 400
    again = browser.submit("/login", {"token": token, "password": "un tout autre mot de passe choisi"},
                           action="/account/activate")
    assert again.status_code == 400
    assert browser.login("odette.riviere@example.org", "un tout autre mot de passe choisi").status_code == 401
    assert browser.login("odette.riviere@example.org", NEW_PASSWORD).status_code == 303


def test_an_activation_link_never_replaces_a_password(app, engine, outbox: Outbox) -> None:
    """Whatever left a link alive, an account that has a password is told it is activated already:
    its password, sessions and apps stay as they are."""
    citizen = make_citizen(app, email="deja.active@example.org")
    services = app.state.services
    with Session(engine) as db:
        row = db.get(Citizen, citizen.id)
        assert row is not None
        services.accounts.send_activation_link(db=db, citizen=row)
        db.commit()
    with citizen_browser(app, citizen) as browser:
        with Browser(app) as other:
            mail_path = outbox.last("deja.active@example.org").path()
            token = mail_path.split("token=", 1)[1]
            page = other.get(mail_path)
            assert page.status_code == 400 and "déjà activé" in page.text and 'href="/login"' in page.text
            answer = other.submit("/login", {"token": token, "password": "un tout autre mot de passe choisi"},
                                  action="/account/activate")
            assert answer.status_code == 400 and "déjà activé" in answer.text
            assert other.login("deja.active@example.org", "un tout autre mot de passe choisi").status_code == 401
        assert browser.get("/account").status_code == 200  # the session lives on
