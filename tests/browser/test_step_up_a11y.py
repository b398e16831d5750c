"""The confirmation page (step-up) and the password reset of an account with TOTP, in a real browser:
axe-core (WCAG 2.0 and 2.1, A and AA) and no sideways scrolling at 1280 and 320 px, reached as a
person reaches them."""

from __future__ import annotations

import re
import time
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, col

from tests.support import Outbox
from vault.auth.models import LoginSession
from vault.db import utcnow


def _login_with_totp(page, citizen) -> None:
    page.goto("/login")
    page.get_by_label("Adresse e-mail").fill(citizen.email)
    page.get_by_label("Mot de passe").fill(citizen.password)
    page.get_by_role("button", name="Se connecter", exact=True).click()
    page.wait_for_url(re.compile(r"/login/otp"))
    page.get_by_label("Code à 6 chiffres").fill(citizen.totp.now())
    page.get_by_role("button", name="Valider").click()
    page.wait_for_url(re.compile(r"/account$"))


def test_the_confirmation_page_and_a_reset_with_totp(site, open_context, audit) -> None:
    citizen = site.citizen(totp=True)
    page = open_context().new_page()
    _login_with_totp(page, citizen)
    then = utcnow() - timedelta(minutes=6)  # the login was 6 minutes ago
    with Session(site.engine) as db:
        db.exec(update(LoginSession).where(col(LoginSession.citizen_id) == citizen.id).values(stepped_up_at=then))
        db.commit()

    page.get_by_role("link", name=re.compile("double authentification", re.IGNORECASE)).first.click()
    page.get_by_role("heading", name="Confirmez que c'est bien vous").wait_for()
    audit(page, "confirmation page")

    page.get_by_label(re.compile("^Mot de passe")).fill("pas le bon mot de passe")
    page.get_by_role("button", name="Confirmer", exact=True).click()
    page.locator(".error-summary").wait_for()
    page.wait_for_load_state()
    assert page.evaluate("document.activeElement.classList.contains('error-summary')")
    audit(page, "confirmation page, wrong password")

    page.get_by_label(re.compile("^Mot de passe")).fill(citizen.password)
    page.get_by_role("button", name="Confirmer", exact=True).click()
    page.wait_for_url(re.compile(r"/account/totp$"))
    page.get_by_role("heading", name="Double authentification").wait_for()

    page.goto("/account?lang=en")
    with Session(site.engine) as db:
        db.exec(update(LoginSession).where(col(LoginSession.citizen_id) == citizen.id).values(stepped_up_at=then))
        db.commit()
    page.goto("/account/totp")
    page.get_by_role("heading", name="Confirm it is you").wait_for()
    audit(page, "confirmation page in English")
    page.goto("/account?lang=fr")

    # The reset of an account with TOTP asks for a code, and says where to go without one.
    outbox = Outbox(site.app.state.settings.outbox_dir, site.app.state.engine)
    page.goto("/password/forgot")
    page.get_by_label("Adresse e-mail").fill(citizen.email)
    page.get_by_role("button", name="Envoyer le lien").click()
    page.wait_for_load_state()
    page.goto(outbox.last(citizen.email).path())
    page.get_by_label("Code de votre application ou code de secours").wait_for()
    audit(page, "reset with TOTP")
    page.get_by_label("Nouveau mot de passe").fill("une toute nouvelle phrase de passe")
    page.get_by_role("button", name="Enregistrer le mot de passe").click()
    page.locator(".error-summary").wait_for()
    audit(page, "reset with TOTP, code missing")
    page.get_by_label("Code de votre application ou code de secours").fill(citizen.totp.at(time.time() + 30))
    page.get_by_label("Nouveau mot de passe").fill("une toute nouvelle phrase de passe")
    page.get_by_role("button", name="Enregistrer le mot de passe").click()
    page.wait_for_url(re.compile(r"/login\?notice=password_reset"))
    audit(page, "logged out everywhere after the reset")
    audit.assert_clean()
