"""The pages where a citizen chooses documents, checked in a real browser by axe-core (WCAG 2.0 and
2.1, levels A and AA) and for sideways scrolling, at 1280 px and at 320 px wide. Each page state is
reached as a person reaches it — logging in through the form, clicking, typing — and every
problem found in a test is listed at its end, with the rule, the element and axe's help."""

from __future__ import annotations

import re

import httpx

from tests.browser.conftest import log_in
from tests.browser.flows import authorization_url, code_from, documents_app, exchange, play_the_app
from tests.factories import make_document, pdf


def test_consent_page_with_documents_to_choose_and_mes_applications(site, open_context, audit) -> None:
    """The consent page of a request for proofs of address and identity documents (the citizen has
    proofs, no identity document: the "add a document" link), then "Mes applications" with a
    document the app may read and one it deposited, and after a withdrawal."""
    citizen = site.citizen()
    with site.api(citizen) as api:
        edf = make_document(api, type="proof_of_address", title="Facture EDF")
        make_document(api, type="proof_of_address", title="Quittance de loyer")
    app = documents_app(site)
    context = open_context()
    play_the_app(context)
    page = context.new_page()

    page.goto(authorization_url(app, scope="openid profile documents:deposit"))
    log_in(page, citizen, start="")
    page.get_by_role("heading", name="Autoriser l'accès à vos informations").wait_for()
    assert page.get_by_role("link", name="Ajouter un justificatif").count() == 1
    audit(page, "consent, one type without documents")

    page.get_by_role("link", name="Ajouter un justificatif").click()
    audit(page, "Mes justificatifs, on the way back to the consent")
    page.go_back()

    page.get_by_role("checkbox", name=re.compile("Facture EDF")).check()
    page.get_by_role("button", name="Autoriser").click()
    page.wait_for_url(re.compile(r"^https://rp\.example\.org/callback"))
    tokens = exchange(site, app, code_from(page.url))
    assert tokens["authorization_details"][0]["documents"] == [edf["id"]]
    deposited = httpx.post(f"{site.url}/api/v1/documents", content=b"%PDF-1.7\nmenu\n%%EOF", timeout=20, headers={
        "Authorization": f"Bearer {tokens['access_token']}", "Content-Type": "application/pdf",
        "X-Document-Type": "other", "X-Document-Title": "Menu de la cantine"})
    assert deposited.status_code == 201, deposited.text

    page.goto("/account")
    page.get_by_role("link", name="Voir et gérer mes applications").click()
    page.get_by_role("heading", name="Cantine scolaire").wait_for()
    assert page.get_by_role("button", name="Ne plus partager Facture EDF").count() == 1
    assert page.get_by_text("Menu de la cantine").count() == 1
    audit(page, "Mes applications, a readable and a deposited document")
    page.get_by_role("button", name="Ne plus partager Facture EDF").click()
    page.get_by_role("status").wait_for()
    audit(page, "Mes applications, after a withdrawal")
    audit.assert_clean()


def test_share_link_pages_for_the_citizen_and_the_person_holding_the_link(site, open_context, audit) -> None:
    citizen = site.citizen()
    with site.api(citizen) as api:
        make_document(api, type="proof_of_address", title="Quittance de loyer")
        make_document(api, type="tax_notice", title="Avis d'imposition 2026")
    page = open_context().new_page()
    log_in(page, citizen)

    page.goto("/documents")
    page.get_by_role("link", name="Partager des documents avec un lien").click()
    page.get_by_role("heading", name="Partager des documents").wait_for()
    audit(page, "new share link, empty form")

    # Nothing ticked and a note of 101 characters. The field's maxlength keeps a browser from typing
    # more: take it off, as an old browser or a hand-made request would ignore it, to see the server's answer.
    note = page.get_by_label(re.compile("Pour qui"))
    note.evaluate("field => field.removeAttribute('maxlength')")
    note.fill("x" * 101)
    page.get_by_role("button", name="Créer le lien").click()
    summary = page.locator(".error-summary")
    summary.wait_for()
    links = summary.get_by_role("link")
    assert links.count() == 2, summary.inner_text()
    for index in range(links.count()):
        link = links.nth(index)
        target = link.get_attribute("href").removeprefix("#")
        field = page.locator(f"[id='{target}']")
        assert field.count() == 1, f"the summary's link #{target} leads nowhere"
        described = field.evaluate("""field => {
            const owner = field.closest('[aria-describedby]');
            return (owner ? owner.getAttribute('aria-describedby') : '').split(/\\s+/)
                .map(id => document.getElementById(id)).filter(Boolean).map(node => node.textContent).join(' ');
        }""")
        assert link.inner_text().strip() in described, (target, link.inner_text(), described)
        link.click()
        assert page.evaluate("document.activeElement.id") == target
    audit(page, "new share link, after errors")

    page.get_by_role("checkbox", name=re.compile("Quittance de loyer")).check()
    note.fill("Mon propriétaire")
    page.get_by_role("button", name="Créer le lien").click()
    page.get_by_role("heading", name="Votre lien de partage est prêt").wait_for()
    url, code = page.locator(".share-url").inner_text(), page.locator(".share-code").inner_text()
    audit(page, "share link ready")

    page.goto("/shares/new")
    page.get_by_role("checkbox", name=re.compile("Avis d'imposition")).check()
    page.get_by_label(re.compile("Pour qui")).fill("Agence immobilière")
    page.get_by_role("button", name="Créer le lien").click()
    revoked_url = page.locator(".share-url").inner_text()
    page.get_by_role("link", name="Mes liens de partage").click()
    page.get_by_role("listitem").filter(has_text="Agence immobilière").get_by_role(
        "button", name="Désactiver ce lien").click()
    page.get_by_role("status").wait_for()
    assert page.get_by_text("désactivé", exact=True).count() == 1
    audit(page, "Mes liens de partage, an active and a revoked link")

    holder = open_context().new_page()
    holder.goto(url)
    audit(holder, "shared link, the code form")
    holder.get_by_label("Code d'accès").fill("ABCD-EF23" if code != "ABCD-EF23" else "ABCD-EF24")
    holder.get_by_role("button", name="Voir les documents").click()
    holder.locator(".error-summary").wait_for()
    audit(holder, "shared link, a wrong code")
    holder.get_by_label("Code d'accès").fill(code)
    holder.get_by_role("button", name="Voir les documents").click()
    holder.get_by_role("link", name=re.compile("Télécharger")).wait_for()
    audit(holder, "shared link, the documents")
    gone = holder.goto(revoked_url)
    assert gone.status == 410
    audit(holder, "shared link, turned off (410)")
    audit.assert_clean()


def test_mes_justificatifs_and_a_document_page(site, open_context, audit) -> None:
    citizen = site.citizen()
    with site.api(citizen) as api:
        make_document(api, pdf(), type="proof_of_address", title="Facture EDF", valid_until="2020-01-31")
        make_document(api, type="identity", title="Carte d'identité")
    page = open_context().new_page()
    log_in(page, citizen)
    page.get_by_role("link", name="Mes justificatifs").first.click()
    page.get_by_role("heading", name="Mes justificatifs").wait_for()
    audit(page, "Mes justificatifs")
    page.get_by_role("link", name="Facture EDF", exact=True).click()
    page.get_by_role("heading", name="Facture EDF").wait_for()
    audit(page, "a document's page")
    page.get_by_role("link", name="Supprimer ce document").click()
    page.get_by_role("button", name="Oui, supprimer définitivement").wait_for()
    audit(page, "a document's page, confirming the deletion")
    audit.assert_clean()


def test_alert_switches_and_the_one_click_unsubscribe_page(site, open_context, audit) -> None:
    """"Mon compte"'s alert switches (a fieldset of checkboxes), saved and confirmed, then the page a
    mail's unsubscribe link opens, before and after its single button."""
    from sqlmodel import Session

    citizen = site.citizen()
    page = open_context().new_page()
    log_in(page, citizen)
    page.goto("/account")
    switches = page.get_by_role("group", name="M'envoyer un e-mail quand :")
    switches.wait_for()
    audit(page, "Mon compte, alert switches")
    page.get_by_role("checkbox", name=re.compile("dépose")).uncheck()
    page.get_by_role("button", name="Enregistrer mes alertes").click()
    page.get_by_role("status").wait_for()
    assert not page.get_by_role("checkbox", name=re.compile("dépose")).is_checked()
    audit(page, "Mon compte, alert switches saved")

    with Session(site.engine) as db:
        url = site.app.state.services.alerts.unsubscribe_url(db, citizen_id=citizen.id, kind="validity")
    holder = open_context().new_page()  # a mail client's browser: no session
    holder.goto(url.replace(site.app.state.settings.issuer, site.url))
    audit(holder, "unsubscribe link, its one button")
    holder.get_by_role("button").first.click()
    holder.get_by_role("heading", name="C'est fait").wait_for()
    audit(holder, "unsubscribe link, done")
    audit.assert_clean()
