"""Mandates at the counter: granting (the citizen's password, or a signed printed mandate), acting
under one (the documents), the journal the citizen reads in "Mes mandats", ending, the refusals,
and what the GDPR export and erasure say of them."""

from __future__ import annotations

import html
import io
import json
import re
import uuid
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from tests.factories import (
    COUNTER,
    MARKER,
    CitizenData,
    citizen_browser,
    make_citizen,
    make_document,
    make_staff,
    pdf,
    staff_browser,
)
from tests.support import Browser
from vault.auth.models import Citizen
from vault.counter.models import CounterEnrolment, Mandate, MandateAction
from vault.counter.service import NoMandate
from vault.db import utcnow
from vault.gdpr import audit
from vault.gdpr.models import AuditEntry, StaffAccount
from vault.gdpr.service import Staff, certificate_claims
from vault.storage.models import AccessLogEntry, Document

DPO = Staff(actor="staff:test", label="test")


def grant(browser: Browser, citizen: CitizenData, *, procedures: tuple[str, ...] = ("etat_civil",),
          duration: str = "1m", password: str | None = None) -> Any:
    """The agent's choice, then the citizen's password on the confirmation page."""
    page = f"/agent/citizens/{citizen.id}"
    token = browser.form_token(page)
    fields: dict[str, Any] = {"procedures": list(procedures), "duration": duration, "csrf_token": token}
    confirm = browser.post(f"/agent/citizens/{citizen.id}/mandates/new", data=fields)
    assert confirm.status_code == 200, confirm.text[:500]
    return browser.post(f"/agent/citizens/{citizen.id}/mandates/confirm",
                        data={**fields, "password": citizen.password if password is None else password})


def refusals(app: Any) -> list[AuditEntry]:
    with Session(app.state.services.engine) as db:
        return list(db.exec(select(AuditEntry).where(AuditEntry.action == "counter.refused")
                            .order_by(AuditEntry.id)))  # type: ignore[arg-type]


def journal(app: Any, citizen: CitizenData) -> list[MandateAction]:
    with Session(app.state.services.engine) as db:
        return list(db.exec(select(MandateAction).where(MandateAction.citizen_id == citizen.id)
                            .order_by(MandateAction.id)))  # type: ignore[arg-type]


def counter_citizen_without_password(app: Any, opened_by: uuid.UUID) -> CitizenData:
    """An account as the counter opens it for someone without email: no address, no password yet,
    opened by the agent ``opened_by`` (at their service)."""
    citizen = make_citizen(app, given_name="Marcel", family_name="Dupuis", birthdate="1938-05-02")
    with Session(app.state.services.engine) as db:
        db.exec(update(Citizen).where(Citizen.id == citizen.id)  # type: ignore[arg-type]
                .values(email=None, password_hash=None, email_verified_at=None))
        agent = db.get(StaffAccount, opened_by)
        assert agent is not None
        db.add(CounterEnrolment(citizen_id=citizen.id, document_kind="cni", checked_by=opened_by,
                                service=agent.service or ""))
        db.commit()
    return citizen


# ---- granting ------------------------------------------------------------------------------------------------------


def test_the_citizen_confirms_a_mandate_with_their_password(app, outbox) -> None:
    citizen = make_citizen(app)
    agent = make_staff(app, role="agent", name="Dominique Accueil")
    with staff_browser(app, agent) as browser:
        file = browser.get(f"/agent/citizens/{citizen.id}")
        assert "Donner un mandat" in file.text and "Démarches couvertes" in file.text
        token = browser.form_token(f"/agent/citizens/{citizen.id}")
        fields = {"procedures": ["etat_civil", "logement"], "duration": "6m", "csrf_token": token}
        confirm = browser.post(f"/agent/citizens/{citizen.id}/mandates/new", data=fields)
        assert confirm.status_code == 200 and "Confirmation par la personne" in confirm.text
        text = re.sub(r"\s+", " ", html.unescape(confirm.text))
        assert f"Le guichet {COUNTER} pourra, jusqu'au" in text
        assert "État civil, Logement" in text and "Il ne pourra jamais supprimer un document" in text
        assert "Mes mandats" in text and 'autocomplete="off"' in text and 'type="password"' in text

        answer = browser.post(f"/agent/citizens/{citizen.id}/mandates/confirm", data={**fields, "password": citizen.password})
        assert answer.status_code == 303 and answer.headers["location"] == f"/agent/citizens/{citizen.id}?notice=granted"
        after = browser.get(answer.headers["location"])
        assert "Le mandat est enregistré" in after.text and "Aucun mandat en cours" not in after.text
    with Session(app.state.services.engine) as db:
        mandate = db.exec(select(Mandate).where(Mandate.citizen_id == citizen.id)).one()
        assert mandate.service == COUNTER and mandate.procedures == ["etat_civil", "logement"]
        assert mandate.granted_with == "password" and mandate.duration == "6m"
        assert timedelta(days=180) <= mandate.ends_at - mandate.created_at <= timedelta(days=185)
        audited = db.exec(select(AuditEntry).where(AuditEntry.action == "counter.mandate.granted")).one()
        assert audited.actor == f"staff:{agent.id}" and str(citizen.id) not in json.dumps(audited.details)
    assert [line.action for line in journal(app, citizen)] == ["mandate.granted"]
    mail = outbox.last(citizen.email)
    assert mail.subject == "Vous avez donné un mandat au guichet de la mairie"
    assert COUNTER in mail.body and "- État civil\n- Logement\n" in mail.body and "/account/mandates" in mail.body


def test_the_grant_form_needs_a_procedure_and_a_duration(app) -> None:
    citizen = make_citizen(app)
    with staff_browser(app, make_staff(app, role="agent")) as browser:
        token = browser.form_token(f"/agent/citizens/{citizen.id}")
        refused = browser.post(f"/agent/citizens/{citizen.id}/mandates/new",
                               data={"procedures": ["nimporte"], "csrf_token": token})
        assert refused.status_code == 400
        assert "Cochez au moins une démarche." in refused.text and "Choisissez la durée du mandat." in refused.text
        assert 'href="#procedures"' in refused.text and 'href="#duration"' in refused.text
        # A confirmation posted with a forged choice is checked again, and grants nothing.
        forged = browser.post(f"/agent/citizens/{citizen.id}/mandates/confirm",
                              data={"procedures": ["etat_civil"], "duration": "10y", "password": citizen.password,
                                    "csrf_token": token})
        assert forged.status_code == 400
    with Session(app.state.services.engine) as db:
        assert db.exec(select(Mandate)).first() is None


def test_a_wrong_password_is_refused_then_throttled_like_the_login(app) -> None:
    citizen = make_citizen(app)
    with staff_browser(app, make_staff(app, role="agent")) as browser:
        wrong = grant(browser, citizen, password="pas le bon mot de passe")
        assert wrong.status_code == 400 and "Mot de passe incorrect" in wrong.text
        assert 'aria-invalid="true"' in wrong.text and "État civil" in wrong.text  # the same page, the same choice
        for _ in range(app.state.services.settings.login_free_failures_per_account - 1):
            grant(browser, citizen, password="pas le bon mot de passe")
        locked = grant(browser, citizen)  # even the right password, while locked
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    with Session(app.state.services.engine) as db:
        assert db.exec(select(Mandate)).first() is None
        assert db.exec(select(AuditEntry).where(AuditEntry.action == "counter.mandate.refused")).first() is not None
    # The citizen's own login is locked too: it is the same counter.
    with Browser(app) as own:
        assert own.login(citizen.email, citizen.password).status_code == 429


def test_with_two_factor_login_on_the_citizen_types_their_code_too(app) -> None:
    """The second factor the citizen's own login asks is asked on the agent's screen too."""
    citizen = make_citizen(app, totp=True)
    with staff_browser(app, make_staff(app, role="agent")) as browser:
        token = browser.form_token(f"/agent/citizens/{citizen.id}")
        fields: dict[str, Any] = {"procedures": ["etat_civil"], "duration": "1m", "csrf_token": token}
        confirm = browser.post(f"/agent/citizens/{citizen.id}/mandates/new", data=fields)
        assert "saisissez votre mot de passe et le code à 6 chiffres" in html.unescape(confirm.text)
        assert 'name="otp"' in confirm.text and "codes de secours" in html.unescape(confirm.text)
        url = f"/agent/citizens/{citizen.id}/mandates/confirm"
        without = browser.post(url, data={**fields, "password": citizen.password})
        assert without.status_code == 400 and "Code incorrect ou expiré" in html.unescape(without.text)
        assert 'id="otp-error"' in without.text and 'aria-invalid="true"' in without.text
        wrong = browser.post(url, data={**fields, "password": citizen.password, "otp": "000000"})
        assert wrong.status_code == 400 and "Code incorrect ou expiré" in html.unescape(wrong.text)
        with Session(app.state.services.engine) as db:
            assert db.exec(select(Mandate)).first() is None
        assert citizen.totp is not None
        granted = browser.post(url, data={**fields, "password": citizen.password, "otp": citizen.totp.now()})
        assert granted.status_code == 303, granted.text[:500]
        # A recovery code does as well (the phone is not always at hand).
        again = browser.post(url, data={**fields, "password": citizen.password, "otp": citizen.recovery_codes[0]})
        assert again.status_code == 303
    with Session(app.state.services.engine) as db:
        assert len(db.exec(select(Mandate).where(Mandate.citizen_id == citizen.id)).all()) == 2
        reasons = [e.details["reason"] for e in db.exec(select(AuditEntry).where(
            AuditEntry.action == "counter.mandate.refused"))]
        assert reasons == ["wrong_code", "wrong_code"]


def test_wrong_codes_are_throttled_like_the_login(app) -> None:
    citizen = make_citizen(app, totp=True)
    assert citizen.totp is not None
    with staff_browser(app, make_staff(app, role="agent")) as browser:
        token = browser.form_token(f"/agent/citizens/{citizen.id}")
        fields: dict[str, Any] = {"procedures": ["etat_civil"], "duration": "1m", "csrf_token": token,
                                  "password": citizen.password}
        url = f"/agent/citizens/{citizen.id}/mandates/confirm"
        for _ in range(app.state.services.settings.login_free_failures_per_account):
            assert browser.post(url, data={**fields, "otp": "000000"}).status_code == 400
        locked = browser.post(url, data={**fields, "otp": citizen.totp.now()})  # even the right code, while locked
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    with Session(app.state.services.engine) as db:
        assert db.exec(select(Mandate)).first() is None
    with Browser(app) as own:  # the same counter as the citizen's own login
        assert own.login(citizen.email, citizen.password).status_code == 429


def test_an_account_without_password_grants_by_a_signed_scan(app, data_dir) -> None:
    agent = make_staff(app, role="agent")
    citizen = counter_citizen_without_password(app, agent.id)
    with staff_browser(app, agent) as browser:
        token = browser.form_token(f"/agent/citizens/{citizen.id}")
        fields = {"procedures": ["social"], "duration": "1y", "csrf_token": token}
        sign = browser.post(f"/agent/citizens/{citizen.id}/mandates/new", data=fields)
        assert sign.status_code == 200 and "Faire signer le mandat" in sign.text and 'type="password"' not in sign.text
        printed_path = re.search(r'href="(/agent/citizens/[^"]+/mandates/print\?[^"]+)"', sign.text)
        assert printed_path
        printed = browser.get(printed_path.group(1).replace("&amp;", "&"))
        assert printed.status_code == 200 and "Signature de la personne" in printed.text
        assert "Marcel Dupuis" in printed.text and "Social et solidarité" in printed.text
        # Without a password the confirmation by password is not possible.
        assert browser.post(f"/agent/citizens/{citizen.id}/mandates/confirm",
                            data={**fields, "password": citizen.password}).status_code == 400
        action = re.search(r'action="(/agent/citizens/[^"]+/mandates/signed\?[^"]+)"', sign.text)
        assert action
        scan = pdf()
        answer = browser.post(action.group(1).replace("&amp;", "&"),
                              files={"file": ("mandat.pdf", io.BytesIO(scan), "application/pdf")},
                              data={"csrf_token": token, "document_kind": "cni", "checked": "yes",
                                    "type": "tax_notice", "title": "Mandat"})
        assert answer.status_code == 303, answer.text[:500]
    with Session(app.state.services.engine) as db:
        mandate = db.exec(select(Mandate).where(Mandate.citizen_id == citizen.id)).one()
        assert mandate.granted_with == "signature" and mandate.procedures == ["social"]
        document = db.get(Document, mandate.signed_document_id)
        assert document is not None and document.owner_id == citizen.id
        assert document.type == "mandate" and document.source == "counter" and document.source_name == COUNTER
        blob_key = document.blob_key
    blobs = [p for p in data_dir.rglob("*") if p.is_file() and blob_key in str(p)]
    assert blobs and all(MARKER not in p.read_bytes() for p in blobs)  # encrypted at rest
    assert [line.action for line in journal(app, citizen)] == ["mandate.granted"]


# ---- acting under a mandate ---------------------------------------------------------------------------------------


def test_listing_adding_and_downloading_under_a_mandate(app) -> None:
    citizen = make_citizen(app)
    with citizen_browser(app, citizen) as own:
        mine = make_document(own, title="Livret de famille Martin", type="family_record")
    agent = make_staff(app, role="agent", name="Dominique Accueil")
    with staff_browser(app, agent) as browser:
        assert grant(browser, citizen, procedures=("etat_civil",)).status_code == 303
        listing = browser.get(f"/agent/citizens/{citizen.id}/documents", params={"procedure": "etat_civil"})
        assert listing.status_code == 200 and "Livret de famille Martin" in listing.text
        browser.get(f"/agent/citizens/{citizen.id}/documents", params={"procedure": "etat_civil"})  # same visit

        token = browser.form_token(f"/agent/citizens/{citizen.id}/documents?procedure=etat_civil")
        scan = pdf()
        added = browser.post(f"/agent/citizens/{citizen.id}/documents?procedure=etat_civil",
                             files={"file": ("scan.pdf", io.BytesIO(scan), "application/pdf")},
                             data={"csrf_token": token, "type": "proof_of_address", "title": "Quittance de mars"})
        assert added.status_code == 303, added.text[:500]
        assert "Le document a été ajouté" in browser.get(added.headers["location"]).text

        download = browser.get(f"/agent/citizens/{citizen.id}/documents/{mine['id']}/download",
                               params={"procedure": "etat_civil"})
        assert download.status_code == 200 and download.headers["content-type"] == "application/pdf"
        assert download.headers["content-disposition"].startswith('attachment; filename="Livret de famille Martin.pdf"')
        assert download.content.startswith(b"%PDF") and MARKER in download.content

    lines = journal(app, citizen)
    assert [line.action for line in lines] == ["mandate.granted", "documents.listed", "document.added",
                                               "document.downloaded"]
    assert lines[2].details["title"] == "Quittance de mars" and lines[2].details["type"] == "proof_of_address"
    assert lines[3].details["title"] == "Livret de famille Martin" and lines[3].agent_id == agent.id
    with Session(app.state.services.engine) as db:
        audited = [e.action for e in db.exec(select(AuditEntry).where(AuditEntry.action.startswith("counter.")))]  # type: ignore[attr-defined]
        assert {"counter.documents.listed", "counter.document.added", "counter.document.downloaded"} <= set(audited)
        titles = json.dumps([e.details for e in db.exec(select(AuditEntry))], ensure_ascii=False)
        assert "Quittance de mars" not in titles  # the citizen's words stay out of the audit chain
        log = {(e.actor_kind, e.action, e.actor_name) for e in
               db.exec(select(AccessLogEntry).where(AccessLogEntry.citizen_id == citizen.id))}
        assert {("agent", "list", COUNTER), ("agent", "deposit", COUNTER), ("agent", "read", COUNTER)} <= log

    # The citizen sees where the new document comes from, on their pages and in the API.
    with citizen_browser(app, citizen) as own:
        documents = own.get("/documents")
        assert f"Ajouté au guichet par {COUNTER} le" in html.unescape(documents.text)
        items = own.get("/api/v1/documents").json()["items"]
        added_doc = next(d for d in items if d["title"] == "Quittance de mars")
        assert added_doc["source"] == "counter" and added_doc["source_name"] == COUNTER
        page = own.get(f"/documents/{added_doc['id']}")
        assert "Ajouté au guichet par" in page.text
        mandates = own.get("/account/mandates")
        text = mandates.text
        assert mandates.status_code == 200 and "Dominique Accueil" in text
        assert "A ajouté le document « Quittance de mars »" in text
        assert "A téléchargé le document « Livret de famille Martin »" in text
        assert "A consulté la liste de vos documents (État civil)" in text and "Mandat donné, pour : État civil" in text
        assert "Qui a consulté mes documents" in own.get("/account/access-log").text


def test_an_agent_never_changes_deletes_shares_or_exports(app) -> None:
    agent_routes = [(route.path, sorted(route.methods)) for route in app.routes  # type: ignore[attr-defined]
                    if getattr(route, "path", "").startswith("/agent/")]
    for path, methods in agent_routes:
        assert not re.search(r"delete|rename|share|export|erase|password|email|identity|rectif", path), path
        assert set(methods) <= {"GET", "HEAD", "POST"}, path
    citizen = make_citizen(app)
    with citizen_browser(app, citizen) as own:
        document = make_document(own)
    with staff_browser(app, make_staff(app, role="agent")) as browser:
        assert grant(browser, citizen).status_code == 303
        # The citizen's own pages and API know nothing of the staff cookie.
        for path in ("/documents", f"/documents/{document['id']}", "/account", "/account/password",
                     "/account/mandates", "/account/data", "/shares"):
            answer = browser.get(path)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), path
        assert browser.delete(f"/api/v1/documents/{document['id']}").status_code == 401
        assert browser.patch(f"/api/v1/documents/{document['id']}", json={"title": "x"}).status_code == 401
        assert browser.get("/api/v1/documents").status_code == 401
    with Session(app.state.services.engine) as db:
        assert db.get(Document, uuid.UUID(document["id"])) is not None
    # An agent in the vault is never allowed to change what they see.
    agent_actor = app.state.services.counter.actor(StaffAccount(id=uuid.uuid4(), email="a@b", name="A", role="agent",
                                                                password_hash="x", service=COUNTER), citizen.id)
    assert not agent_actor.may_change(Document(source="counter"))  # type: ignore[call-arg]


# ---- refusals --------------------------------------------------------------------------------------------------------


def test_without_a_valid_mandate_the_agent_sees_nothing(app) -> None:
    citizen = make_citizen(app)
    with citizen_browser(app, citizen) as own:
        document = make_document(own, title="Avis secret")
    services = app.state.services
    agent = make_staff(app, role="agent")
    other = make_staff(app, role="agent", service="Mairie annexe du Port")

    def refused(browser: Browser, procedure: str = "etat_civil") -> None:
        before = len(refusals(app))
        for answer in (browser.get(f"/agent/citizens/{citizen.id}/documents", params={"procedure": procedure}),
                       browser.get(f"/agent/citizens/{citizen.id}/documents/{document['id']}/download",
                                   params={"procedure": procedure}),
                       browser.post(f"/agent/citizens/{citizen.id}/documents?procedure={procedure}",
                                    files={"file": ("scan.pdf", io.BytesIO(pdf()), "application/pdf")},
                                    data={"csrf_token": browser.cookies.get("csrf") or ""})):
            assert answer.status_code == 403, answer.text[:300]
            assert "Avis secret" not in answer.text and "1 document" not in answer.text
        assert len(refusals(app)) == before + 3

    with staff_browser(app, agent) as browser, staff_browser(app, other) as other_browser:
        refused(browser)  # no mandate
        assert refusals(app)[-1].details["reason"] == "none"
        assert grant(browser, citizen, procedures=("logement",)).status_code == 303
        refused(browser, "etat_civil")  # outside its procedures
        assert refusals(app)[-1].details["reason"] == "outside_procedures"
        assert browser.get(f"/agent/citizens/{citizen.id}/documents",
                           params={"procedure": "logement"}).status_code == 200
        refused(other_browser, "logement")  # another counter
        assert refusals(app)[-1].details["service"] == "Mairie annexe du Port"
        # Expired: the end date has passed.
        with Session(services.engine) as db:
            db.exec(update(Mandate).where(Mandate.citizen_id == citizen.id)  # type: ignore[arg-type]
                    .values(ends_at=utcnow() - timedelta(minutes=1)))
            db.commit()
        refused(browser, "logement")
        assert refusals(app)[-1].details["reason"] == "ended"
    # A DPO: the counter's pages do not exist for them, and the rule refuses them anyway (audited).
    dpo = make_staff(app, role="dpo")
    with staff_browser(app, dpo) as browser:
        assert browser.get(f"/agent/citizens/{citizen.id}/documents",
                           params={"procedure": "logement"}).status_code == 404
    with Session(services.engine) as db:
        staff = db.get(StaffAccount, dpo.id)
        with pytest.raises(NoMandate):
            services.counter.require_mandate(db, staff, citizen.id, "logement")
    assert refusals(app)[-1].actor == f"staff:{dpo.id}"
    # Every refusal is in the audit chain, and the chain still verifies.
    assert len(refusals(app)) == 13
    with Session(services.engine) as db:
        assert audit.verify(db).ok
        assert len(db.exec(select(Document).where(Document.owner_id == citizen.id)).all()) == 1  # nothing added


# ---- ending -----------------------------------------------------------------------------------------------------------


def test_the_citizen_ends_a_mandate_and_the_agent_is_refused_at_once(app) -> None:
    citizen = make_citizen(app)
    with staff_browser(app, make_staff(app, role="agent")) as agent_browser:
        assert grant(agent_browser, citizen, procedures=("elections",), duration="1d").status_code == 303
        assert agent_browser.get(f"/agent/citizens/{citizen.id}/documents",
                                 params={"procedure": "elections"}).status_code == 200
        with citizen_browser(app, citizen) as own:
            page = own.get("/account/mandates")
            assert "Mandats en cours" in page.text and "Élections" in page.text and "avec votre mot de passe" in page.text
            assert 'href="/account/mandates"' in own.get("/account").text  # in the menu
            with Session(app.state.services.engine) as db:
                mandate = db.exec(select(Mandate).where(Mandate.citizen_id == citizen.id)).one()
            confirm = own.get(f"/account/mandates?end={mandate.id}")
            assert "Voulez-vous vraiment mettre fin à ce mandat" in confirm.text
            ended = own.submit(f"/account/mandates?end={mandate.id}", {}, action=f"/account/mandates/{mandate.id}/end")
            assert ended.status_code == 303
            after = own.get(ended.headers["location"])
            assert "Le mandat a pris fin" in after.text and "vous y avez mis fin le" in after.text
            assert "Vous avez mis fin au mandat" in after.text
            # Ending it twice: nothing to end.
            again = own.post(f"/account/mandates/{mandate.id}/end", data={"csrf_token": own.cookies["csrf"]})
            assert again.status_code == 404
        assert agent_browser.get(f"/agent/citizens/{citizen.id}/documents",
                                 params={"procedure": "elections"}).status_code == 403
    with Session(app.state.services.engine) as db:
        mandate = db.exec(select(Mandate).where(Mandate.citizen_id == citizen.id)).one()
        assert mandate.ended_at is not None and mandate.ended_by == "citizen"
    assert journal(app, citizen)[-1].action == "mandate.ended"


def test_another_citizen_cannot_end_someone_elses_mandate(app) -> None:
    citizen = make_citizen(app)
    with staff_browser(app, make_staff(app, role="agent")) as browser:
        assert grant(browser, citizen).status_code == 303
    with Session(app.state.services.engine) as db:
        mandate_id = db.exec(select(Mandate.id)).one()
    with citizen_browser(app) as stranger:
        answer = stranger.submit("/account/mandates", {}, action=f"/account/mandates/{mandate_id}/end")
        assert answer.status_code == 404
    with Session(app.state.services.engine) as db:
        assert db.get(Mandate, mandate_id).ended_at is None  # type: ignore[union-attr]


def test_the_agent_ends_a_mandate_at_the_citizens_request(app) -> None:
    citizen = make_citizen(app)
    with staff_browser(app, make_staff(app, role="agent")) as browser:
        assert grant(browser, citizen).status_code == 303
        with Session(app.state.services.engine) as db:
            mandate_id = db.exec(select(Mandate.id)).one()
        page = f"/agent/citizens/{citizen.id}"
        unticked = browser.submit(page, {}, action=f"/agent/citizens/{citizen.id}/mandates/{mandate_id}/end")
        assert unticked.status_code == 400
        ended = browser.submit(page, {"asked": "yes"}, action=f"/agent/citizens/{citizen.id}/mandates/{mandate_id}/end")
        assert ended.status_code == 303 and "Aucun mandat en cours" in browser.get(page).text
        assert browser.get(f"/agent/citizens/{citizen.id}/documents",
                           params={"procedure": "etat_civil"}).status_code == 403
    with Session(app.state.services.engine) as db:
        assert db.get(Mandate, mandate_id).ended_by == "agent"  # type: ignore[union-attr]
    with citizen_browser(app, citizen) as own:
        assert "Fin du mandat, à votre demande" in own.get("/account/mandates").text


# ---- GDPR ---------------------------------------------------------------------------------------------------------------


def test_the_export_holds_the_mandates_and_the_journal_and_the_erasure_counts_them(app) -> None:
    citizen = make_citizen(app)
    with citizen_browser(app, citizen) as own:
        make_document(own, title="Bail")
    with staff_browser(app, make_staff(app, role="agent", name="Dominique Accueil")) as browser:
        assert grant(browser, citizen, procedures=("logement", "social")).status_code == 303
        browser.get(f"/agent/citizens/{citizen.id}/documents", params={"procedure": "logement"})
    services = app.state.services
    with Session(services.engine) as db:
        archive = b"".join(services.gdpr.export(db, citizen_id=citizen.id, by=DPO))
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        mandates = json.loads(zf.read("mandats.json"))
        assert "mandats.json" in zf.read("LISEZ-MOI.txt").decode()
    assert mandates[0]["guichet"] == COUNTER and [p["code"] for p in mandates[0]["demarches"]] == ["social", "logement"]
    assert mandates[0]["confirme_par"] == "mot de passe"
    assert [line["action"] for line in mandates[0]["journal"]] == ["mandate.granted", "documents.listed"]
    assert mandates[0]["journal"][1]["agent"] == "Dominique Accueil"

    with Session(services.engine) as db:
        certificate = services.gdpr.erase(db, citizen_id=citizen.id, reason="demande", by=DPO)
    destroyed = certificate_claims(certificate)["destroyed"]
    assert destroyed["mandates"] == 1 and destroyed["mandate_journal_lines"] == 2
    with Session(services.engine) as db:
        assert db.exec(select(Mandate)).first() is None and db.exec(select(MandateAction)).first() is None
