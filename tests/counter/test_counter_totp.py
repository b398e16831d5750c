"""Two-factor login turned off at the counter, for a person who lost both their application and
their recovery codes: any agent, the person present with an identity document checked now and at
their own request; then "Mot de passe oublié" asks no code. Every session and app grant ends, a
mail tells the citizen, the audit chain keeps it, three times a day at most."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from tests.auth.test_reset_and_apps import NEW_PASSWORD, app_tokens, assert_grants_ended, introspect, reset_link
from tests.factories import COUNTER, CitizenData, logged_in, make_citizen, make_oidc_app, make_staff, staff_browser
from tests.support import Browser, Outbox
from vault.auth.models import Citizen, LoginSession, RecoveryCode
from vault.db import utcnow
from vault.gdpr.models import AuditEntry, StaffSession

CHECKED = {"document_kind": "titre_sejour", "checked": "yes", "asked": "yes"}
ACTION = "Désactiver la double authentification"


@pytest.fixture
def agent(app):
    return make_staff(app, role="agent", name="Dominique Accueil", service="Mairie annexe du Port")


def turn_off(desk: Browser, citizen: CitizenData, fields: dict[str, str] | None = None):
    file = f"/agent/citizens/{citizen.id}"  # the form's token: any page of the agent's
    return desk.submit(file, CHECKED if fields is None else fields, action=f"{file}/totp")


def totp_on(app, citizen: CitizenData) -> bool:
    with Session(app.state.services.engine) as db:
        row = db.get(Citizen, citizen.id)
        codes = db.exec(select(RecoveryCode).where(RecoveryCode.citizen_id == citizen.id)).all()
        return row.totp_enabled_at is not None and row.totp_secret is not None and len(codes) > 0


def test_the_counter_turns_totp_off_then_the_citizen_resets_and_logs_in(app, engine, agent, outbox: Outbox) -> None:
    citizen = make_citizen(app, totp=True)
    rp = make_oidc_app(engine, allow_refresh=True)
    with Browser(app) as rp_side, Browser(app) as old_device, staff_browser(app, agent) as desk:
        logged_in(old_device, citizen)  # this time step's code, then the next one for the app
        tokens = app_tokens(rp_side, rp, citizen)
        assert old_device.get("/account").status_code == 200

        file = desk.get(f"/agent/citizens/{citizen.id}")
        assert ACTION in file.text and f'href="/agent/citizens/{citizen.id}/totp"' in file.text
        form = desk.get(f"/agent/citizens/{citizen.id}/totp")
        assert form.status_code == 200 and "Pièce d'identité présentée" in form.text
        done = turn_off(desk, citizen)
        assert done.status_code == 303 and done.headers["location"] == f"/agent/citizens/{citizen.id}?notice=totp_off"
        after = desk.get(done.headers["location"])
        assert "La double authentification est désactivée" in after.text and ACTION not in after.text

        # Every device and every app is signed out.
        assert old_device.get("/account").status_code in (303, 401)
        assert_grants_ended(rp_side, rp, tokens)
    assert not totp_on(app, citizen)
    with Session(engine) as db:
        assert db.exec(select(RecoveryCode).where(RecoveryCode.citizen_id == citizen.id)).first() is None
        assert db.exec(select(LoginSession).where(LoginSession.citizen_id == citizen.id)).first() is None
        entry = db.exec(select(AuditEntry).where(AuditEntry.action == "counter.totp_disabled")).one()
        assert entry.actor == f"staff:{agent.id}" and entry.target.startswith("subject:")
        assert entry.details["service"] == "Mairie annexe du Port" and entry.details["document_kind"] == "titre_sejour"
        assert str(citizen.id) not in entry.target and "Martin" not in str(entry.details)

    mail = outbox.last(citizen.email)
    assert mail.subject == "La double authentification a été désactivée au guichet de la mairie"
    assert "« Mairie annexe du Port »" in mail.body and "/password/forgot" in mail.body

    # "Mot de passe oublié": no code asked; then the new password alone logs in.
    with Browser(app) as browser:
        path, token = reset_link(browser, outbox, citizen.email)
        page = browser.get(path)
        assert page.status_code == 200 and 'name="otp"' not in page.text
        reset = browser.submit(path, {"token": token, "password": NEW_PASSWORD}, action="/password/reset")
        assert reset.status_code == 303
        logged = browser.login(citizen.email, NEW_PASSWORD)
        assert logged.status_code == 303 and logged.headers["location"] == "/account"


@pytest.mark.parametrize("missing", ["document_kind", "checked", "asked"])
def test_refused_without_the_identity_check_or_the_request(app, engine, agent, outbox: Outbox, missing: str) -> None:
    citizen = make_citizen(app, totp=True)
    rp = make_oidc_app(engine, allow_refresh=True)
    with Browser(app) as rp_side, Browser(app) as device, staff_browser(app, agent) as desk:
        logged_in(device, citizen)
        tokens = app_tokens(rp_side, rp, citizen)
        mails = len(outbox.to(citizen.email))
        refused = turn_off(desk, citizen, {k: v for k, v in CHECKED.items() if k != missing})
        assert refused.status_code == 400 and 'class="error-summary"' in refused.text
        assert f'href="#{missing}"' in refused.text and 'aria-invalid="true"' in refused.text
        # Nothing changed: TOTP on, the device and the app still signed in, no mail, no audit entry.
        assert totp_on(app, citizen)
        assert device.get("/account").status_code == 200
        assert introspect(rp_side, rp, tokens["refresh_token"])["active"] is True
        assert len(outbox.to(citizen.email)) == mails
    with Session(engine) as db:
        assert db.exec(select(AuditEntry).where(AuditEntry.action == "counter.totp_disabled")).first() is None


def test_three_times_a_day_at_most(app, engine, agent) -> None:
    citizen = make_citizen(app, totp=True)
    services = app.state.services
    with staff_browser(app, agent) as desk:
        for _ in range(3):
            assert turn_off(desk, citizen).status_code == 303
            with Session(engine) as db:  # the citizen enrols again, and loses it again the same day
                row = db.get(Citizen, citizen.id)
                services.accounts.begin_totp(citizen=row)
                services.accounts.confirm_totp(db=db, citizen=row, code=_code(services, row))
                db.commit()
        limited = turn_off(desk, citizen)
        assert limited.status_code == 429 and "trois fois" in limited.text
    assert totp_on(app, citizen)
    with Session(engine) as db:
        assert len(db.exec(select(AuditEntry).where(AuditEntry.action == "counter.totp_disabled")).all()) == 3


def _code(services, citizen: Citizen) -> str:
    return pyotp.TOTP(services.accounts.totp_seed(citizen)).at(time.time() - 30)


def test_an_account_without_totp_shows_no_such_action(app, agent) -> None:
    citizen = make_citizen(app)
    with staff_browser(app, agent) as desk:
        assert ACTION not in desk.get(f"/agent/citizens/{citizen.id}").text
        assert desk.get(f"/agent/citizens/{citizen.id}/totp", follow_redirects=False).status_code == 303
        refused = turn_off(desk, citizen)
        assert refused.status_code == 409 and "rien à désactiver" in refused.text


@pytest.mark.parametrize("role", ["dpo", "admin"])
def test_the_dpo_and_the_administrator_cannot_reach_it(app, role: str) -> None:
    citizen = make_citizen(app, totp=True)
    with staff_browser(app, role=role) as staff:
        assert staff.get(f"/agent/citizens/{citizen.id}/totp").status_code == 404
        token = staff.form_token("/dpo/" if role == "dpo" else "/agent/stats")
        posted = staff.post(f"/agent/citizens/{citizen.id}/totp", data={**CHECKED, "csrf_token": token})
        assert posted.status_code == 404
    assert totp_on(app, citizen)


def test_an_agent_of_any_service_may_do_it(app) -> None:
    citizen = make_citizen(app, totp=True)
    with staff_browser(app, make_staff(app, role="agent", service=COUNTER)) as desk:
        assert turn_off(desk, citizen).status_code == 303
    assert not totp_on(app, citizen)


def test_an_agent_whose_confirmation_is_old_confirms_again_first(app, engine, agent) -> None:
    """A session left open or taken is not enough: the agent's password and code, confirmed less
    than 5 minutes ago (the login counts), else the page asks for them and nothing changes."""
    citizen = make_citizen(app, totp=True)
    path = f"/agent/citizens/{citizen.id}/totp"
    with staff_browser(app, agent) as desk:
        token = desk.form_token(f"/agent/citizens/{citizen.id}")
        with Session(engine) as db:  # the login's confirmation is now older than 5 minutes
            db.exec(update(StaffSession).values(reauth_at=utcnow() - timedelta(minutes=6)))
            db.commit()
        page = desk.get(path).text
        assert 'action="/dpo/reauth"' in page and f'action="{path}"' not in page
        assert "Pour désactiver la double authentification d'une personne, confirmez votre identité" in page
        refused = desk.post(path, data={**CHECKED, "csrf_token": token})
        assert refused.status_code == 403 and 'action="/dpo/reauth"' in refused.text
        assert totp_on(app, citizen)
        with Session(engine) as db:
            assert db.exec(select(AuditEntry).where(AuditEntry.action == "counter.totp_disabled")).first() is None

        confirmed = desk.submit(path, {"password": agent.password, "otp": agent.totp.at(time.time() + 30),
                                       "next": path}, action="/dpo/reauth")
        assert confirmed.status_code == 303 and confirmed.headers["location"] == path
        assert f'action="{path}"' in desk.get(path).text
        assert turn_off(desk, citizen).status_code == 303
    assert not totp_on(app, citizen)


def test_concurrent_requests_never_exceed_three_a_day(app, engine) -> None:
    """Several agents posting at once for the same person, who re-enrolled after two turn-offs today:
    one more turn-off at most, never a fourth entry."""
    if engine.dialect.name != "postgresql":
        pytest.skip("concurrent writers: PostgreSQL (SQLite has a single writer)")
    citizen = make_citizen(app, totp=True)
    services = app.state.services
    agents = [make_staff(app, role="agent", service=COUNTER) for _ in range(6)]
    with ExitStack() as stack:
        desks = [stack.enter_context(staff_browser(app, a)) for a in agents]
        for _ in range(2):
            assert turn_off(desks[0], citizen).status_code == 303
            _enrol_again(services, engine, citizen)
        tokens = [desk.form_token(f"/agent/citizens/{citizen.id}") for desk in desks]
        start = threading.Barrier(len(desks))
        statuses: list[int] = []

        def post(desk: Browser, token: str) -> None:
            start.wait()
            statuses.append(desk.post(f"/agent/citizens/{citizen.id}/totp",
                                      data={**CHECKED, "csrf_token": token}).status_code)

        threads = [threading.Thread(target=post, args=pair) for pair in zip(desks, tokens, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert sorted(statuses) == [303] + [409] * (len(desks) - 1)  # the others find nothing left to turn off
    with Session(engine) as db:
        assert len(db.exec(select(AuditEntry).where(AuditEntry.action == "counter.totp_disabled")).all()) == 3


def _enrol_again(services, engine, citizen: CitizenData) -> None:
    with Session(engine) as db:
        row = db.get(Citizen, citizen.id)
        services.accounts.begin_totp(citizen=row)
        services.accounts.confirm_totp(db=db, citizen=row, code=_code(services, row))
        db.commit()
