"""The DPO's pages in a real browser, reached as the DPO reaches them (staff login with the TOTP
code, search, clicks, typing): axe-core's WCAG 2.0/2.1 A and AA rules and nothing scrolling
sideways, at 1280 px and at 320 px (the narrowest phone the city supports)."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import text
from sqlmodel import Session

from tests.browser.conftest import staff_log_in
from tests.factories import make_document, make_staff
from vault.gdpr.service import Staff


def test_register_search_rectification_erasure_and_certificate(site, open_context, audit) -> None:
    staff = make_staff(site.app, name="Camille Rousseau", role="dpo")
    citizen = site.citizen(given_name="Hélène", family_name="Garnier-Delacroix-Montmorency",
                           email="helene.garnier-delacroix-montmorency@exemple-de-commune.example.org")
    with site.api(citizen) as api:
        held = make_document(api, title="Bulletin de paie de mars")
        make_document(api, title="Avis d'imposition")
    services = site.app.state.services
    with Session(site.engine) as db:
        services.gdpr.hold(db, document_id=uuid.UUID(held["id"]), reason="contentieux prud'homal",
                           by=Staff(actor="staff:test", label="test"))
        db.commit()
    context = open_context()
    page = context.new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    staff_log_in(page, staff)
    assert page.get_by_text("Camille Rousseau").count() == 1
    audit(page, "the register")

    page.get_by_label("Nom ou prénom").fill("garnier")
    page.get_by_role("button", name="Chercher").click()
    page.get_by_role("radio", name=re.compile("Garnier-Delacroix-Montmorency")).wait_for()
    audit(page, "search results")

    page.get_by_label("Reçue le (JJ/MM/AAAA)").fill("31/02/2026")
    page.get_by_role("button", name="Enregistrer").click()
    page.get_by_role("alert").wait_for()
    assert page.get_by_label("Reçue le (JJ/MM/AAAA)").input_value() == "31/02/2026"
    audit(page, "registration refused, the form as typed")

    page.get_by_label("Type").select_option("rectification")
    page.get_by_label("Reçue le (JJ/MM/AAAA)").fill("")
    page.get_by_role("radio", name=re.compile("Garnier")).check()
    page.get_by_role("button", name="Enregistrer").click()
    page.get_by_role("heading", name="Rectifier l'identité").wait_for()
    audit(page, "a rectification request, current values")

    page.get_by_label("Date de naissance").fill("31/02/1990")
    page.get_by_role("button", name="Vérifier les changements").click()
    page.get_by_role("alert").wait_for()
    audit(page, "rectification refused inline")

    page.get_by_label("Date de naissance").fill("")
    page.get_by_label("Nom de naissance").fill("Garnier")
    page.get_by_label("Motif", exact=True).fill("jugement de changement de nom")
    page.get_by_role("button", name="Vérifier les changements").click()
    page.get_by_role("heading", name="Confirmer la rectification").wait_for()
    audit(page, "rectification to confirm")
    page.get_by_role("button", name="Confirmer la rectification").click()
    page.get_by_role("status").wait_for()

    page.goto("/dpo/")
    page.get_by_label("Adresse e-mail (ou une partie)").fill("helene.garnier")
    page.get_by_role("button", name="Chercher").click()
    page.get_by_role("radio", name=re.compile("Garnier")).check()
    page.get_by_label("Type").select_option("erasure")
    page.get_by_role("button", name="Enregistrer").click()
    page.get_by_role("link", name="Préparer l'effacement définitif").click()
    page.get_by_role("heading", name="Confirmer l'effacement définitif").wait_for()
    assert page.get_by_text("Bulletin de paie de mars").count() == 1
    audit(page, "erasure to confirm")

    page.get_by_role("button", name="Effacer définitivement").click()
    page.get_by_role("alert").wait_for()
    audit(page, "erasure refused: the box not ticked")

    page.get_by_role("checkbox").check()
    page.get_by_role("button", name="Effacer définitivement").click()
    page.get_by_role("heading", name="Certificat d'effacement").wait_for()
    audit(page, "the request with its certificate")
    with page.expect_download() as download:
        page.get_by_role("link", name="Télécharger le certificat (.jwt)").click()
    assert download.value.suggested_filename.endswith(".jwt")

    page.get_by_role("link", name="Journal d'audit").click()
    page.get_by_text("Journal intact.").wait_for()
    audit(page, "the audit log's verdict, intact")
    with Session(site.engine) as db:  # the newest entry removed, after a checkpoint that names it
        services.audit.checkpoint(db)
        db.execute(text("DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)"))
        db.commit()
    page.reload()
    page.get_by_text("Journal ALTÉRÉ.").wait_for()
    audit(page, "the audit log's verdict, broken")
    audit.assert_clean()
