"""ProConnect for staff, against the stand-in playing ProConnect: an existing staff account only
(matched by email, then by the linked sub), TOTP still asked unless ProConnect says a second factor
was used, and nobody else gets in."""

from __future__ import annotations

import pyotp
import pytest
from sqlmodel import Session, select

from tests.factories import make_staff
from tests.federation.conftest import VAULT, local, pc_settings
from tests.support import Browser
from vault.app import create_app
from vault.gdpr.models import StaffAccount, StaffSession


@pytest.fixture
def pc_app(settings, engine, franceconnect):
    return create_app(pc_settings(settings, franceconnect), engine=engine)


def proconnect(browser: Browser, fc_user, login: str):
    start = browser.get("/dpo/login/proconnect")
    assert start.status_code == 303, start.text[:300]
    back = fc_user.authorize(start.headers["location"], login)
    assert back.startswith(f"{VAULT}/dpo/login/proconnect/callback"), back
    return browser.get(local(back))


def test_the_button_shows_only_when_proconnect_is_configured(pc_app, app) -> None:
    with Browser(app) as plain:
        assert "ProConnect" not in plain.get("/dpo/login").text
        assert plain.get("/dpo/login/proconnect").status_code == 404
    with Browser(pc_app) as browser:
        assert 'href="/dpo/login/proconnect"' in browser.get("/dpo/login").text


def test_a_second_factor_at_proconnect_logs_straight_in_and_links_the_sub(pc_app, fc_user, engine) -> None:
    make_staff(pc_app, email="camille.dpo@ville.example.fr")
    with Browser(pc_app) as browser:
        answer = proconnect(browser, fc_user, "agent_mfa")
        assert answer.status_code == 303 and answer.headers["location"] == "/dpo/"
        assert browser.get("/dpo/").status_code == 200
    with Session(engine) as db:
        staff = db.exec(select(StaffAccount)).one()
        assert staff.proconnect_sub and staff.proconnect_sub.endswith("v1")
        assert db.exec(select(StaffSession)).one().mfa_done


def test_without_a_second_factor_the_totp_code_is_still_asked(pc_app, fc_user, engine) -> None:
    staff = make_staff(pc_app, email="dominique.dpo@ville.example.fr")
    with Browser(pc_app) as browser:
        answer = proconnect(browser, fc_user, "agent_pwd")
        assert answer.status_code == 303 and answer.headers["location"] == "/dpo/login/proconnect/otp"
        assert browser.get("/dpo/").status_code == 404  # not in yet
        wrong = browser.submit("/dpo/login/proconnect/otp", {"otp": "000000"})
        assert wrong.status_code == 401
        right = browser.submit("/dpo/login/proconnect/otp", {"otp": pyotp.TOTP(staff.secret).now()})
        assert right.status_code == 303 and right.headers["location"] == "/dpo/"
        assert browser.get("/dpo/").status_code == 200


def test_nobody_without_a_staff_account_gets_in(pc_app, fc_user, engine) -> None:
    make_staff(pc_app, email="camille.dpo@ville.example.fr")
    with Browser(pc_app) as browser:
        page = proconnect(browser, fc_user, "agent_unknown")
        assert page.status_code == 400 and "Aucun compte du personnel" in page.text
        assert browser.get("/dpo/").status_code == 404
    with Session(engine) as db:
        assert db.exec(select(StaffSession)).first() is None
        assert db.exec(select(StaffAccount)).one().proconnect_sub is None


def test_a_disabled_staff_account_cannot_log_in_through_proconnect(pc_app, fc_user, engine) -> None:
    from vault.db import utcnow

    make_staff(pc_app, email="camille.dpo@ville.example.fr")
    with Session(engine) as db:
        db.exec(select(StaffAccount)).one().disabled_at = utcnow()
        db.commit()
    with Browser(pc_app) as browser:
        assert proconnect(browser, fc_user, "agent_mfa").status_code == 400
