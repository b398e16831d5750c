"""The document choices work in a browser with JavaScript turned off: what the person sees, clicks
and types, end to end — the consent that gives an app one chosen document, and a share link made
from a document's page, opened elsewhere with its code, down to the document's bytes."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.browser.conftest import log_in
from tests.browser.flows import authorization_url, code_from, documents_app, exchange, play_the_app
from tests.factories import make_document, pdf


def test_consent_ticking_one_document_gives_the_app_that_document_only(site, open_context) -> None:
    citizen = site.citizen()
    with site.api(citizen) as api:
        edf = make_document(api, type="proof_of_address", title="Facture EDF")
        bail = make_document(api, type="proof_of_address", title="Quittance de loyer")
    app = documents_app(site)
    context = open_context(javascript=False)
    play_the_app(context)
    page = context.new_page()

    page.goto(authorization_url(app))
    log_in(page, citizen, start="")
    page.get_by_text("Inscription à la cantine").wait_for()
    boxes = page.get_by_role("checkbox")
    assert boxes.count() == 2 and not any(boxes.nth(i).is_checked() for i in range(2))
    page.get_by_label(re.compile("Quittance de loyer")).check()
    page.get_by_role("button", name="Autoriser").click()
    page.wait_for_url(re.compile(r"^https://rp\.example\.org/callback"))

    tokens = exchange(site, app, code_from(page.url))
    assert [detail["documents"] for detail in tokens["authorization_details"]] == [[bail["id"]]]
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    listed = httpx.get(f"{site.url}/api/v1/documents", headers=bearer, timeout=20).json()
    assert [d["id"] for d in listed["items"]] == [bail["id"]]
    assert httpx.get(f"{site.url}/api/v1/documents/{edf['id']}", headers=bearer, timeout=20).status_code == 404


def test_a_share_link_made_and_opened_without_javascript_downloads_the_document(site, open_context,
                                                                               tmp_path: Path) -> None:
    """The citizen adds the document with the plain form, shares it from its page, reads the link and
    the code; someone else opens the link in their own browser, types the code, downloads it."""
    citizen = site.citizen()
    with site.api(citizen) as api:
        make_document(api, type="tax_notice", title="Avis d'imposition 2026")  # not shared
    content = pdf(20_000)
    upload = tmp_path / "quittance.pdf"
    upload.write_bytes(content)
    page = open_context(javascript=False).new_page()
    log_in(page, citizen)

    page.get_by_role("link", name="Mes justificatifs").first.click()
    page.get_by_label("Fichier").set_input_files(upload)
    page.get_by_label("Type de document").select_option(label="Justificatif de domicile")
    page.get_by_label(re.compile("^Titre")).fill("Quittance de mars")
    page.get_by_role("button", name="Ajouter le document").click()
    page.get_by_role("link", name="Quittance de mars", exact=True).click()
    page.get_by_role("link", name="Partager avec un lien").click()
    assert page.get_by_label(re.compile("Quittance de mars")).is_checked()
    assert not page.get_by_label(re.compile("Avis d'imposition")).is_checked()
    page.get_by_label(re.compile("Pour qui")).fill("Mon propriétaire")
    page.get_by_role("button", name="Créer le lien").click()
    page.get_by_role("heading", name="Votre lien de partage est prêt").wait_for()
    url, code = page.locator(".share-url").inner_text(), page.locator(".share-code").inner_text()
    assert url.startswith(f"{site.url}/s/") and re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}", code), (url, code)

    holder = open_context(javascript=False).new_page()
    holder.goto(url)
    holder.get_by_label("Code d'accès").fill(code.lower().replace("-", " "))  # typed as heard
    holder.get_by_role("button", name="Voir les documents").click()
    downloads = holder.get_by_role("link", name=re.compile("^Télécharger"))
    assert downloads.count() == 1 and "Quittance de mars" in holder.locator("main").inner_text()
    with holder.expect_download() as waiting:
        downloads.click()
    download = waiting.value
    assert download.suggested_filename == "Quittance de mars.pdf"  # its title
    assert Path(download.path()).read_bytes() == content
