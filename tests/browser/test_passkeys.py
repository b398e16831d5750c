"""Passkeys in a real browser: Debian's chromium with a virtual authenticator of the Chrome DevTools
Protocol (CTAP2, internal transport, resident keys, user verification done). A citizen adds a
passkey from "Mon compte" with the password, logs out, logs in for an app with the passkey alone,
and the app's ID token says how (amr); then the passkey is removed. Every page state is checked by
axe-core and at a phone's width. Without JavaScript the login page says passkeys need it, and the
password login works.

WebAuthn refuses an IP address as RP ID, so this module's service runs as http://localhost:<port>
(a secure context, like https)."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.browser.conftest import Site, log_in, running_site
from tests.browser.flows import code_from, exchange, play_the_app
from tests.factories import make_oidc_app
from tests.services import ClamdService, PostgresService, S3Service
from tests.support import RP_CALLBACK


@pytest.fixture(scope="module")
def site(services_dir: Path, postgres: PostgresService, s3: S3Service, clamd: ClamdService) -> Iterator[Site]:
    """The service as tests/browser/conftest.py runs it, but at http://localhost:<port> (Chromium
    refuses an IP address as a WebAuthn RP ID)."""
    with running_site(services_dir, postgres, s3, clamd, "vault_browser_passkeys", host="localhost") as site:
        yield site


def virtual_authenticator(context: Any, page: Any) -> tuple[Any, str]:
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    return cdp, added["authenticatorId"]


def claims_of(id_token: str) -> dict[str, Any]:
    payload = id_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_add_a_passkey_log_in_with_it_for_an_app_and_remove_it(site, open_context, audit) -> None:
    citizen = site.citizen()
    app = make_oidc_app(site.engine, scope="openid profile", name="Cantine scolaire")
    context = open_context()
    play_the_app(context)
    page = context.new_page()
    cdp, authenticator = virtual_authenticator(context, page)

    # Mon compte → add a passkey, with the password.
    log_in(page, citizen)
    page.goto("/account")
    page.get_by_role("heading", name="Mes clés d'accès").wait_for()
    assert page.get_by_text("Vous n'avez pas encore de clé d'accès.").count() == 1
    page.get_by_role("link", name="Ajouter une clé d'accès").click()
    page.get_by_role("heading", name="Ajouter une clé d'accès").wait_for()
    audit(page, "add a passkey, empty form")
    page.get_by_label("Nom de la clé d'accès").fill("Ordinateur du salon")
    page.get_by_label("Mot de passe").fill("pas le bon mot de passe")
    page.get_by_role("button", name="Créer la clé d'accès").click()
    page.get_by_role("link", name="Mot de passe incorrect.").wait_for()
    audit(page, "add a passkey, wrong password")
    page.get_by_label("Mot de passe").fill(citizen.password)
    page.get_by_role("button", name="Créer la clé d'accès").click()
    page.wait_for_url(re.compile(r"/account\?notice=passkey_added$"))
    page.get_by_role("cell", name="Ordinateur du salon", exact=True).wait_for()
    assert page.get_by_role("cell", name="Jamais").count() == 1
    audit(page, "Mon compte with a passkey")
    stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert len(stored) == 1 and stored[0]["isResidentCredential"] is True

    # Log out, then log in for the app with the passkey alone (no email, no password).
    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_load_state()
    page.goto("/authorize?" + urlencode({
        "response_type": "code", "client_id": app.client_id, "redirect_uri": RP_CALLBACK, "scope": "openid profile",
        "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8)}))
    page.get_by_role("heading", name="Se connecter").wait_for()
    audit(page, "login page with the passkey button")
    page.get_by_role("button", name="Se connecter avec une clé d'accès").click()
    page.get_by_role("button", name="Autoriser").click()
    page.wait_for_url(re.compile(r"^https://rp\.example\.org/callback"))
    tokens = exchange(site, app, code_from(page.url))
    amr = claims_of(tokens["id_token"])["amr"]
    assert ("hwk" in amr or "swk" in amr) and "user" in amr and "mfa" in amr and "pwd" not in amr, amr
    used = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert used[0]["signCount"] >= 1

    # Remove it (the password again).
    page.goto("/account")
    assert page.get_by_role("cell", name="Jamais").count() == 0  # last use shown
    page.get_by_role("link", name="Supprimer Ordinateur du salon").click()
    page.get_by_role("heading", name="Supprimer une clé d'accès").wait_for()
    audit(page, "remove a passkey")
    page.get_by_label("Mot de passe").fill(citizen.password)
    page.get_by_role("button", name="Supprimer la clé d'accès").click()
    page.wait_for_url(re.compile(r"/account\?notice=passkey_removed$"))
    assert page.get_by_text("Vous n'avez pas encore de clé d'accès.").count() == 1
    audit.assert_clean()


def test_a_cancelled_passkey_login_says_so(site, open_context) -> None:
    """No passkey on this device: the browser's prompt fails, the page says so and logs nobody in."""
    context = open_context()
    page = context.new_page()
    cdp, authenticator = virtual_authenticator(context, page)
    cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator, "isUserVerified": True})
    page.goto("/login")
    page.get_by_role("button", name="Se connecter avec une clé d'accès").click()
    page.get_by_text("annulée ou n'a pas abouti").wait_for(timeout=60_000)
    assert "/login" in page.url


def test_without_javascript_the_login_page_says_passkeys_need_it(site, open_context) -> None:
    citizen = site.citizen()
    page = open_context(javascript=False).new_page()
    page.goto("/login")
    assert page.locator("p", has_text="a besoin de JavaScript").is_visible()
    assert page.get_by_role("button", name="Se connecter avec une clé d'accès").count() == 0  # hidden
    log_in(page, citizen, start="")
    page.goto("/account/passkeys/new")
    assert page.locator("p", has_text="ont besoin de JavaScript").is_visible()
