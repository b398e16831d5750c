"""An account opened at the counter, in a real browser: the agent's form (refused, then filled),
the citizen's file with its letter button, the letter, and the citizen's /activate page with an
error; two-factor login turned off at the counter (its form refused, then done). axe-core's WCAG
2.0/2.1 A and AA rules at 1280 px, nothing scrolling sideways at 320 px."""

from __future__ import annotations

import re

from tests.browser.conftest import staff_log_in
from tests.factories import make_staff


def test_open_an_account_print_its_letter_and_activate_it(site, open_context, audit) -> None:
    agent = make_staff(site.app, role="agent", name="Dominique Accueil")
    page = open_context().new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    staff_log_in(page, agent)
    page.get_by_role("link", name="Ouvrir un compte").click()
    page.get_by_role("heading", name="Ouvrir un compte").wait_for()

    page.get_by_label("Date de naissance").fill("31/02/1942")
    page.get_by_role("button", name="Ouvrir le compte").click()
    page.get_by_role("alert").first.wait_for()
    audit(page, "the account form, refused")

    page.get_by_label("Pièce d'identité présentée").select_option("cni")
    page.get_by_label("J'ai vérifié ce document en personne").check()
    page.get_by_label("Prénom(s)").fill("Marie-Thérèse Éléonore")
    page.get_by_label("Nom de naissance").fill("Garnier-Delacroix-Montmorency")
    page.get_by_label("Date de naissance").fill("12 mars 1942")
    page.get_by_label("Féminin").check()
    page.get_by_label("Commune de naissance").fill("Quimper")
    page.get_by_role("button", name="Ouvrir le compte").click()
    page.get_by_role("button", name="Imprimer la lettre d'activation").wait_for()
    login_id = page.locator("strong.code").inner_text()
    audit(page, "the citizen's file with its letter button")

    page.get_by_role("button", name="Imprimer la lettre d'activation").click()
    page.get_by_role("button", name="Télécharger la lettre en PDF").wait_for()
    code = page.locator("dd.letter-code").nth(1).inner_text()
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", code)
    audit(page, "the activation letter")

    page.get_by_role("link", name="Retour au dossier").click()
    page.get_by_label("La personne est présente : j'ai vérifié sa pièce d'identité à l'instant").wait_for()
    audit(page, "the citizen's file: a new letter needs the identity checked again")
    page.get_by_role("button", name="Imprimer la lettre d'activation").click()
    page.get_by_role("alert").first.wait_for()
    audit(page, "a new letter refused: the identity check not attested")

    citizen_page = open_context().new_page()
    citizen_page.set_viewport_size({"width": 1280, "height": 900})
    citizen_page.goto("/activate")
    citizen_page.get_by_label("Identifiant (ou adresse e-mail)").fill(login_id)
    citizen_page.get_by_label("Code d'activation").fill("AAAA-BBBB-CCCC")
    citizen_page.get_by_label("Mot de passe", exact=True).fill("trois merles sur la haie du jardin")
    citizen_page.get_by_label("Le même mot de passe, une seconde fois").fill("trois merles sur la haie du jardin")
    citizen_page.get_by_role("button", name="Activer mon compte").click()
    citizen_page.get_by_role("alert").wait_for()
    assert citizen_page.get_by_text("Identifiant ou code incorrect, ou code expiré.").count() == 1
    audit(citizen_page, "/activate with an error")

    citizen_page.get_by_label("Code d'activation").fill(code.lower())
    citizen_page.get_by_label("Mot de passe", exact=True).fill("trois merles sur la haie du jardin")
    citizen_page.get_by_label("Le même mot de passe, une seconde fois").fill("trois merles sur la haie du jardin")
    citizen_page.get_by_role("button", name="Activer mon compte").click()
    citizen_page.wait_for_url(re.compile(r"/login\?"))
    assert citizen_page.get_by_label("Adresse e-mail ou identifiant").input_value() == login_id
    audit.assert_clean()


def test_turn_off_two_factor_login_at_the_counter(site, open_context, audit) -> None:
    agent = make_staff(site.app, role="agent", name="Dominique Accueil")
    citizen = site.citizen(given_name="Odile", family_name="Marchand", totp=True)
    page = open_context().new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    staff_log_in(page, agent)
    page.goto(f"/agent/citizens/{citizen.id}")
    page.get_by_role("link", name="Désactiver la double authentification").click()
    page.get_by_role("heading", name="Désactiver la double authentification").wait_for()
    audit(page, "turning two-factor login off: the form")

    page.get_by_role("button", name="Désactiver la double authentification").click()
    page.get_by_role("alert").first.wait_for()
    audit(page, "turning two-factor login off: refused, nothing checked")

    page.get_by_label("Pièce d'identité présentée").select_option("passeport")
    page.get_by_label("La personne est présente : j'ai vérifié sa pièce d'identité à l'instant").check()
    page.get_by_label("La personne me demande elle-même de désactiver la double authentification de son compte").check()
    page.get_by_role("button", name="Désactiver la double authentification").click()
    page.get_by_text("La double authentification est désactivée").wait_for()
    audit(page, "the citizen's file after two-factor login was turned off")
    audit.assert_clean()
