"""An agent logs into a city app as the citizen, under a mandate (RFC 8693 ``act``): the assisted
session, what an accepting app receives, what the others do not, and every way the session ends."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlmodel import Session, select

from tests.factories import COUNTER, citizen_browser, make_citizen, make_oidc_app, make_staff, pdf, staff_browser
from tests.oidc.oidc_support import Flow, authorize, exchange, token_request, verify_id_token
from tests.support import RP_CALLBACK, App, Browser
from vault.counter.models import AssistedSession, Mandate, MandateAction
from vault.db import utcnow
from vault.gdpr.models import AuditEntry, StaffAccount
from vault.oidc.models import Consent, OAuthToken

REFUSED = "Cette application n'accepte pas les connexions faites au guichet pour une autre personne."
OVER = "La session assistée est terminée"


def make_mandate(app: Any, citizen_id: uuid.UUID, agent_id: uuid.UUID, *, procedures: tuple[str, ...] = ("autre",),
                 service: str = COUNTER, days: int = 30) -> uuid.UUID:
    """A mandate the citizen granted at the counter (as the mandates page records it)."""
    with Session(app.state.services.engine) as db:
        mandate = Mandate(citizen_id=citizen_id, service=service, procedures=list(procedures), duration="1m",
                          granted_with="password", created_by=agent_id, ends_at=utcnow() + timedelta(days=days))
        db.add(mandate)
        db.commit()
        return mandate.id


def start_assisted(browser: Browser, citizen_id: uuid.UUID) -> Any:
    """The agent presses "Se connecter à un service de la ville pour cette personne" in the citizen's file."""
    assert "Se connecter à un service de la ville pour cette personne" in browser.get(f"/agent/citizens/{citizen_id}").text
    started = browser.submit(f"/agent/citizens/{citizen_id}", {}, action=f"/agent/citizens/{citizen_id}/assist")
    assert started.status_code == 303, (started.status_code, started.text[:500])
    return browser.get(started.headers["location"])


def assisted_login(browser: Browser, app: App, **overrides: str | None) -> Flow:
    flow = authorize(browser, app, consent=None, **overrides)
    assert flow.steps == ["consent"], (flow.steps, flow.response.text[:500] if flow.response else None)
    return authorize(browser, app, **overrides)


def journal(app: Any, citizen_id: uuid.UUID) -> list[MandateAction]:
    with Session(app.state.services.engine) as db:
        return list(db.exec(select(MandateAction).where(MandateAction.citizen_id == citizen_id)
                            .order_by(MandateAction.id)).all())


def audit_actions(app: Any) -> list[str]:
    with Session(app.state.services.engine) as db:
        return [e.action for e in db.exec(select(AuditEntry)).all()]


@pytest.fixture
def counter(app):
    """A citizen, an agent of the counter, a mandate "autre" of that counter for the citizen."""
    citizen = make_citizen(app, given_name="Jeanne Marie", family_name="Martin")
    agent = make_staff(app, role="agent", name="Dominique Accueil")
    mandate_id = make_mandate(app, citizen.id, agent.id)
    return citizen, agent, mandate_id


def test_an_accepting_app_gets_the_citizens_sub_and_the_agent_as_act(app, counter) -> None:
    citizen, agent, _mandate = counter
    engine = app.state.services.engine
    accepting = make_oidc_app(engine, name="Cantine scolaire", accept_delegation=True, sector="ecoles",
                              allow_refresh=True, userinfo_signed=True)
    with citizen_browser(app, citizen) as own:  # the citizen's own login: the sub the app knows
        own_flow = authorize(own, accepting, email=citizen.email)
        own_tokens = exchange(own, own_flow).json()
        own_claims = verify_id_token(own, own_tokens["id_token"])[1]
    assert "refresh_token" in own_tokens  # the app may refresh the citizen's own logins
    with staff_browser(app, agent) as browser:
        page = start_assisted(browser, citizen.id)
        assert page.status_code == 200 and "Cantine scolaire" in page.text
        origin = "{0.scheme}://{0.netloc}/".format(urlsplit(RP_CALLBACK))
        assert f'href="{origin}"' in page.text  # where to open the app
        cookie = next(c for c in browser.cookies.jar if c.name.endswith("assisted"))
        assert cookie.path == "/" and cookie.has_nonstandard_attr("HttpOnly")

        consent = authorize(browser, accepting, consent=None)
        assert consent.steps == ["consent"]  # no citizen login form: the agent acts under the mandate
        assert "Vous agissez pour Jeanne Marie Martin sous mandat" in consent.response.text
        flow = authorize(browser, accepting)
        tokens = exchange(browser, flow).json()
        _header, claims = verify_id_token(browser, tokens["id_token"])

        keystore = app.state.services.keystore
        with Session(engine) as db:
            actor = keystore.pairwise_actor(db, sector="ecoles", staff_id=str(agent.id))
        assert claims["sub"] == own_claims["sub"]  # the citizen, as the app always saw them
        assert claims["act"] == {"sub": actor, "service": COUNTER}
        assert actor != claims["sub"] and actor.endswith("a1")
        assert claims["amr"] == ["delegation"] and "act" not in own_claims

        introspected = token_request(browser, accepting, "/introspect", token=tokens["access_token"]).json()
        assert introspected["active"] and introspected["act"] == claims["act"]
        assert introspected["sub"] == claims["sub"]
        userinfo = browser.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        signed = verify_id_token(browser, userinfo.text)[1]
        assert signed["act"] == claims["act"] and signed["sub"] == claims["sub"]

        # No refresh token: a delegated grant ends with its access token (the app gets one as the citizen).
        assert "refresh_token" not in tokens

    with Session(engine) as db:  # the consent is the citizen's own; the agent's is never stored
        assert db.exec(select(Consent).where(Consent.citizen_id == citizen.id,
                                             Consent.client_id == accepting.client_id)).first() is not None  # own
        tokens_rows = db.exec(select(OAuthToken).where(OAuthToken.client_id == accepting.client_id)).all()
        assert [t.act is not None for t in tokens_rows].count(True) == 1
        assert all(t.refresh_token_hash is None for t in tokens_rows if t.act)
    lines = [(line.action, line.details.get("app")) for line in journal(app, citizen.id)]
    assert lines == [("session.started", None), ("app.login", "Cantine scolaire")]
    with citizen_browser(app, citizen) as own:
        assert "Vous a connecté(e) à un service de la ville : Cantine scolaire" in own.get("/account/mandates").text
    assert all(line.agent_id == agent.id for line in journal(app, citizen.id))


def test_discovery_says_act_may_come(browser) -> None:
    assert "act" in browser.get("/.well-known/openid-configuration").json()["claims_supported"]


def test_no_consent_is_remembered_for_the_citizen(app, counter) -> None:
    citizen, agent, _mandate = counter
    accepting = make_oidc_app(app.state.services.engine, accept_delegation=True)
    with staff_browser(app, agent) as browser:
        start_assisted(browser, citizen.id)
        assisted_login(browser, accepting)
        assert authorize(browser, accepting, consent=None).steps == ["consent"]  # asked at every login
        refused = authorize(browser, accepting, prompt="none")
        assert refused.result["error"] == "consent_required"
    with Session(app.state.services.engine) as db:
        assert db.exec(select(Consent).where(Consent.citizen_id == citizen.id)).first() is None


def test_the_assisted_session_takes_precedence_over_a_citizen_logged_in_in_that_browser(app, counter) -> None:
    citizen, agent, _mandate = counter
    other = make_citizen(app, given_name="Paul", family_name="Durand")
    accepting = make_oidc_app(app.state.services.engine, accept_delegation=True, sector="s1")
    with staff_browser(app, agent) as browser:
        assert browser.login(other.email).status_code == 303  # someone else's session on the counter's computer
        start_assisted(browser, citizen.id)
        claims = verify_id_token(browser, exchange(browser, assisted_login(browser, accepting)).json()["id_token"])[1]
    keystore = app.state.services.keystore
    with Session(app.state.services.engine) as db:
        assert claims["sub"] == keystore.pairwise_sub(db, sector="s1", citizen_id=str(citizen.id))


def test_an_app_that_does_not_accept_delegation_gets_nothing(app, counter) -> None:
    citizen, agent, _mandate = counter
    plain = make_oidc_app(app.state.services.engine, name="Stationnement")
    with staff_browser(app, agent) as browser:
        page = start_assisted(browser, citizen.id)
        assert "Stationnement" not in page.text  # not offered
        flow = authorize(browser, plain)
        assert flow.response.status_code == 403 and REFUSED in flow.response.text
        assert "location" not in flow.response.headers  # the app gets no code, no redirect
    assert "counter.app.refused" in audit_actions(app)
    assert [line.action for line in journal(app, citizen.id)] == ["session.started"]


def test_without_a_mandate_there_is_no_assisted_session(app) -> None:
    citizen = make_citizen(app)
    agent = make_staff(app, role="agent")
    make_mandate(app, citizen.id, agent.id, service="Mairie annexe Nord")  # another counter's
    with staff_browser(app, agent) as browser:
        page = browser.get(f"/agent/citizens/{citizen.id}/assist")
        assert page.status_code == 403
        token = browser.form_token("/agent/")
        started = browser.post(f"/agent/citizens/{citizen.id}/assist", data={"csrf_token": token})
        assert started.status_code == 403
        assert not any(c.name.endswith("assisted") for c in browser.cookies.jar)
    with Session(app.state.services.engine) as db:
        assert db.exec(select(AssistedSession)).first() is None


def test_an_ended_mandate_ends_the_session(app, counter) -> None:
    citizen, agent, mandate_id = counter
    accepting = make_oidc_app(app.state.services.engine, accept_delegation=True)
    with staff_browser(app, agent) as browser:
        start_assisted(browser, citizen.id)
        with Session(app.state.services.engine) as db:
            mandate = db.get(Mandate, mandate_id)
            mandate.ended_at, mandate.ended_by = utcnow(), "citizen"
            db.commit()
        flow = authorize(browser, accepting)
        assert flow.response.status_code == 403 and OVER in flow.response.text
        assert "location" not in flow.response.headers
        assert not any(c.name.endswith("assisted") for c in browser.cookies.jar)  # cleared
        # The cookie is gone: the next request is an ordinary one (a citizen login form).
        assert authorize(browser, accepting).steps == ["login"]
    ended = journal(app, citizen.id)[-1]
    assert ended.action == "session.ended" and ended.details["reason"] == "mandate_ended"


def test_an_expired_session_is_over(app, counter) -> None:
    citizen, agent, _mandate = counter
    accepting = make_oidc_app(app.state.services.engine, accept_delegation=True)
    with staff_browser(app, agent) as browser:
        start_assisted(browser, citizen.id)
        consent = authorize(browser, accepting, consent=None)  # the session expires on the consent page
        with Session(app.state.services.engine) as db:
            for row in db.exec(select(AssistedSession)).all():
                assert row.expires_at - row.created_at <= timedelta(minutes=30)
                row.expires_at = utcnow() - timedelta(seconds=1)
            db.commit()
        action = consent.response.text.split('action="')[1].split('"')[0]
        decided = browser.post(action, data={"decision": "allow", "csrf_token": browser.form_token("/login")})
        assert decided.status_code == 403 and OVER in decided.text
        assert "location" not in decided.headers
    ended = journal(app, citizen.id)[-1]
    assert ended.action == "session.ended" and ended.details["reason"] == "expired"
    assert [line.action for line in journal(app, citizen.id)].count("app.login") == 0


def test_the_agents_logout_ends_it(app, counter) -> None:
    citizen, agent, _mandate = counter
    accepting = make_oidc_app(app.state.services.engine, accept_delegation=True)
    with staff_browser(app, agent) as browser:
        start_assisted(browser, citizen.id)
        assert browser.submit("/agent/", {}, action="/dpo/logout").status_code == 303
        # The cookie is forgotten at the logout: the next request is an ordinary one.
        assert authorize(browser, accepting).steps == ["login"]
    with Session(app.state.services.engine) as db:
        assert db.exec(select(AssistedSession)).first() is None  # gone with the staff session
    ended = journal(app, citizen.id)[-1]
    assert ended.action == "session.ended" and ended.details["reason"] == "logout"
    assert "counter.session.unknown" not in audit_actions(app)


def test_the_agents_logout_forgets_the_assisted_cookie(app, counter) -> None:
    citizen, agent, _mandate = counter
    with staff_browser(app, agent) as browser:
        start_assisted(browser, citizen.id)
        out = browser.submit("/agent/", {}, action="/dpo/logout")
        assert any(c.startswith('assisted="";') for c in out.headers.get_list("set-cookie"))
        assert not any(c.name.endswith("assisted") for c in browser.cookies.jar)


def test_the_agent_ends_it(app, counter) -> None:
    citizen, agent, _mandate = counter
    accepting = make_oidc_app(app.state.services.engine, accept_delegation=True)
    with staff_browser(app, agent) as browser:
        page = start_assisted(browser, citizen.id)
        assert "Terminer la session assistée" in page.text
        ended = browser.submit(f"/agent/citizens/{citizen.id}/assist", {},
                               action=f"/agent/citizens/{citizen.id}/assist/end")
        assert ended.status_code == 303 and ended.headers["location"] == f"/agent/citizens/{citizen.id}"
        assert not any(c.name.endswith("assisted") for c in browser.cookies.jar)
        assert "Terminer la session assistée" not in browser.get(f"/agent/citizens/{citizen.id}/assist").text
        assert authorize(browser, accepting).steps == ["login"]
    assert [line.action for line in journal(app, citizen.id)] == ["session.started", "session.ended"]
    assert journal(app, citizen.id)[-1].details["reason"] == "agent"
    with citizen_browser(app, citizen) as own:  # what the citizen reads in "Mes mandats"
        mine = own.get("/account/mandates").text
        assert "A commencé à agir pour vous" in mine and "A fini d'agir pour vous" in mine
        assert "session.ended" not in mine


def test_a_made_up_assisted_cookie_is_refused(app, counter, caplog) -> None:
    """A cookie naming no assisted session: the page saying the session is over, never a login as
    anyone; the cookie is forgotten, the application log says so (never the cookie), the audit chain
    is left alone (anyone may send such cookies, as many as they like)."""
    accepting = make_oidc_app(app.state.services.engine, accept_delegation=True)
    before = audit_actions(app)
    with Browser(app) as stranger, caplog.at_level(logging.INFO, logger="vault.counter.assist"):
        for _ in range(3):
            stranger.cookies.set("assisted", "not-a-real-session")
            flow = authorize(stranger, accepting)
            assert flow.response.status_code == 403 and OVER in flow.response.text
            assert any(c.startswith('assisted="";') for c in flow.response.headers.get_list("set-cookie"))  # cleared
    assert audit_actions(app) == before
    logged = [r for r in caplog.records if r.getMessage() == "unknown assisted session cookie"]
    assert len(logged) == 3
    assert all("not-a-real-session" not in repr(r.__dict__) for r in caplog.records)


def test_an_ended_session_is_audited_once_however_often_its_cookie_comes_back(app, counter) -> None:
    citizen, agent, _mandate = counter
    accepting = make_oidc_app(app.state.services.engine, accept_delegation=True)
    with staff_browser(app, agent) as browser:
        start_assisted(browser, citizen.id)
        value = next(c.value for c in browser.cookies.jar if c.name.endswith("assisted"))
        with Session(app.state.services.engine) as db:
            for row in db.exec(select(AssistedSession)).all():
                row.expires_at = utcnow() - timedelta(seconds=1)
            db.commit()
        for _ in range(3):  # the cookie replayed
            browser.cookies.set("assisted", value)
            flow = authorize(browser, accepting)
            assert flow.response.status_code == 403 and OVER in flow.response.text
    assert [line.action for line in journal(app, citizen.id)] == ["session.started", "session.ended"]
    actions = audit_actions(app)
    assert actions.count("counter.session.ended") == 1 and "counter.session.over" not in actions


# ---- the assisted cookie alone is not the agent --------------------------------------------------------------


def test_the_assisted_cookie_copied_into_another_browser_gets_no_code(app, counter) -> None:
    """Without the staff session that opened it, the ``assisted`` cookie shows at most the consent
    page: deciding there needs the agent's staff session (sent by the page's own form)."""
    citizen, agent, _mandate = counter
    accepting = make_oidc_app(app.state.services.engine, accept_delegation=True)
    with staff_browser(app, agent) as desk:
        start_assisted(desk, citizen.id)
        assisted = next(c for c in desk.cookies.jar if c.name.endswith("assisted"))
        with Browser(app) as other:
            other.cookies.set(assisted.name, assisted.value)
            flow = authorize(other, accepting)
            assert flow.response.status_code == 403 and OVER in flow.response.text
            assert "location" not in flow.response.headers  # no code, no redirect
            assert any(c.startswith('assisted="";') for c in flow.response.headers.get_list("set-cookie"))  # cleared
        # The agent's own browser still works: the copy did not end the agent's session.
        tokens = exchange(desk, assisted_login(desk, accepting)).json()
        assert verify_id_token(desk, tokens["id_token"])[1]["act"]["service"] == COUNTER
    assert [line.action for line in journal(app, citizen.id)] == ["session.started", "app.login"]


def test_the_consent_decision_carries_the_staff_session_of_the_agent_who_opened_it(app, counter) -> None:
    """The agent's own consent page, decided in a browser where another staff session is logged in
    (a colleague took over the computer): over, no code."""
    citizen, agent, _mandate = counter
    colleague = make_staff(app, role="agent", name="Claude Collègue")
    accepting = make_oidc_app(app.state.services.engine, accept_delegation=True)
    with staff_browser(app, agent) as desk, staff_browser(app, colleague) as other:
        start_assisted(desk, citizen.id)
        consent = authorize(desk, accepting, consent=None)
        assert consent.steps == ["consent"]
        staff_cookie = next(c for c in other.cookies.jar if c.name.endswith("staff_session"))
        desk.cookies.set(staff_cookie.name, staff_cookie.value)
        action = consent.response.text.split('action="')[1].split('"')[0]
        decided = desk.post(action, data={"decision": "allow", "csrf_token": desk.form_token("/login")})
        assert decided.status_code == 403 and OVER in decided.text and "location" not in decided.headers
    assert "app.login" not in [line.action for line in journal(app, citizen.id)]


def test_an_agent_moved_to_another_counter_cannot_go_on(app, counter) -> None:
    citizen, agent, _mandate = counter
    accepting = make_oidc_app(app.state.services.engine, accept_delegation=True)
    with staff_browser(app, agent) as desk:
        start_assisted(desk, citizen.id)
        consent = authorize(desk, accepting, consent=None)
        with Session(app.state.services.engine) as db:
            staff = db.get(StaffAccount, agent.id)
            assert staff is not None
            staff.service = "Mairie annexe Nord"
            db.commit()
        action = consent.response.text.split('action="')[1].split('"')[0]
        decided = desk.post(action, data={"decision": "allow", "csrf_token": desk.form_token("/login")})
        assert decided.status_code == 403 and OVER in decided.text
    ended = journal(app, citizen.id)[-1]
    assert ended.action == "session.ended" and ended.details["reason"] == "staff_session_ended"


# ---- what a delegated login may do, and for how long -----------------------------------------------------------


def test_a_delegated_login_never_gets_a_write_scope(app, counter) -> None:
    citizen, agent, _mandate = counter
    scope = "openid profile documents:deposit documents:write"
    accepting = make_oidc_app(app.state.services.engine, accept_delegation=True, scope=scope)
    with staff_browser(app, agent) as desk:
        start_assisted(desk, citizen.id)
        consent = authorize(desk, accepting, consent=None, scope=scope)
        assert "Vos prénoms" in consent.response.text
        assert "Déposer des justificatifs" not in consent.response.text  # not asked: never granted
        tokens = exchange(desk, authorize(desk, accepting, scope=scope)).json()
        assert set(tokens["scope"].split()) == {"openid", "profile"}
        deposit = desk.post("/api/v1/documents", headers={"Authorization": f"Bearer {tokens['access_token']}"},
                            files={"file": ("avis.pdf", io.BytesIO(pdf()), "application/pdf")},
                            data={"type": "tax_notice"})
        assert deposit.status_code == 403 and deposit.json()["error"] == "insufficient_scope"
    with citizen_browser(app, citizen) as own:  # the citizen's own login still may deposit
        tokens = exchange(own, authorize(own, accepting, email=citizen.email, scope=scope)).json()
        assert "documents:deposit" in tokens["scope"].split()


def _introspected(browser: Browser, app: App, token: str) -> bool:
    return bool(token_request(browser, app, "/introspect", token=token).json()["active"])


def test_ending_the_session_ends_the_apps_it_logged_into(app, counter) -> None:
    citizen, agent, _mandate = counter
    accepting = make_oidc_app(app.state.services.engine, accept_delegation=True)
    with citizen_browser(app, citizen) as own:  # the citizen's own login to the same app stays
        own_token = exchange(own, authorize(own, accepting, email=citizen.email)).json()["access_token"]
    with staff_browser(app, agent) as desk:
        start_assisted(desk, citizen.id)
        token = exchange(desk, assisted_login(desk, accepting)).json()["access_token"]
        assert _introspected(desk, accepting, token)
        code_flow = assisted_login(desk, accepting)  # a code not yet exchanged
        desk.submit(f"/agent/citizens/{citizen.id}/assist", {}, action=f"/agent/citizens/{citizen.id}/assist/end")
        assert not _introspected(desk, accepting, token)
        assert desk.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        assert exchange(desk, code_flow).status_code == 400  # the code died with the session
        assert _introspected(desk, accepting, own_token)


@pytest.mark.parametrize("by", ["citizen", "agent"])
def test_ending_the_mandate_ends_the_apps_logged_into_under_it(app, counter, by: str) -> None:
    citizen, agent, mandate_id = counter
    accepting = make_oidc_app(app.state.services.engine, accept_delegation=True)
    with staff_browser(app, agent) as desk:
        start_assisted(desk, citizen.id)
        token = exchange(desk, assisted_login(desk, accepting)).json()["access_token"]
        assert _introspected(desk, accepting, token)
        if by == "citizen":
            with citizen_browser(app, citizen) as own:
                ended = own.submit("/account/mandates", {}, action=f"/account/mandates/{mandate_id}/end")
        else:
            ended = desk.submit(f"/agent/citizens/{citizen.id}", {"asked": "yes"},
                                action=f"/agent/citizens/{citizen.id}/mandates/{mandate_id}/end")
        assert ended.status_code == 303
        assert not _introspected(desk, accepting, token)
    lines = [(line.action, line.details.get("reason")) for line in journal(app, citizen.id)]
    assert lines[-2:] == [("session.ended", "mandate_ended"), ("mandate.ended", None)]


# ---- `vault client create --accept-delegation` ------------------------------------------------------------------

VAULT = [sys.executable, "-m", "vault.cli"]


@pytest.fixture
def env(database_url: str, tmp_path: Path, engine) -> dict[str, str]:
    return {**os.environ, "VAULT_DATABASE_URL": database_url, "VAULT_DATA_DIR": str(tmp_path / "var"),
            "VAULT_ARGON2_MEMORY_KIB": "8192", "VAULT_ARGON2_TIME_COST": "1"}


def vault(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VAULT, *args], capture_output=True, text=True, env=env, timeout=120)


def test_client_create_accept_delegation(env: dict[str, str]) -> None:
    created = vault(["client", "create", "--name", "Cantine", "--redirect-uri", "https://cantine.example.fr/cb",
                     "--accept-delegation", "--json"], env)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["accept_delegation"] is True
    plain = vault(["client", "create", "--name", "Portail", "--redirect-uri", "https://portail.example.fr/cb",
                   "--json"], env)
    assert json.loads(plain.stdout)["accept_delegation"] is False  # off by default
    listed = json.loads(vault(["client", "list", "--json"], env).stdout)
    assert {c["name"]: c["accept_delegation"] for c in listed} == {"Cantine": True, "Portail": False}
    text = vault(["client", "list"], env).stdout
    assert "Cantine  (oidc, client_secret_basic, accepts delegated logins)" in text
    assert "Portail  (oidc, client_secret_basic)" in text


@pytest.mark.parametrize("profile", ["fc-v1", "fc-v2"])
def test_a_franceconnect_app_never_accepts_delegation(env: dict[str, str], profile: str) -> None:
    refused = vault(["client", "create", "--name", "Cantine", "--redirect-uri", "https://cantine.example.fr/cb",
                     "--profile", profile, "--scope", "openid", "--accept-delegation"], env)
    assert refused.returncode == 2
    assert "accept-delegation" in refused.stderr + refused.stdout and "FranceConnect" in refused.stderr + refused.stdout
    assert json.loads(vault(["client", "list", "--json"], env).stdout) == []


def test_retention_forgets_assisted_sessions_over_for_a_day(app, counter, env: dict[str, str]) -> None:
    citizen, agent, _mandate = counter
    with staff_browser(app, agent) as browser:
        start_assisted(browser, citizen.id)
        start_assisted(browser, citizen.id)  # the first one ends ("replaced")
        with Session(app.state.services.engine) as db:
            first, second = sorted(db.exec(select(AssistedSession)).all(), key=lambda r: r.created_at)
            assert first.ended_at is not None and second.ended_at is None
            first.ended_at = utcnow() - timedelta(days=2)
            kept = second.id
            db.commit()
        done = vault(["retention", "run", "--json"], env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["housekeeping"]["assisted_sessions"] == 1
        with Session(app.state.services.engine) as db:
            assert [row.id for row in db.exec(select(AssistedSession)).all()] == [kept]
    assert [line.action for line in journal(app, citizen.id)] == ["session.started", "session.ended", "session.started"]



def test_an_account_opened_at_the_counter_without_email_or_password(app) -> None:
    """The people the counter is for: an account opened in person, no address, no password yet."""
    agent = make_staff(app, role="agent")
    accepting = make_oidc_app(app.state.services.engine, accept_delegation=True, scope="openid profile email")
    with staff_browser(app, agent) as browser:
        opened = browser.submit("/agent/accounts/new", {
            "document_kind": "cni", "checked": "yes", "given_name": "Lucienne", "family_name": "Bernard",
            "birthdate": "12 mars 1942", "gender": "female", "birthcountry": "99100", "birthplace": "Quimper"})
        assert opened.status_code == 303, opened.text[:500]
        citizen_id = uuid.UUID(opened.headers["location"].split("?")[0].rsplit("/", 1)[1])
        make_mandate(app, citizen_id, agent.id, procedures=("social",))  # any procedure will do
        start_assisted(browser, citizen_id)
        consent = authorize(browser, accepting, consent=None, scope="openid profile email")
        assert "Vous agissez pour Lucienne Bernard sous mandat" in consent.response.text
        tokens = exchange(browser, authorize(browser, accepting, scope="openid profile email")).json()
        claims = verify_id_token(browser, tokens["id_token"])[1]
        assert claims["act"]["service"] == COUNTER and claims["amr"] == ["delegation"]
        userinfo = browser.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
        assert userinfo["given_name"] == "Lucienne" and "email" not in userinfo
