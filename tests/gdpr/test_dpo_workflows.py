"""What the DPO sees and does on the register's pages: erasure only from its confirmation page, the
whole certificate, finding a person by name, rectification shown then confirmed, inline errors."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from joserfc import jwk, jwt
from sqlalchemy import update
from sqlmodel import Session, select

from tests.factories import citizen_browser, make_citizen, make_document, make_oidc_app, make_staff, staff_browser
from tests.oidc.oidc_support import authorize, exchange
from tests.support import Browser
from vault.auth.models import Citizen
from vault.db import utcnow
from vault.gdpr.models import DataRequest
from vault.gdpr.service import Staff


@pytest.fixture
def dpo(app) -> Iterator[tuple[Browser, pyotp.TOTP]]:
    staff = make_staff(app, email="dpo@ville.example.fr", name="Camille Rousseau", role="dpo")
    with staff_browser(app, staff) as browser:
        yield browser, staff.totp


def open_request(app, citizen_id: uuid.UUID, kind: str) -> str:
    services = app.state.services
    with Session(services.engine) as db:
        item = services.gdpr.open_request(db, kind=kind, citizen_id=citizen_id, channel="counter",
                                          by=Staff(actor="staff:test", label="test"), identity_check="CNI")
        db.commit()
        return f"/dpo/requests/{item.id}"


def text_of(page: Any) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())


def token_of(page: Any) -> str:
    found = re.search(r'name="confirmation" value="([0-9a-f]+)"', page.text)
    assert found, "no confirmation token"
    return found.group(1)


def test_dpo_pages_show_the_staff_header_not_the_citizen_menu(dpo) -> None:
    browser, _ = dpo
    for path in ("/dpo/", "/dpo/requests/" + str(uuid.uuid4())):
        page = browser.get(path)
        assert "Camille Rousseau" in page.text and "Délégué(e) à la protection des données" in page.text
        assert "Registre des demandes" in page.text and 'action="/dpo/logout"' in page.text
        assert "Mes justificatifs" not in page.text and 'href="/account"' not in page.text
    login = Browser(browser.app).get("/dpo/login").text
    assert "Créer un compte" not in login and "Mes justificatifs" not in login


def test_erasure_is_confirmed_on_a_page_naming_the_person(app, dpo, engine) -> None:
    citizen = make_citizen(app, email="effacer@example.org", given_name="Louise", family_name="Bernard",
                           birthdate="1984-03-09")
    with citizen_browser(app, citizen) as own:
        make_document(own, title="Avis d'imposition")
        held = make_document(own, title="Bulletin de paie")
        client = make_oidc_app(engine, scope="openid profile", name="Cantine scolaire")
        exchange(own, authorize(own, client, scope="openid profile"))
    services = app.state.services
    with Session(engine) as db:
        services.gdpr.hold(db, document_id=uuid.UUID(held["id"]), reason="contentieux en cours",
                           by=Staff(actor="staff:test", label="test"))
        db.commit()
    browser, _ = dpo
    path = open_request(app, citizen.id, "erasure")

    request_page = browser.get(path).text
    assert f'action="{path}/erase"' not in request_page  # no erase button on the request's page
    confirm = browser.get(f"{path}/erase")
    shown = text_of(confirm)
    for fact in ("Bernard", "Louise", "09/03/1984", "effacer@example.org", "Irréversible",
                 "Documents qui seront détruits : 1", "Bulletin de paie", "contentieux en cours", "Cantine scolaire"):
        assert fact in shown, fact

    # A POST that did not come from the confirmation page (no token, a forged one, another request's) is refused.
    for forged in ({}, {"confirmation": "0" * 64},
                   {"confirmation": token_of(browser.get(f"{open_request(app, citizen.id, 'erasure')}/erase"))}):
        refused = browser.submit(path, {"reason": "demande", "irreversible": "yes", **forged}, action=f"{path}/erase")
        assert refused.status_code == 400 and "se confirme sur cette page" in refused.text
    # The box unticked: the same page, the reason as typed, the error beside the box.
    unticked = browser.submit(f"{path}/erase", {"reason": "courrier du 3 mars", "confirmation": token_of(confirm)})
    assert unticked.status_code == 400 and 'value="courrier du 3 mars"' in unticked.text
    assert 'id="erase-irreversible-error"' in unticked.text and 'aria-invalid="true"' in unticked.text
    with Session(engine) as db:
        assert db.get(Citizen, citizen.id) is not None

    erased = browser.submit(f"{path}/erase", {"reason": "courrier du 3 mars", "irreversible": "yes",
                                              "confirmation": token_of(confirm)})
    assert erased.status_code == 303
    with Session(engine) as db:
        assert db.get(Citizen, citizen.id) is None


def test_the_whole_certificate_is_shown_and_downloads_and_verifies(app, dpo, engine) -> None:
    citizen = make_citizen(app, email="certif@example.org")
    browser, _ = dpo
    path = open_request(app, citizen.id, "erasure")
    confirm = browser.get(f"{path}/erase")
    browser.submit(f"{path}/erase", {"reason": "demande", "irreversible": "yes", "confirmation": token_of(confirm)})

    download = browser.get(f"{path}/certificate.jwt")
    assert download.status_code == 200 and download.headers["content-type"] == "application/jwt"
    assert download.headers["content-disposition"].startswith("attachment;")
    certificate = download.text
    keys = jwk.KeySet.import_key_set(browser.get("/jwks").json())
    claims = jwt.decode(certificate, keys).claims
    assert claims["typ"] == "erasure-certificate" and claims["request"] == path.rsplit("/", 1)[1]
    page = browser.get(path).text
    assert certificate in page  # whole, not cut
    assert "destroyed.citizen_key" in page and "RGPD article 17" in page
    assert "…" not in text_of(browser.get(path)).split("Issue", 1)[1].split("Statut")[0]
    # Staff only.
    with citizen_browser(app) as someone:
        assert someone.get(f"{path}/certificate.jwt").status_code == 404
    assert Browser(app).get(f"{path}/certificate.jwt").status_code == 404


def test_registering_a_request_finds_the_person_by_name_not_an_erased_one(app, dpo, engine) -> None:
    kept = make_citizen(app, email="paul.lefevre@example.org", given_name="Paul", family_name="Lefèvre",
                        birthdate="1971-11-02")
    gone = make_citizen(app, email="pauline.lefevre@example.org", given_name="Pauline", family_name="Lefèvre",
                        birthdate="1975-01-20")
    services = app.state.services
    with Session(engine) as db:
        services.gdpr.erase(db, citizen_id=gone.id, reason="test", by=Staff(actor="staff:test", label="test"))
    browser, _ = dpo

    found = browser.get("/dpo/?q_name=lefèvre")
    assert "paul.lefevre@example.org" in found.text and "02/11/1971" in found.text
    assert "pauline.lefevre@example.org" not in found.text and "Pauline" not in found.text
    assert f'value="{kept.id}"' in found.text
    assert str(kept.id) in browser.get("/dpo/?q_birthdate=02/11/1971").text
    assert str(kept.id) in browser.get("/dpo/?q_email=paul.lefevre").text
    assert "Aucune personne ne correspond" in browser.get("/dpo/?q_name=Pauline").text

    opened = browser.submit("/dpo/?q_name=lef%C3%A8vre", {"citizen_id": str(kept.id), "kind": "access",
                                                          "channel": "counter", "received_on": "",
                                                          "identity_check": "CNI"}, action="/dpo/requests")
    assert opened.status_code == 303
    assert "Paul Lefèvre" in browser.get(opened.headers["location"]).text
    # The identifier stays possible for operators.
    typed = browser.submit("/dpo/", {"citizen_uuid": str(kept.id), "kind": "erasure", "channel": "mail"},
                           action="/dpo/requests")
    assert typed.status_code == 303


def test_a_failed_registration_keeps_what_was_typed(app, dpo) -> None:
    browser, _ = dpo
    failed = browser.submit("/dpo/", {"citizen_uuid": "pas-un-identifiant", "kind": "erasure", "channel": "mail",
                                      "received_on": "31/02/2026", "identity_check": "passeport vu au guichet"},
                            action="/dpo/requests")
    assert failed.status_code == 400
    page = failed.text
    assert 'class="error-summary"' in page and 'href="#citizen_uuid"' in page and 'href="#received_on"' in page
    assert 'value="pas-un-identifiant"' in page and 'value="31/02/2026"' in page
    assert 'value="passeport vu au guichet"' in page and '<option value="erasure" selected>' in page
    assert re.search(r'id="received_on"[^>]*aria-invalid="true"[^>]*aria-describedby="[^"]*received_on-error', page)
    nobody = browser.submit("/dpo/", {"kind": "access", "channel": "mail"}, action="/dpo/requests")
    assert nobody.status_code == 400 and "Cherchez la personne concernée" in nobody.text


def test_rectification_shows_current_values_and_asks_to_confirm(app, dpo, engine) -> None:
    citizen = make_citizen(app, email="rectif@example.org", family_name="Durand", given_name="Alice")
    browser, _ = dpo
    path = open_request(app, citizen.id, "rectification")
    page = browser.get(path).text
    assert re.search(r'id="rectify-family_name-current">Valeur actuelle : <strong>Durand</strong>', page)
    assert 'aria-describedby="rectify-family_name-current"' in page

    asked = browser.submit(path, {"family_name": "Durand-Moreau", "reason": "acte de mariage"},
                           action=f"{path}/rectify")
    assert asked.status_code == 200
    assert "Vous allez changer « Nom de naissance » de « Durand » en « Durand-Moreau »" in text_of(asked)
    with Session(engine) as db:
        assert db.get(Citizen, citizen.id).family_name == "Durand"  # nothing changed before the confirmation
    browser.submit(path, {"family_name": "Durand-Moreau", "reason": "acte de mariage", "step": "confirm"},
                   action=f"{path}/rectify")
    with Session(engine) as db:
        assert db.get(Citizen, citizen.id).family_name == "Durand-Moreau"

    bad = browser.submit(path, {"birthdate": "32/13/1990", "given_name": "Alice Jeanne", "reason": ""},
                         action=f"{path}/rectify")
    assert bad.status_code == 400 and 'value="32/13/1990"' in bad.text and 'value="Alice Jeanne"' in bad.text
    assert 'id="rectify-birthdate-error"' in bad.text and 'href="#rectify-birthdate"' in bad.text


def test_a_certified_identity_is_refused_inline(app, dpo, engine) -> None:
    citizen = make_citizen(app, email="fc@example.org")
    with Session(engine) as db:
        db.exec(update(Citizen).where(Citizen.id == citizen.id).values(identity_certified_at=utcnow(),
                                                                       identity_source="franceconnect"))
        db.commit()
    browser, _ = dpo
    path = open_request(app, citizen.id, "rectification")
    assert "certifiée par FranceConnect" in browser.get(path).text
    refused = browser.submit(path, {"family_name": "Autre", "reason": "x"}, action=f"{path}/rectify")
    assert refused.status_code == 400 and "certifiée par FranceConnect" in refused.text
    assert 'value="Autre"' in refused.text and 'href="#rectify-identity"' in refused.text


def test_extend_close_and_hold_errors_keep_the_form(app, dpo, engine) -> None:
    citizen = make_citizen(app, email="forms@example.org")
    with citizen_browser(app, citizen) as own:
        make_document(own, title="Quittance")
    browser, _ = dpo
    path = open_request(app, citizen.id, "access")
    extend = browser.submit(path, {"reason": "", "told_on": "01/01/2020"}, action=f"{path}/extend")
    assert extend.status_code == 400 and 'value="01/01/2020"' in extend.text
    assert 'id="extend-reason-error"' in extend.text and "Erreur :" in extend.text
    close = browser.submit(path, {"status": "refused", "outcome": "pièces manquantes", "refusal_reason": ""},
                           action=f"{path}/close")
    assert close.status_code == 400 and 'value="pièces manquantes"' in close.text
    assert 'id="close-refusal_reason-error"' in close.text and '<option value="refused" selected>' in close.text
    hold = browser.submit(path, {"document_id": "", "reason": "contentieux"}, action=f"{path}/hold")
    assert hold.status_code == 400 and 'value="contentieux"' in hold.text and 'id="hold-document_id-error"' in hold.text
    with Session(engine) as db:
        assert db.exec(select(DataRequest.status).where(DataRequest.citizen_id == citizen.id)).one() == "received"


def test_erasure_needs_a_fresh_reauthentication_even_from_its_page(app, dpo, engine) -> None:
    from vault.gdpr.models import StaffSession

    citizen = make_citizen(app, email="reauth@example.org")
    browser, _ = dpo
    path = open_request(app, citizen.id, "erasure")
    token = token_of(browser.get(f"{path}/erase"))
    with Session(engine) as db:
        db.exec(update(StaffSession).values(reauth_at=utcnow() - timedelta(minutes=6)))
        db.commit()
    page = browser.get(f"{path}/erase").text
    assert 'action="/dpo/reauth"' in page and 'name="confirmation"' not in page
    refused = browser.submit(f"{path}/erase", {"reason": "x", "irreversible": "yes", "confirmation": token})
    assert refused.status_code == 403
