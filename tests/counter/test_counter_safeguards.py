"""What keeps the counter's powers in the hands they belong to: letters and signed mandates by the
service that opened the account only, the person present with an identity document checked; at most
three letters a day; the letter's PDF throttled; one login counter per account; notices that cannot
be made up in an address; the agents' searches and the files they open in the audit chain."""

from __future__ import annotations

import io
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, col, select

from tests.counter.test_counter_accounts import (
    CHECKED,
    LOGIN_ID,
    NEW_PASSWORD,
    open_account,
    opened_id,
    print_letter,
)
from tests.counter.test_delegated_login import make_mandate
from tests.factories import citizen_browser, make_citizen, make_staff, pdf, staff_browser
from tests.support import Browser
from vault.auth.models import Citizen
from vault.counter.models import ActivationCode, CounterEnrolment, Mandate, MandateAction
from vault.db import utcnow
from vault.gdpr.models import AuditEntry
from vault.storage.models import Document

NORTH = "Mairie annexe Nord"
ONLY_THE_OPENING_SERVICE = "Seul le guichet qui a ouvert ce compte"


@pytest.fixture
def agent(app):
    return make_staff(app, role="agent", name="Dominique Accueil")


@pytest.fixture
def other_agent(app):
    return make_staff(app, role="agent", name="Sacha Nord", service=NORTH)


def entries(app: Any, action: str) -> list[AuditEntry]:
    with Session(app.state.services.engine) as db:
        return list(db.exec(select(AuditEntry).where(AuditEntry.action == action).order_by(col(AuditEntry.id))))


def opened(desk: Browser, **changes: str) -> tuple[str, str, str]:
    """An account the agent (logged in at ``desk``) opens and prints the first letter of: (its id,
    identifier, code)."""
    citizen_id = opened_id(open_account(desk, **changes))
    _page, code = print_letter(desk, citizen_id)
    login_id = LOGIN_ID.search(desk.get(f"/agent/citizens/{citizen_id}").text)
    return citizen_id, login_id.group(1) if login_id else "", code


def opened_by(app: Any, agent: Any) -> tuple[str, str, str]:
    with staff_browser(app, agent) as desk:
        return opened(desk)


def activate(browser: Browser, login: str, code: str) -> Any:
    return browser.submit("/activate", {"login": login, "code": code, "password": NEW_PASSWORD,
                                        "password_confirm": NEW_PASSWORD})


# ---- the activation letter ----------------------------------------------------------------------------------------


def test_another_service_cannot_print_a_letter_or_take_the_account(app, agent, other_agent, browser) -> None:
    citizen_id, login_id, code = opened_by(app, agent)
    with staff_browser(app, other_agent) as other:
        file = other.get(f"/agent/citizens/{citizen_id}")
        assert file.status_code == 200 and ONLY_THE_OPENING_SERVICE in file.text
        assert f'action="/agent/citizens/{citizen_id}/letter"' not in file.text
        refused = other.submit(f"/agent/citizens/{citizen_id}", CHECKED, action=f"/agent/citizens/{citizen_id}/letter")
        assert refused.status_code == 403 and ONLY_THE_OPENING_SERVICE in refused.text
        assert not re.search(r"[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}", refused.text)
        pdf_refused = other.submit(f"/agent/citizens/{citizen_id}", {"code": code},
                                   action=f"/agent/citizens/{citizen_id}/letter.pdf")
        assert pdf_refused.status_code == 403
    [refusal, pdf_refusal] = entries(app, "counter.refused")
    assert refusal.actor == f"staff:{other_agent.id}" and refusal.target.startswith("subject:")
    assert refusal.details == {"reason": "not_enrolling_service", "what": "letter", "service": NORTH}
    assert pdf_refusal.details["what"] == "letter_pdf"
    # The first letter still works: nothing was voided.
    assert activate(browser, login_id, code).status_code == 303


def test_a_new_letter_needs_the_identity_document_checked_again(app, agent) -> None:
    with staff_browser(app, agent) as desk:
        citizen_id = opened_id(open_account(desk))
        first = desk.get(f"/agent/citizens/{citizen_id}")
        assert "vaut pour cette première lettre" in first.text and 'name="document_kind"' not in first.text
        print_letter(desk, citizen_id)  # right after the opening: the opening's check covers it
        file = desk.get(f"/agent/citizens/{citizen_id}")
        assert 'name="document_kind"' in file.text and "j'ai vérifié sa pièce d'identité à l'instant" in file.text
        refused = desk.submit(f"/agent/citizens/{citizen_id}", {}, action=f"/agent/citizens/{citizen_id}/letter")
        assert refused.status_code == 400
        assert "Choisissez la pièce d'identité que vous avez vérifiée." in refused.text
        assert "Cochez cette case seulement après avoir vérifié la pièce" in refused.text
        unticked = desk.submit(f"/agent/citizens/{citizen_id}", {"document_kind": "passeport"},
                               action=f"/agent/citizens/{citizen_id}/letter")
        assert unticked.status_code == 400 and 'value="passeport" selected' in unticked.text
        _page, code = print_letter(desk, citizen_id, CHECKED)
    with Session(app.state.services.engine) as db:
        assert len(db.exec(select(ActivationCode).where(ActivationCode.citizen_id == uuid.UUID(citizen_id))).all()) == 2
    printed = entries(app, "counter.letter_printed")
    assert [e.details["document_kind"] for e in printed] == ["cni", "passeport"]
    assert [e.details["identity_check"] for e in printed] == ["at_opening", "now"]
    assert all(code not in str(e.details) and code.replace("-", "") not in str(e.details) for e in printed)


def test_the_opening_covers_the_first_letter_only_for_its_agent_and_for_a_while(app, agent) -> None:
    colleague = make_staff(app, role="agent", name="Alex Accueil")  # same service
    with staff_browser(app, agent) as desk, staff_browser(app, colleague) as other_desk:
        first_id = opened_id(open_account(desk))
        second_id = opened_id(open_account(desk, given_name="Germaine", birthdate="3 juin 1938"))
        refused = other_desk.submit(f"/agent/citizens/{first_id}", {}, action=f"/agent/citizens/{first_id}/letter")
        assert refused.status_code == 400 and "Choisissez la pièce d'identité" in refused.text
        print_letter(other_desk, first_id, CHECKED)  # with the check: the service may
        with Session(app.state.services.engine) as db:
            enrolment = db.get(CounterEnrolment, uuid.UUID(second_id))
            enrolment.checked_at = utcnow() - timedelta(minutes=31)
            db.add(enrolment)
            db.commit()
        late = desk.submit(f"/agent/citizens/{second_id}", {}, action=f"/agent/citizens/{second_id}/letter")
        assert late.status_code == 400


def test_at_most_three_letters_a_day(app, agent) -> None:
    with staff_browser(app, agent) as desk:
        citizen_id = opened_id(open_account(desk))
        print_letter(desk, citizen_id)
        print_letter(desk, citizen_id, CHECKED)
        print_letter(desk, citizen_id, CHECKED)
        fourth = desk.submit(f"/agent/citizens/{citizen_id}", CHECKED, action=f"/agent/citizens/{citizen_id}/letter")
        assert fourth.status_code == 429 and "Trois lettres d'activation ont déjà été imprimées" in fourth.text
        with Session(app.state.services.engine) as db:
            for row in db.exec(select(ActivationCode)).all():
                row.created_at -= timedelta(hours=25)
                db.add(row)
            db.commit()
        print_letter(desk, citizen_id, CHECKED)  # a day later


def test_the_letter_pdf_is_throttled_and_audited(app, agent) -> None:
    with staff_browser(app, agent) as desk:
        citizen_id = opened_id(open_account(desk))
        _page, code = print_letter(desk, citizen_id)
        path, action = f"/agent/citizens/{citizen_id}", f"/agent/citizens/{citizen_id}/letter.pdf"
        assert desk.submit(path, {"code": code}, action=action).status_code == 200
        for _ in range(5):
            assert desk.submit(path, {"code": "AAAA-BBBB-CCCC"}, action=action).status_code == 409
        locked = desk.submit(path, {"code": code}, action=action)  # the right code, still refused
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        assert "Trop de tentatives" in locked.text
    assert len(entries(app, "counter.letter_pdf")) == 1
    refusals = entries(app, "counter.letter_pdf_refused")
    assert [e.details["reason"] for e in refusals] == ["bad_code"] * 5 + ["locked"]
    assert all(e.actor == f"staff:{agent.id}" and code not in str(e.details) for e in refusals)


# ---- the signed mandate -------------------------------------------------------------------------------------------


def _sign(browser: Browser, citizen_id: str, **fields: str) -> Any:
    token = browser.form_token(f"/agent/citizens/{citizen_id}")
    return browser.post(f"/agent/citizens/{citizen_id}/mandates/signed?procedures=social&procedures=logement"
                        "&duration=1y", files={"file": ("mandat.pdf", io.BytesIO(pdf()), "application/pdf")},
                        data={"csrf_token": token, **fields, "type": "mandate", "title": "Mandat"})


def test_another_service_cannot_record_a_signed_mandate(app, agent, other_agent) -> None:
    citizen_id, _login_id, _code = opened_by(app, agent)
    with staff_browser(app, other_agent) as other:
        token = other.form_token(f"/agent/citizens/{citizen_id}")
        chosen = other.post(f"/agent/citizens/{citizen_id}/mandates/new",
                            data={"procedures": ["social"], "duration": "1y", "csrf_token": token})
        assert chosen.status_code == 403 and ONLY_THE_OPENING_SERVICE in chosen.text
        printed = other.get(f"/agent/citizens/{citizen_id}/mandates/print?procedures=social&duration=1y")
        assert printed.status_code == 403
        signed = _sign(other, citizen_id, document_kind="cni", checked="yes")
        assert signed.status_code == 403 and ONLY_THE_OPENING_SERVICE in signed.text
    with Session(app.state.services.engine) as db:
        assert db.exec(select(Mandate)).first() is None and db.exec(select(Document)).first() is None
    assert {e.details["what"] for e in entries(app, "counter.refused")} == {"mandate_signed"}


def test_a_signed_mandate_needs_the_identity_check_in_front_of_the_agent(app, agent) -> None:
    with staff_browser(app, agent) as desk:
        citizen_id, _login_id, _code = opened(desk)
        token = desk.form_token(f"/agent/citizens/{citizen_id}")
        sign = desk.post(f"/agent/citizens/{citizen_id}/mandates/new",
                         data={"procedures": ["social"], "duration": "1y", "csrf_token": token})
        assert sign.status_code == 200 and "la personne est présente et a signé devant moi" in sign.text
        assert sign.text.index('name="document_kind"') < sign.text.index('name="file"')  # sent before the file
        refused = _sign(desk, citizen_id)
        assert refused.status_code == 400 and "Choisissez la pièce d'identité que vous avez vérifiée." in refused.text
        assert "a signé devant vous" in refused.text
        unticked = _sign(desk, citizen_id, document_kind="titre_sejour")
        assert unticked.status_code == 400 and 'value="titre_sejour" selected' in unticked.text
        with Session(app.state.services.engine) as db:  # refused before the file was kept
            assert db.exec(select(Document)).first() is None and db.exec(select(Mandate)).first() is None
        granted = _sign(desk, citizen_id, document_kind="titre_sejour", checked="yes")
        assert granted.status_code == 303, granted.text[:500]
    with Session(app.state.services.engine) as db:
        line = db.exec(select(MandateAction).where(MandateAction.action == "mandate.granted")).one()
        assert line.details["document_kind"] == "titre_sejour" and line.details["granted_with"] == "signature"
    [granted_entry] = entries(app, "counter.mandate.granted")
    assert granted_entry.details["document_kind"] == "titre_sejour"


# ---- one login counter per account --------------------------------------------------------------------------------


def _with_address(app: Any, citizen_id: str, *, password: bool) -> None:
    services = app.state.services
    with Session(services.engine) as db:
        citizen = db.get(Citizen, uuid.UUID(citizen_id))
        citizen.email, citizen.email_verified_at = "lucienne@example.org", utcnow()
        if password:
            citizen.password_hash = services.accounts.hasher.hash(NEW_PASSWORD)
        db.add(citizen)
        db.commit()


def test_the_identifier_and_the_address_share_one_login_counter(app, agent, browser) -> None:
    citizen_id, login_id, _code = opened_by(app, agent)
    _with_address(app, citizen_id, password=True)
    for attempt in range(5):
        name = login_id if attempt % 2 else "lucienne@example.org"
        assert browser.login(name, f"pas le bon mot de passe {attempt}").status_code == 401
    assert browser.login(login_id, NEW_PASSWORD).status_code == 429
    assert browser.login("lucienne@example.org", NEW_PASSWORD).status_code == 429


def test_activation_counts_under_the_account_whatever_names_it(app, agent, browser) -> None:
    citizen_id, login_id, code = opened_by(app, agent)
    _with_address(app, citizen_id, password=False)
    for attempt in range(5):
        name = login_id if attempt % 2 else "lucienne@example.org"
        assert activate(browser, name, "AAAA-BBBB-CCCC").status_code == 400
    assert activate(browser, login_id, code).status_code == 429


def test_unknown_names_count_under_what_was_typed(app, browser) -> None:
    make_citizen(app, email="connu@example.org")
    for _ in range(5):
        assert browser.login("inconnu@example.org", "pas le bon mot de passe").status_code == 401
    with Browser(app) as elsewhere:  # another address: only the name's counter speaks
        assert elsewhere.login("inconnu@example.org", "pas le bon mot de passe").status_code == 429
        assert elsewhere.login("connu@example.org", "pas le bon mot de passe").status_code == 401


# ---- notices -------------------------------------------------------------------------------------------------------


def test_a_notice_typed_in_the_address_is_not_shown(app, agent) -> None:
    citizen = make_citizen(app)
    make_mandate(app, citizen.id, agent.id, procedures=("logement",))
    with staff_browser(app, agent) as desk:
        file = desk.get(f"/agent/citizens/{citizen.id}?notice=ended")
        assert file.status_code == 200 and "Le mandat a pris fin" not in file.text
        docs = desk.get(f"/agent/citizens/{citizen.id}/documents?procedure=logement&notice=added")
        assert docs.status_code == 200 and "Le document a été ajouté" not in docs.text
    with citizen_browser(app, citizen) as own:
        page = own.get("/account/mandates?notice=ended")
        assert page.status_code == 200 and "Le mandat a pris fin" not in page.text
        mandate_id = re.search(r'/account/mandates\?end=([0-9a-f-]{36})', page.text)
        assert mandate_id
        ended = own.submit("/account/mandates", {}, action=f"/account/mandates/{mandate_id.group(1)}/end")
        assert ended.status_code == 303
        assert "Le mandat a pris fin" in own.get(ended.headers["location"]).text  # after the real action: once
        assert "Le mandat a pris fin" not in own.get(ended.headers["location"]).text


# ---- the agents' searches and files, in the audit chain -----------------------------------------------------------


def test_searches_and_opened_files_are_audited_without_names(app, agent) -> None:
    citizen = make_citizen(app, given_name="Jeanne", family_name="Martin", email="jeanne.martin@example.org")
    with staff_browser(app, agent) as desk:
        found = desk.get("/agent/", params={"q_name": "martin", "q_birthdate": "", "q_email": "jeanne.martin@example.org"})
        assert "Jeanne" in found.text
        desk.get("/agent/", params={"q_name": "personne-de-ce-nom"})
        assert desk.get(f"/agent/citizens/{citizen.id}").status_code == 200
    searches = entries(app, "counter.search")
    assert [(e.details["criteria"], e.details["results"]) for e in searches] == [(["name", "email"], 1), (["name"], 0)]
    [viewed] = entries(app, "counter.file_viewed")
    assert viewed.actor == f"staff:{agent.id}" and re.fullmatch(r"subject:\S+", viewed.target)
    with Session(app.state.services.engine) as db:
        assert viewed.target == f"subject:{app.state.services.gdpr.subject(db, citizen.id)}"
    chain = str([(e.target, e.details) for e in [*searches, viewed]]).lower()
    for secret in ("martin", "jeanne", "personne-de-ce-nom", str(citizen.id)):
        assert secret not in chain
