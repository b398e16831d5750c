"""The citizen's forms and notices as a person meets them: one message per problem, nothing chosen
for them (the document type), a notice said once (not again on a reload), devices and countries by
their names, in the page's language."""

from __future__ import annotations

import io
import re
from pathlib import Path

from tests.factories import logged_in, make_citizen
from tests.support import Browser
from vault.web.devices import device_label

STATIC = Path(__file__).parents[2] / "vault" / "web" / "static"


def visible_text(page: str) -> str:
    """The page's body without its tags (the title, where "Erreur :" is said, is left out)."""
    body = page.split("<body", 1)[1]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


def upload(browser: Browser, *, type: str = "proof_of_address", **fields: str):
    token = browser.form_token("/documents")
    return browser.post("/documents", data={"csrf_token": token, "type": type, **fields},
                        files={"file": ("facture.pdf", io.BytesIO(b"%PDF-1.4\nfacture\n%%EOF"), "application/pdf")})


def test_a_wrong_totp_code_is_said_beside_the_field_and_in_the_summary_only(app) -> None:
    citizen = make_citizen(app, totp=True)
    with Browser(app) as browser:
        assert browser.login(citizen.email, citizen.password).headers["location"] == "/login/otp"
        wrong = browser.submit("/login/otp", {"otp": "123456"})
        assert wrong.status_code == 401
        message = re.search(r'<p class="field-error" id="otp-error">.*?</span>\s*(.*?)</p>', wrong.text, re.S).group(1)
        assert visible_text(wrong.text).count(message.strip()) == 2, visible_text(wrong.text)
        assert wrong.text.count('class="error-summary"') == 1


def test_a_wrong_password_is_said_once(app) -> None:
    citizen = make_citizen(app)
    with Browser(app) as browser:
        refused = browser.login(citizen.email, "pas le bon mot de passe du tout")
        assert refused.status_code == 401
        assert refused.text.count('class="error-summary"') == 1


def test_the_document_type_is_chosen_by_the_citizen(app, citizen: Browser) -> None:
    page = citizen.get("/documents").text
    select = re.search(r'<select id="type".*?</select>', page, re.S).group(0)
    assert re.search(r'<option value="" selected>— Choisissez —</option>', select), select
    refused = upload(citizen, type="", title="Facture EDF")
    assert refused.status_code == 422
    assert re.search(r'<p class="field-error" id="type-error">.*Choisissez le type de document', refused.text)
    assert 'aria-invalid="true" aria-describedby="type-error"' in refused.text
    assert 'value="Facture EDF"' in refused.text  # what was typed stays (the file must be chosen again)
    bad_date = upload(citizen, valid_until="31/02/2026")
    assert bad_date.status_code == 422 and '<option value="proof_of_address" selected>' in bad_date.text
    assert citizen.get("/api/v1/documents").json()["total"] == 0
    assert upload(citizen).status_code == 303


def test_a_notice_is_said_once_not_again_on_a_reload(app, citizen: Browser) -> None:
    added = upload(citizen)
    assert added.status_code == 303 and added.headers["location"] == "/documents?notice=added"
    assert "Le document a été ajouté" in citizen.get(added.headers["location"]).text
    assert "Le document a été ajouté" not in citizen.get(added.headers["location"]).text  # a reload
    # The next upload fails: the page (kept at the old address by the upload script) says nothing of an addition.
    refused = upload(citizen, type="")
    assert refused.status_code == 422 and "Le document a été ajouté" not in refused.text
    assert "Le document a été ajouté" not in citizen.get("/documents?notice=added").text


def test_the_account_notices_are_said_once(app) -> None:
    citizen = make_citizen(app)
    with Browser(app) as browser:
        logged_in(browser, citizen)
        done = browser.submit("/account/password", {"password": citizen.password,
                                                    "new_password": "une autre phrase de passe assez longue"})
        assert done.status_code == 303
        assert "Votre mot de passe est changé" in browser.get(done.headers["location"]).text
        assert "Votre mot de passe est changé" not in browser.get(done.headers["location"]).text
        sent = browser.submit("/account/email", {"password": "une autre phrase de passe assez longue",
                                                 "new_email": "nouvelle@example.org"})
        assert sent.status_code == 303
        assert "Un lien de confirmation est parti" in browser.get(sent.headers["location"]).text
        assert "Un lien de confirmation est parti" not in browser.get(sent.headers["location"]).text


def test_the_upload_script_speaks_the_page_language(citizen: Browser) -> None:
    script = re.sub(r"//[^\n]*", "", (STATIC / "upload.js").read_text())  # its code, without comments
    strings = re.findall(r'"([^"\n]*)"', script) + re.findall(r"'([^'\n]*)'", script)
    sentences = [s for s in strings if s != "use strict" and re.search(r"[A-Za-zÀ-ÿ]{3,}[ :]", s)]
    assert not sentences, sentences  # every word it shows comes from the page
    english = citizen.get("/documents?lang=en").text
    assert 'data-sending="Sending:"' in english
    assert "data-failed=\"The upload failed. Check your connection and try again.\"" in english
    assert 'data-sending="Envoi :"' in citizen.get("/documents?lang=fr").text


def test_devices_are_named_as_people_name_them(app) -> None:
    assert device_label("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0") \
        == "Firefox sur Windows"
    assert device_label("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
                        "Gecko) Version/17.4 Mobile/15E148 Safari/604.1") == "Safari sur iPhone"
    assert device_label("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                        "Chrome/124.0.0.0 Mobile Safari/537.36") == "Chrome sur Android"
    assert device_label("") == device_label("un robot") == "Navigateur inconnu"

    citizen = make_citizen(app)
    with Browser(app) as browser:
        browser.headers["user-agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
        logged_in(browser, citizen)
        page = browser.get("/account").text
        assert "Firefox sur Windows" in page and "Gecko/20100101" not in page
        assert "Firefox on Windows" in browser.get("/account?lang=en").text
    with Browser(app) as other:
        other.headers["user-agent"] = "un robot"
        logged_in(other, citizen)
        assert "Navigateur inconnu" in other.get("/account?lang=fr").text


def test_countries_in_english_on_the_english_pages(app, browser: Browser) -> None:
    french = browser.get("/register").text
    assert '<option value="99109">Allemagne</option>' in french
    english = browser.get("/register?lang=en").text
    assert '<option value="99109">Germany</option>' in english
    assert '<option value="99134">Spain</option>' in english
    assert '<option value="99115">Tchécoslovaquie</option>' in english  # a former country: its INSEE name
    citizen = make_citizen(app, birthcountry="99109", birthplace="")
    logged_in(browser, citizen)
    assert "Germany" in browser.get("/account?lang=en").text
    assert "Allemagne" in browser.get("/account?lang=fr").text


def test_on_https_the_notice_cookie_is_host_prefixed_and_secure(settings, engine) -> None:
    """The one-shot notice's cookie has the flags of the service's other cookies (``__Host-``, Secure)."""
    from vault.app import create_app

    app = create_app(settings.model_copy(update={"issuer": "https://vault.example.fr"}), engine=engine)
    citizen = make_citizen(app)
    with Browser(app, base_url="https://testserver") as browser:
        logged_in(browser, citizen)
        done = browser.submit("/account/password", {"password": citizen.password,
                                                    "new_password": "une autre phrase de passe assez longue"})
        assert done.status_code == 303 and done.headers["location"] == "/account?notice=password_changed"
        cookie = next(c for c in done.headers.get_list("set-cookie") if "password_changed" in c)
        assert cookie.startswith("__Host-notice=password_changed;")
        assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie and "Domain" not in cookie
        assert "x-vault-notice" not in done.headers
        shown = browser.get(done.headers["location"])
        assert "Votre mot de passe est changé" in shown.text
        assert any(c.startswith('__Host-notice="";') for c in shown.headers.get_list("set-cookie"))  # cleared
        assert "Votre mot de passe est changé" not in browser.get(done.headers["location"]).text  # said once
