"""The citizen's own pages in a real browser, for a person who struggles online: axe-core's WCAG
2.0/2.1 A and AA rules and nothing scrolling sideways at 1280 px and at 320 px on every page state,
a focus ring that stands out (3:1 at least against what is around it), and after a refused form the
focus on the summary of the errors, right after the page's title, its links in the fields' order."""

from __future__ import annotations

import re

from sqlmodel import Session

from tests.browser.conftest import log_in
from tests.factories import make_document
from vault.oidc.demo import install_demo_app
from vault.storage.models import AccessLogEntry

# WCAG 2.x relative luminance and contrast ratio, computed in the page from computed CSS colours.
CONTRAST_JS = """
const rgb = text => (text.match(/[\\d.]+/g) || []).map(Number);
const luminance = ([r, g, b]) => {
  const channel = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
  return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
};
const contrast = (a, b) => {
  const [l1, l2] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (l1 + 0.05) / (l2 + 0.05);
};
const background = element => {
  // The colour the outline is drawn on: what lies just beside the element, past its outline (the
  // skip link sits over the header), with the nearest opaque background from there up.
  const box = element.getBoundingClientRect(), style = getComputedStyle(element);
  const gap = parseFloat(style.outlineOffset) + parseFloat(style.outlineWidth) + 2;
  const x = box.left - gap >= 0 ? box.left - gap : box.right + gap, y = box.top + box.height / 2;
  const beside = document.elementsFromPoint(x, y).find(e => e !== element && !element.contains(e));
  for (let e = beside || element.parentElement; e; e = e.parentElement) {
    const [r, g, b, a] = rgb(getComputedStyle(e).backgroundColor);
    if (a === undefined || a > 0.5) { return [r, g, b]; }
  }
  return [255, 255, 255];
};
"""


def focus_ring(page) -> dict:
    """What the focused element shows: its name, outline style, width (px) and colour's contrast
    against the background around it."""
    return page.evaluate("() => {" + CONTRAST_JS + """
        const e = document.activeElement, style = getComputedStyle(e);
        const label = (e.textContent || e.name || '').trim().slice(0, 30);
        return {name: e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + ' ' + label,
                style: style.outlineStyle, width: parseFloat(style.outlineWidth),
                contrast: contrast(rgb(style.outlineColor), background(e))};
    }""")


def tab_through(page, limit: int = 60) -> list[dict]:
    """The focus ring of every element the keyboard reaches on the page, from the top."""
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
    rings, seen = [], set()
    for _ in range(limit):
        page.keyboard.press("Tab")
        ring = focus_ring(page)
        if ring["name"] in seen or ring["name"].startswith("body"):
            break
        seen.add(ring["name"])
        rings.append(ring)
    return rings


def test_the_focus_ring_stands_out_on_every_element_the_keyboard_reaches(site, open_context) -> None:
    citizen = site.citizen()
    page = open_context().new_page()
    for path in ("/login", "/register"):
        page.goto(path)
        rings = tab_through(page)
        assert len(rings) > 5, rings
        weak = [ring for ring in rings if ring["style"] == "none" or ring["width"] < 2 or ring["contrast"] < 3]
        assert not weak, f"{path}: focus rings under 3:1 or missing: {weak}"
    log_in(page, citizen)
    page.goto("/account")
    rings = tab_through(page)
    weak = [ring for ring in rings if ring["style"] == "none" or ring["width"] < 2 or ring["contrast"] < 3]
    assert not weak, f"/account: focus rings under 3:1 or missing: {weak}"


def test_a_refused_registration_puts_the_focus_on_the_summary_after_the_title(site, open_context, audit) -> None:
    page = open_context().new_page()
    page.goto("/register")
    page.get_by_label("Date de naissance").fill("31/02/1990")
    page.get_by_label("Adresse e-mail").fill("pas-une-adresse")
    page.get_by_label("Mot de passe").fill("court")
    page.get_by_role("button", name="Créer mon compte").click()
    summary = page.locator(".error-summary")
    summary.wait_for()
    page.wait_for_load_state()  # the deferred errors.js has run
    assert page.evaluate("document.activeElement.classList.contains('error-summary')"), \
        page.evaluate("document.activeElement.outerHTML.slice(0, 200)")
    # Right after the h1: nothing but the h1 before it in the page's main content.
    assert page.evaluate("""() => {
        const h1 = document.querySelector('main h1'), summary = document.querySelector('.error-summary');
        return Boolean(h1.compareDocumentPosition(summary) & Node.DOCUMENT_POSITION_FOLLOWING)
            && h1.nextElementSibling === summary;
    }""")
    targets = [href.removeprefix("#") for href in summary.get_by_role("link").evaluate_all(
        "links => links.map(link => link.getAttribute('href'))")]
    assert len(targets) >= 5, targets  # the empty names, gender, birth date, email, password…
    positions = page.evaluate("""ids => ids.map(id => {
        const all = [...document.querySelectorAll('main *')];
        return all.indexOf(document.getElementById(id));
    })""", targets)
    assert -1 not in positions, dict(zip(targets, positions, strict=True))
    assert positions == sorted(positions), f"the summary's order {targets} is not the form's"
    audit(page, "registration refused")
    audit.assert_clean()


def test_the_citizen_pages_at_320_and_1280_px(site, open_context, audit) -> None:
    citizen = site.citizen(email="jeanne-marie.martin-de-la-fontaine-des-pres@une-commune-au-nom-long.example.org",
                           totp=False)
    with site.api(citizen) as api:
        make_document(api, type="proof_of_address", title="Facture d'électricité de janvier (copie intégrale)")
    with Session(site.engine) as db:
        install_demo_app(db, issuer=site.url)
        db.add(AccessLogEntry(citizen_id=citizen.id, actor_kind="app", actor_id="cantine",
                              actor_name="Inscriptions à la cantine et au centre de loisirs", action="read",
                              document_title="Facture d'électricité de janvier (copie intégrale)"))
        db.commit()
    context = open_context()
    page = context.new_page()
    page.goto("/")
    audit(page, "home")
    page.goto("/login")
    audit(page, "login")
    page.get_by_label("Adresse e-mail").fill(citizen.email)
    page.get_by_label("Mot de passe").fill("pas le bon mot de passe")
    page.get_by_role("button", name="Se connecter", exact=True).click()
    page.locator(".error-summary").wait_for()
    audit(page, "login refused")
    page.goto("/password/forgot")
    audit(page, "forgotten password")
    page.goto("/register")
    page.get_by_label("Commune de naissance").fill("Saint-Martin")
    page.get_by_role("button", name="Créer mon compte").click()
    page.locator(".error-summary").wait_for()
    audit(page, "registration refused, communes to choose from")

    log_in(page, citizen)
    page.goto("/account")
    audit(page, "Mon compte")
    page.goto("/account/password")
    page.get_by_role("button").last.click()
    page.locator(".error-summary").wait_for()
    audit(page, "password change refused")
    page.goto("/account/email")
    page.get_by_role("button").last.click()
    page.locator(".error-summary").wait_for()
    audit(page, "email change refused")
    page.goto("/account/totp")
    page.get_by_label("Code à 6 chiffres").fill("000000")
    page.get_by_role("button", name="Activer").click()
    page.locator(".error-summary").wait_for()
    audit(page, "TOTP, a wrong code")
    page.goto("/account/data")
    audit(page, "Mes données")
    page.goto("/account/access-log")
    audit(page, "who read my documents")
    page.goto("/account/apps")
    audit(page, "Mes applications, none")
    page.goto("/documents")
    page.get_by_role("button", name="Ajouter le document").click()
    audit(page, "Mes justificatifs, an upload refused")

    page.goto("/demo")
    audit(page, "the demo app")
    page.get_by_role("link", name="Se connecter avec mon espace citoyen").click()
    page.get_by_role("button", name="Autoriser").click()
    page.wait_for_url(re.compile(r"/demo/callback"))
    page.get_by_role("heading", name=re.compile("ID token")).wait_for()
    audit(page, "the demo app's callback, the claims")
    audit.assert_clean()


def test_an_upload_with_the_progress_script_says_added_once(site, open_context, tmp_path) -> None:
    """With upload.js (the progress bar), the document added is said once: not again on a reload,
    nor after a later upload that fails; the type is the citizen's choice, asked for when missing."""
    citizen = site.citizen()
    invoice = tmp_path / "facture.pdf"
    invoice.write_bytes(b"%PDF-1.4\nfacture\n%%EOF")
    page = open_context().new_page()
    log_in(page, citizen)
    page.goto("/documents")
    assert page.get_by_label("Type de document").input_value() == ""
    page.get_by_label("Fichier").set_input_files(str(invoice))
    page.get_by_label("Type de document").select_option("proof_of_address")
    page.get_by_role("button", name="Ajouter le document").click()
    page.get_by_text("Le document a été ajouté à votre coffre-fort.").wait_for()
    page.reload()
    page.get_by_role("heading", name="Mes justificatifs").wait_for()
    assert page.get_by_text("Le document a été ajouté").count() == 0

    page.get_by_label("Fichier").set_input_files(str(invoice))  # no type chosen this time
    page.get_by_role("button", name="Ajouter le document").click()
    page.locator(".error-summary").wait_for()
    assert page.get_by_role("link", name="Choisissez le type de document.").count() == 1
    page.wait_for_function("document.activeElement.classList.contains('error-summary')")  # errors.js ran
    page.reload()
    page.get_by_role("heading", name="Mes justificatifs").wait_for()
    assert page.get_by_text("Le document a été ajouté").count() == 0
