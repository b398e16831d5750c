"""Interoperability: a city app built on Node's `openid-client` receives a login made at the counter by an
agent for a citizen, under a mandate (RFC 8693 ``act``), and validates its ID token; an app registered
without ``--accept-delegation`` gets nothing. The agent's part (staff login, starting the assisted session)
is played here over HTTP against the running server; `openid_client_delegation.mjs` plays the app and the
agent's browser from the app's redirection to ``/authorize`` on."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from datetime import timedelta

import httpx
import pyotp
from sqlalchemy import create_engine
from sqlmodel import Session

from tests.interop.test_openid_client import HERE, PASSWORD, ensure_node_modules, run_flow, tool
from vault.counter.models import Mandate
from vault.db import utcnow

SCRIPT = HERE / "openid_client_delegation.mjs"
SERVICE = "Guichet unique de l'Hôtel de Ville"
STAFF_PASSWORD = "un mot de passe de guichet assez long"
CALLBACK = "http://127.0.0.1:9/cb"


def _csrf(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text[:500]
    return match.group(1)


def _app(live_server, name: str, *extra: str) -> dict[str, str]:
    return json.loads(live_server.vault(
        "client", "create", "--name", name, "--redirect-uri", CALLBACK, "--post-logout-redirect-uri",
        "http://127.0.0.1:9/bye", "--scope", "openid profile birth email", "--auth-method", "client_secret_basic",
        "--refresh-tokens", "--json", *extra).stdout)


def test_node_openid_client_receives_act_from_an_assisted_login(live_server) -> None:
    node = tool("node")
    ensure_node_modules()
    accepting = _app(live_server, "Node cantine (guichet)", "--accept-delegation")
    refusing = _app(live_server, "Node stationnement")
    citizen = json.loads(live_server.vault(
        "citizen", "create", "--email", "node-assisted@example.org", "--given-name", "Anne Marie", "--family-name",
        "Guichet", "--birthdate", "1940-03-04", "--gender", "female", "--birthplace", "31555", "--birthcountry",
        "99100", "--password-stdin", "--verified", "--json", stdin=f"{PASSWORD}\n").stdout)
    agent = json.loads(live_server.vault(
        "staff", "create", "--email", "node-agent@ville.example.fr", "--name", "Dominique Accueil", "--role", "agent",
        "--service", SERVICE, "--password-stdin", "--json", stdin=f"{STAFF_PASSWORD}\n").stdout)
    # The mandate the citizen granted at the counter (the mandates pages record it so).
    with Session(create_engine(live_server.env["VAULT_DATABASE_URL"])) as db:
        db.add(Mandate(citizen_id=uuid.UUID(citizen["id"]), service=SERVICE, procedures=["autre"], duration="1d",
                       granted_with="password", created_by=uuid.UUID(agent["id"]),
                       ends_at=utcnow() + timedelta(days=1)))
        db.commit()

    # The citizen's own login into the accepting app: the sub it knows them by.
    own, report = run_flow(node, {"issuer": live_server.url, "client_id": accepting["client_id"],
                                  "client_secret": accepting["client_secret"], "redirect_uri": CALLBACK,
                                  "post_logout_redirect_uri": "http://127.0.0.1:9/bye",
                                  "email": citizen["email"], "password": PASSWORD})
    assert own["amr"] != ["delegation"], report

    with httpx.Client(base_url=live_server.url) as browser:  # the agent at the counter
        logged = browser.post("/dpo/login", data={"email": agent["email"], "password": STAFF_PASSWORD,
                                                  "otp": pyotp.TOTP(agent["totp_secret"]).now(),
                                                  "csrf_token": _csrf(browser.get("/dpo/login"))})
        assert logged.status_code == 303, logged.text[:500]
        assist = f"/agent/citizens/{citizen['id']}/assist"
        started = browser.post(assist, data={"csrf_token": _csrf(browser.get(assist))})
        assert started.status_code == 303, started.text[:500]
        assert "Node cantine (guichet)" in browser.get(assist).text
        cookies = {cookie.name: cookie.value for cookie in browser.cookies.jar}
    assert "assisted" in cookies

    run = subprocess.run([node, str(SCRIPT)], cwd=HERE, capture_output=True, text=True, timeout=120,
                         input=json.dumps({"issuer": live_server.url, "redirect_uri": CALLBACK, "cookies": cookies,
                                           "accepting": accepting, "refusing": refusing}))
    report = f"exit {run.returncode}\n--- stdout ---\n{run.stdout}\n--- stderr ---\n{run.stderr}"
    assert run.returncode == 0, report
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["ok"] and summary["id_token_validated"], report
    assert summary["banner_names"] == "Anne Marie Guichet", report
    assert summary["sub"] == own["sub"], report  # the citizen, as the app knows them
    assert summary["amr"] == ["delegation"], report
    act = summary["act"]
    assert set(act) == {"sub", "service"} and act["service"] == SERVICE, report
    assert act["sub"] != own["sub"] and re.fullmatch(r"[0-9a-f]{64}a1", act["sub"]), report
    # The app without --accept-delegation: the agent gets a page saying so, the app gets no redirect.
    assert summary["refused_status"] == 403 and summary["refused_location"] is None, report
    assert summary["refused_message"] is True, report
