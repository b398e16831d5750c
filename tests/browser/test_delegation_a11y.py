"""Logging into a city app for a citizen at the counter, in a real browser, as the agent does it (staff
login with the TOTP code, the citizen's file, the assisted session, the app's redirection): axe-core's
WCAG 2.0/2.1 A and AA rules at 1280 px, and nothing scrolling sideways at 320 px."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from urllib.parse import urlencode

from sqlmodel import Session, select

from tests.browser.conftest import staff_log_in
from tests.browser.flows import play_the_app
from tests.factories import COUNTER, make_oidc_app, make_staff
from tests.support import RP_CALLBACK, App
from vault.counter.models import AssistedSession, Mandate
from vault.db import utcnow


def authorization_url(app: App) -> str:
    return "/authorize?" + urlencode({
        "response_type": "code", "client_id": app.client_id, "redirect_uri": RP_CALLBACK, "scope": "openid profile",
        "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8)})


def test_an_assisted_login_into_an_app(site, open_context, audit) -> None:
    agent = make_staff(site.app, role="agent", name="Dominique Accueil")
    citizen = site.citizen(given_name="Hélène Marie-Thérèse", family_name="Garnier-Delacroix-Montmorency")
    with Session(site.engine) as db:
        db.add(Mandate(citizen_id=citizen.id, service=COUNTER, procedures=["autre"],
                       duration="1m", granted_with="password", created_by=agent.id,
                       ends_at=utcnow() + timedelta(days=30)))
        db.commit()
    accepting = make_oidc_app(site.engine, name="Inscriptions à la cantine scolaire et au périscolaire",
                              accept_delegation=True)
    refusing = make_oidc_app(site.engine, name="Stationnement résidentiel")

    context = open_context()
    play_the_app(context)
    page = context.new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    staff_log_in(page, agent)

    page.goto(f"/agent/citizens/{citizen.id}")
    audit(page, "the citizen's file, with the button")
    page.get_by_role("button", name="Se connecter à un service de la ville pour cette personne").click()
    page.get_by_role("link", name=re.compile("Inscriptions à la cantine")).wait_for()
    assert page.get_by_text("Stationnement résidentiel").count() == 0
    audit(page, "the assisted session: the apps to open")

    page.goto(authorization_url(accepting))
    page.get_by_text(re.compile("Vous agissez pour Hélène Marie-Thérèse Garnier-Delacroix-Montmorency")).wait_for()
    audit(page, "the consent page, with the banner")
    page.get_by_role("button", name="Autoriser").click()
    page.wait_for_url(re.compile(re.escape(RP_CALLBACK) + r"\?code="))

    page.goto(authorization_url(refusing))
    page.get_by_text("Cette application n'accepte pas les connexions faites au guichet").wait_for()
    audit(page, "an app that does not accept it")

    with Session(site.engine) as db:
        for row in db.exec(select(AssistedSession)).all():
            row.expires_at = utcnow() - timedelta(seconds=1)
        db.commit()
    page.goto(authorization_url(accepting))
    page.get_by_role("heading", name="Session assistée terminée").wait_for()
    audit(page, "the session is over")
    page.goto(f"/agent/citizens/{citizen.id}/assist")
    page.get_by_role("button", name="Se connecter à un service de la ville pour cette personne").wait_for()
    audit(page, "no assisted session any more: the button again")
    audit.assert_clean()
