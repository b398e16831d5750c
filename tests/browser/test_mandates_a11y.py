"""Mandates in a real browser, reached as the agent and the citizen reach them (staff login with the
TOTP code, ticks, typing, an upload): axe-core's WCAG 2.0/2.1 A and AA rules at 1280 px, and nothing
scrolling sideways at 320 px."""

from __future__ import annotations

import re

from sqlalchemy import update
from sqlmodel import Session

from tests.browser.conftest import log_in, staff_log_in
from tests.factories import COUNTER, make_document, make_staff, pdf
from vault.auth.models import Citizen
from vault.counter.models import CounterEnrolment


def test_granting_acting_under_and_ending_a_mandate(site, open_context, audit) -> None:
    agent = make_staff(site.app, name="Dominique Accueil-Bienvenue", role="agent")
    citizen = site.citizen(given_name="Hélène", family_name="Garnier-Delacroix-Montmorency",
                           email="helene.garnier-delacroix-montmorency@exemple-de-commune.example.org")
    with site.api(citizen) as api:
        make_document(api, title="Livret de famille de la famille Garnier-Delacroix-Montmorency", type="family_record")
    # An account opened at the counter, without address or password yet.
    unsigned = site.citizen(given_name="Marcel", family_name="Dupuis")
    with Session(site.engine) as db:
        db.exec(update(Citizen).where(Citizen.id == unsigned.id)  # type: ignore[arg-type]
                .values(email=None, password_hash=None, email_verified_at=None))
        db.add(CounterEnrolment(citizen_id=unsigned.id, document_kind="cni", checked_by=agent.id, service=COUNTER))
        db.commit()

    context = open_context()
    page = context.new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    staff_log_in(page, agent)

    page.goto(f"/agent/citizens/{citizen.id}")
    page.get_by_role("heading", name="Donner un mandat").wait_for()
    audit(page, "the citizen's file with the grant form")

    page.get_by_role("button", name="Continuer : faire confirmer par la personne").click()
    page.get_by_role("alert").wait_for()
    audit(page, "grant form refused: nothing ticked")

    page.get_by_label("État civil", exact=True).check()
    page.get_by_label("Logement", exact=True).check()
    page.get_by_label("6 mois", exact=True).check()
    page.get_by_role("button", name="Continuer : faire confirmer par la personne").click()
    page.get_by_role("heading", name="Confirmation par la personne").wait_for()
    audit(page, "confirmation by the person")

    password = page.get_by_label("Votre mot de passe (celui de votre espace citoyen)")
    password.fill("pas le bon mot de passe")
    page.get_by_role("button", name="J'accorde ce mandat").click()
    page.get_by_role("alert").wait_for()
    audit(page, "confirmation refused: wrong password")

    page.get_by_label("Votre mot de passe (celui de votre espace citoyen)").fill(citizen.password)
    page.get_by_role("button", name="J'accorde ce mandat").click()
    page.get_by_role("status").wait_for()
    audit(page, "the file with a mandate")

    page.get_by_label("La démarche pour laquelle vous agissez").select_option("logement")
    page.get_by_role("button", name="Voir ses documents").click()
    page.get_by_role("heading", name="Ses documents").wait_for()
    audit(page, "documents under a mandate")

    page.get_by_label("Fichier").set_input_files({"name": "quittance.pdf", "mimeType": "application/pdf",
                                                  "buffer": pdf()})
    page.get_by_label("Type de document").select_option("proof_of_address")
    page.get_by_label("Titre").fill("Quittance de loyer de mars")
    page.get_by_role("button", name="Ajouter le document").click()
    page.get_by_role("status").wait_for()
    assert page.get_by_role("cell", name="Quittance de loyer de mars", exact=True).count() == 1
    audit(page, "documents under a mandate, one added")

    # A citizen with two-factor login: the confirmation asks their code too.
    guarded = site.citizen(given_name="Odile", family_name="Marchand", totp=True)
    page.goto(f"/agent/citizens/{guarded.id}")
    page.get_by_label("Élections", exact=True).check()
    page.get_by_label("1 jour", exact=True).check()
    page.get_by_role("button", name="Continuer : faire confirmer par la personne").click()
    page.get_by_role("heading", name="Confirmation par la personne").wait_for()
    page.get_by_label("Votre mot de passe (celui de votre espace citoyen)").fill(guarded.password)
    page.get_by_label("Votre code à 6 chiffres (application d'authentification)").fill("000000")
    page.get_by_role("button", name="J'accorde ce mandat").click()
    page.get_by_role("alert").wait_for()
    audit(page, "confirmation with the code refused: wrong code")

    page.goto(f"/agent/citizens/{unsigned.id}")
    page.get_by_label("Social et solidarité", exact=True).check()
    page.get_by_label("1 an", exact=True).check()
    page.get_by_role("button", name="Continuer : faire confirmer par la personne").click()
    page.get_by_role("heading", name="Faire signer le mandat").wait_for()
    audit(page, "the mandate to have signed")
    page.get_by_role("button", name="Enregistrer le mandat signé").click()
    page.get_by_role("alert").first.wait_for()
    audit(page, "the signed mandate refused: the identity check not attested")
    page.get_by_role("link", name="Imprimer le mandat").click()
    page.get_by_role("heading", name="Mandat donné au guichet de la mairie").wait_for()
    audit(page, "the printed mandate")

    own = open_context().new_page()
    own.set_viewport_size({"width": 1280, "height": 900})
    log_in(own, citizen)
    own.get_by_role("link", name="Mes mandats").click()
    own.get_by_role("heading", name="Journal : ce que le guichet a fait pour vous").wait_for()
    assert own.get_by_text("A ajouté le document « Quittance de loyer de mars »").count() == 1
    audit(own, "Mes mandats with the journal")
    own.get_by_role("link", name=re.compile("Mettre fin au mandat")).click()
    own.get_by_role("button", name="Oui, mettre fin au mandat").wait_for()
    audit(own, "ending a mandate: the confirmation")
    own.get_by_role("button", name="Oui, mettre fin au mandat").click()
    own.get_by_role("heading", name="Mandats terminés").wait_for()
    audit(own, "Mes mandats, the mandate ended")
    audit.assert_clean()
