"""The whole service walked by the people who use it, in a real browser, one page after the other:
a citizen registers, confirms their address, logs in, turns on two-factor login, adds a document,
lets an app read it and shares it by link; a counter agent opens an account for a neighbour who has
no address, prints her letter, receives a mandate from the first citizen and acts under it; the
citizen reads the journal and ends the mandate; the DPO erases the account.

Forms are typed into and sent with the keyboard where a person would (Tab from field to field,
Enter to send); every page state met passes axe-core's WCAG 2.0/2.1 A and AA rules at 1280 px and
scrolls nothing sideways at 320 px."""

from __future__ import annotations

import re
from typing import Any

import pyotp

from tests.browser.flows import authorization_url, code_from, documents_app, exchange, play_the_app
from tests.factories import make_staff, pdf
from tests.support import Outbox

PASSWORD = "des hirondelles sous le toit de la grange"
NEIGHBOUR_PASSWORD = "trois merles sur la haie du jardin"



def wide(page: Any) -> Any:
    page.set_viewport_size({"width": 1280, "height": 900})
    return page


def type_in(page: Any, text: str) -> None:
    """Type into the focused field, as a keyboard does."""
    page.keyboard.type(text)


def staff_log_in(page: Any, staff: Any, lands: str) -> None:
    """Staff log in with the keyboard: address, Tab, password, Tab, the code, Enter."""
    page.goto("/dpo/login")
    page.get_by_label("Adresse e-mail").focus()
    type_in(page, staff.email)
    page.keyboard.press("Tab")
    type_in(page, staff.password)
    page.keyboard.press("Tab")
    type_in(page, staff.totp.now())
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(lands))


def test_a_citizen_an_agent_and_the_dpo_walk_the_service(site, open_context, audit) -> None:
    outbox = Outbox(site.app.state.settings.outbox_dir, site.app.state.engine)
    address = "lucienne.morel@exemple.example.org"

    # ---- a citizen registers, confirms, logs in, turns on two-factor login -----------------------
    citizen = open_context()
    play_the_app(citizen)
    page = wide(citizen.new_page())
    page.goto("/register")
    audit(page, "registration form")
    page.get_by_label("Adresse e-mail").fill(address)
    page.get_by_label("Prénom(s)").fill("Lucienne Andrée")
    page.get_by_label("Nom de naissance").fill("Morel")
    page.get_by_label("Date de naissance").fill("12031942")  # what a numeric keypad invites
    page.get_by_label("Féminin").check()
    page.get_by_label("Pays de naissance").select_option(label="France")
    page.get_by_label("Commune de naissance").fill("Quimper")
    page.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
    confirm = page.get_by_label(re.compile("seconde fois|Confirmez"))
    if confirm.count():
        confirm.fill(PASSWORD)
    page.get_by_label("Mot de passe", exact=True).press("Enter")
    page.wait_for_load_state()
    choices = page.get_by_role("radio", name=re.compile("Quimper"))
    if choices.count():  # several communes answer to the name: the person picks hers
        choices.first.check()
        page.get_by_role("button", name="Créer mon compte").click()
        page.wait_for_load_state()
    audit(page, "registration done, check your mail")

    link = outbox.last(address).path()
    page.goto(link)
    audit(page, "the mailed confirmation link")
    page.get_by_role("button").filter(has_text=re.compile("Confirmer")).first.press("Enter")
    page.wait_for_load_state()

    page.goto("/login")
    page.get_by_label(re.compile("Adresse e-mail")).focus()
    type_in(page, address)
    page.keyboard.press("Tab")
    type_in(page, PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/account|/documents|/$"))
    audit(page, "logged in")

    page.goto("/account/totp")
    secret = page.locator("code.secret").inner_text().replace(" ", "")
    audit(page, "two-factor login, the key to scan")
    page.get_by_label("Code à 6 chiffres").fill(pyotp.TOTP(secret).now())
    page.get_by_label("Code à 6 chiffres").press("Enter")
    page.get_by_role("link", name="J'ai noté mes codes").wait_for()
    recovery_code = page.locator("ol.codes code").first.inner_text()
    audit(page, "two-factor login on, the recovery codes")

    # ---- a document, an app that reads it, a share link ----------------------------------------------
    page.goto("/documents")
    page.get_by_label("Fichier").set_input_files({"name": "quittance.pdf", "mimeType": "application/pdf",
                                                  "buffer": pdf()})
    page.get_by_label("Type de document").select_option("proof_of_address")
    page.get_by_label("Titre").fill("Quittance de loyer de mars")
    page.get_by_role("button", name="Ajouter le document").click()
    page.get_by_role("status").wait_for()
    audit(page, "Mes justificatifs, one document added")

    app = documents_app(site)
    page.goto(authorization_url(app, scope="openid profile"))
    page.get_by_role("heading", name="Autoriser l'accès à vos informations").wait_for()
    audit(page, "consent")
    page.get_by_role("checkbox", name=re.compile("Quittance de loyer de mars")).check()
    page.get_by_role("button", name="Autoriser").click()
    page.wait_for_url(re.compile(r"^https://rp\.example\.org/callback"))
    tokens = exchange(site, app, code_from(page.url))
    assert len(tokens["authorization_details"][0]["documents"]) == 1

    page.goto("/shares/new")
    page.get_by_role("checkbox", name=re.compile("Quittance de loyer de mars")).check()
    page.get_by_label(re.compile("Pour qui")).fill("Mon propriétaire")
    page.get_by_role("button", name="Créer le lien").click()
    page.get_by_role("heading", name="Votre lien de partage est prêt").wait_for()
    audit(page, "share link ready")

    # ---- the counter: an account for a neighbour without an address ------------------------------
    agent = make_staff(site.app, role="agent", name="Dominique Accueil")
    desk = wide(open_context().new_page())
    staff_log_in(desk, agent, r"/agent/$")
    audit(desk, "the counter's home")
    desk.get_by_role("link", name="Ouvrir un compte").click()
    desk.get_by_label("Pièce d'identité présentée").select_option("passeport")
    desk.get_by_label("J'ai vérifié ce document en personne").check()
    desk.get_by_label("Prénom(s)").fill("Yvette")
    desk.get_by_label("Nom de naissance").fill("Le Goff")
    desk.get_by_label("Date de naissance").fill("3 juin 1938")
    desk.get_by_label("Féminin").check()
    desk.get_by_label("Pays de naissance").select_option(label="France")
    desk.get_by_label("Commune de naissance").fill("Brest")
    desk.get_by_role("button", name="Ouvrir le compte").click()
    desk.wait_for_load_state()
    brest = desk.get_by_role("radio", name=re.compile("Brest"))
    if brest.count():
        brest.first.check()
        desk.get_by_role("button", name="Ouvrir le compte").click()
    desk.get_by_role("button", name="Imprimer la lettre d'activation").wait_for()
    login_id = desk.locator("strong.code").inner_text()
    audit(desk, "the neighbour's file")
    desk.get_by_role("button", name="Imprimer la lettre d'activation").click()
    desk.get_by_role("button", name="Télécharger la lettre en PDF").wait_for()
    code = desk.locator("dd.letter-code").nth(1).inner_text()
    audit(desk, "the activation letter")

    neighbour = wide(open_context().new_page())
    neighbour.goto("/activate")
    neighbour.get_by_label("Identifiant (ou adresse e-mail)").fill(login_id)
    neighbour.get_by_label("Code d'activation").fill(code)
    neighbour.get_by_label("Mot de passe", exact=True).fill(NEIGHBOUR_PASSWORD)
    neighbour.get_by_label("Le même mot de passe, une seconde fois").fill(NEIGHBOUR_PASSWORD)
    neighbour.get_by_role("button", name="Activer mon compte").click()
    neighbour.wait_for_url(re.compile(r"/login\?"))
    audit(neighbour, "activated: the login page with her identifier")
    neighbour.get_by_label("Mot de passe", exact=True).fill(NEIGHBOUR_PASSWORD)
    neighbour.get_by_label("Mot de passe", exact=True).press("Enter")
    neighbour.wait_for_load_state()
    assert "/login" not in neighbour.url, neighbour.content()[:1000]

    # ---- the first citizen, at the counter, gives a mandate; the agent acts under it -------------
    desk.goto("/agent/")
    desk.get_by_label("Nom ou prénom").focus()
    type_in(desk, "morel")
    desk.keyboard.press("Enter")
    desk.get_by_role("link", name=re.compile("Morel")).click()
    desk.get_by_role("heading", name="Donner un mandat").wait_for()
    desk.get_by_label("Logement", exact=True).check()
    desk.get_by_label("1 mois", exact=True).check()
    desk.get_by_role("button", name="Continuer : faire confirmer par la personne").click()
    desk.get_by_role("heading", name="Confirmation par la personne").wait_for()
    audit(desk, "the mandate confirmed by the person")
    desk.get_by_label("Votre mot de passe (celui de votre espace citoyen)").fill(PASSWORD)
    # Her phone stayed at home: one of the recovery codes she noted (two-factor login is on).
    desk.get_by_label(re.compile("Votre code à 6 chiffres")).fill(recovery_code)
    desk.get_by_label(re.compile("Votre code à 6 chiffres")).press("Enter")
    desk.get_by_role("status").wait_for()
    assert outbox.last(address).subject  # the citizen is told by mail

    desk.get_by_label("La démarche pour laquelle vous agissez").select_option("logement")
    desk.get_by_role("button", name="Voir ses documents").click()
    desk.get_by_role("heading", name="Ses documents").wait_for()
    desk.get_by_label("Fichier").set_input_files({"name": "attestation.pdf", "mimeType": "application/pdf",
                                                  "buffer": pdf()})
    desk.get_by_label("Type de document").select_option("proof_of_address")
    desk.get_by_label("Titre").fill("Attestation d'hébergement")
    desk.get_by_role("button", name="Ajouter le document").click()
    desk.get_by_role("status").wait_for()
    audit(desk, "the citizen's documents, one added at the counter")
    with desk.expect_download() as download:
        desk.get_by_role("link", name=re.compile("Télécharger.*Quittance de loyer de mars")).click()
    assert download.value.suggested_filename.startswith("Quittance de loyer de mars")
    documents_under_mandate = desk.url

    # ---- the citizen reads the journal and ends the mandate -------------------------------------
    page.goto("/documents")
    assert page.get_by_text(re.compile("[Aa]jouté au guichet par")).count() >= 1
    page.get_by_role("link", name="Mes mandats").first.click()
    page.get_by_role("heading", name="Journal : ce que le guichet a fait pour vous").wait_for()
    assert page.get_by_text("A ajouté le document « Attestation d'hébergement »").count() == 1
    audit(page, "Mes mandats with the journal")
    page.get_by_role("link", name=re.compile("Mettre fin au mandat")).click()
    page.get_by_role("button", name="Oui, mettre fin au mandat").press("Enter")
    page.get_by_role("heading", name="Mandats terminés").wait_for()
    audit(page, "Mes mandats, the mandate ended")

    ended = desk.goto(documents_under_mandate)
    assert ended.status == 403
    audit(desk, "the agent after the end of the mandate")

    # ---- the DPO erases the account --------------------------------------------------------------
    dpo = make_staff(site.app, role="dpo", name="Camille Rousseau")
    office = wide(open_context().new_page())
    staff_log_in(office, dpo, r"/dpo/$")
    office.get_by_label("Nom ou prénom").fill("Morel")
    office.get_by_role("button", name="Chercher").click()
    office.get_by_role("radio", name=re.compile("Morel")).check()
    office.get_by_label("Type").select_option("erasure")
    office.get_by_role("button", name="Enregistrer").click()
    office.get_by_role("link", name="Préparer l'effacement définitif").click()
    office.get_by_role("heading", name="Confirmer l'effacement définitif").wait_for()
    audit(office, "erasure to confirm")
    office.get_by_role("checkbox").check()
    office.get_by_role("button", name="Effacer définitivement").click()
    office.get_by_role("heading", name="Certificat d'effacement").wait_for()
    audit(office, "erased, the certificate")
    assert "Erasure" in outbox.last(address).body or "effac" in outbox.last(address).body.lower()
    audit.assert_clean()
