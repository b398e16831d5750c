"""Staff roles: the DPO runs the GDPR register (requests, exports, erasures, legal holds); an
administrator manages staff accounts, apps and sees the statistics; a counter agent works at the
counter. Each page family, and each command of the operator's CLI that acts for a staff member,
answers only to its role (404 on pages, as for anyone outside the staff section)."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from tests.factories import make_citizen, make_staff, staff_browser
from tests.support import Browser
from vault.auth.models import Citizen
from vault.gdpr.models import AuditEntry, DataRequest
from vault.gdpr.service import Staff

DPO_PAGES = ("/dpo/", "/dpo/requests.csv", "/dpo/requests/{id}", "/dpo/requests/{id}/erase",
             "/dpo/requests/{id}/export", "/dpo/requests/{id}/certificate.jwt")
ADMIN_PAGES = ("/agent/stats", "/agent/stats.csv")
COUNTER_PAGES = ("/agent/", "/agent/accounts/new", "/agent/citizens/{citizen}")


def a_request(app) -> tuple[uuid.UUID, uuid.UUID]:
    citizen = make_citizen(app)
    services = app.state.services
    with Session(services.engine) as db:
        item = services.gdpr.open_request(db, kind="access", citizen_id=citizen.id, channel="mail",
                                          by=Staff("system:test", "test"), identity_check="pièce d'identité")
        db.commit()
        return item.id, citizen.id


def statuses(browser, pages: tuple[str, ...], request_id: uuid.UUID, citizen_id: uuid.UUID) -> dict[str, int]:
    return {page: browser.get(page.format(id=request_id, citizen=citizen_id)).status_code for page in pages}


def test_an_administrator_lands_at_the_statistics_and_never_sees_the_register(app) -> None:
    request_id, citizen_id = a_request(app)
    admin = make_staff(app, role="admin", name="Alex Admin")
    with staff_browser(app, admin) as browser:
        assert browser.get("/agent/stats").status_code == 200
        assert set(statuses(browser, DPO_PAGES, request_id, citizen_id).values()) == {404}
        assert set(statuses(browser, COUNTER_PAGES, request_id, citizen_id).values()) == {404}
        # Nor its forms: registering a request, holding a document, erasing.
        token = browser.cookies["csrf"]
        for action in ("/dpo/requests", f"/dpo/requests/{request_id}/hold", f"/dpo/requests/{request_id}/erase"):
            assert browser.post(action, data={"csrf_token": token, "reason": "x"}).status_code == 404, action
    with Browser(app) as browser:  # (the code of the next time step: the one above is used)
        login = browser.submit("/dpo/login", {"email": admin.email, "password": admin.password,
                                              "otp": admin.totp.at(time.time() + 30)})
        assert login.status_code == 303 and login.headers["location"] == "/agent/stats"
        page = browser.get("/agent/stats")
        assert "Espace d'administration" in page.text and 'href="/dpo/"' not in page.text
    with Session(app.state.services.engine) as db:  # nothing was registered by the refused forms
        assert len(db.exec(select(DataRequest)).all()) == 1


def test_the_dpo_never_sees_the_administrators_pages_nor_the_counter(app) -> None:
    request_id, citizen_id = a_request(app)
    with staff_browser(app, make_staff(app, role="dpo")) as browser:
        assert statuses(browser, DPO_PAGES[:3], request_id, citizen_id) == dict.fromkeys(DPO_PAGES[:3], 200)
        assert set(statuses(browser, ADMIN_PAGES, request_id, citizen_id).values()) == {404}
        assert set(statuses(browser, COUNTER_PAGES, request_id, citizen_id).values()) == {404}


def test_an_agent_sees_neither_the_register_nor_the_statistics(app) -> None:
    request_id, citizen_id = a_request(app)
    with staff_browser(app, make_staff(app, role="agent")) as browser:
        assert browser.get("/agent/").status_code == 200
        assert set(statuses(browser, DPO_PAGES + ADMIN_PAGES, request_id, citizen_id).values()) == {404}


# ---- the operator's command line: --as names the staff member who acts -----------------------------------------

VAULT = [sys.executable, "-m", "vault.cli"]


@pytest.fixture
def env(database_url: str, tmp_path: Path, engine) -> dict[str, str]:
    return {**os.environ, "VAULT_DATABASE_URL": database_url, "VAULT_DATA_DIR": str(tmp_path / "var"),
            "VAULT_ARGON2_MEMORY_KIB": "8192", "VAULT_ARGON2_TIME_COST": "1"}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VAULT, *args, "--json"], capture_output=True, text=True, env=env, timeout=120)


def test_cli_commands_check_the_role_of_the_staff_member_they_act_for(app, env: dict[str, str], engine) -> None:
    dpo, admin = make_staff(app, role="dpo"), make_staff(app, role="admin")
    citizen = make_citizen(app)
    out = str(Path(env["VAULT_DATA_DIR"]).parent / "export.zip")

    # The DPO's commands refuse an administrator, and do nothing.
    refused = run(["gdpr", "export", "--citizen", str(citizen.id), "--out", out, "--as", admin.email], env)
    assert refused.returncode == 2 and "DPO" in json.loads(refused.stdout)["fields"]["as"]
    assert not Path(out).exists()
    unknown = run(["gdpr", "erase", "--citizen", str(citizen.id), "--reason", "x", "--as", "nobody@ville.example.fr"],
                  env)
    assert unknown.returncode == 2 and "no active staff account" in json.loads(unknown.stdout)["fields"]["as"]
    done = run(["gdpr", "export", "--citizen", str(citizen.id), "--out", out, "--as", dpo.email], env)
    assert done.returncode == 0, done.stdout + done.stderr

    # The administrators' commands refuse the DPO.
    refused = run(["staff", "create", "--email", "agent@ville.example.fr", "--role", "agent", "--service", "Accueil",
                   "--as", dpo.email], env)
    assert refused.returncode == 2 and "administrator" in json.loads(refused.stdout)["fields"]["as"]
    refused = run(["client", "create", "--name", "Cantine", "--redirect-uri", "https://cantine.example.fr/cb",
                   "--as", dpo.email], env)
    assert refused.returncode == 2
    assert json.loads(run(["client", "list"], env).stdout) == []
    created = run(["staff", "create", "--email", "agent@ville.example.fr", "--role", "agent", "--service", "Accueil",
                   "--as", admin.email], env)
    assert created.returncode == 0, created.stdout + created.stderr
    client = run(["client", "create", "--name", "Cantine", "--redirect-uri", "https://cantine.example.fr/cb",
                  "--as", admin.email], env)
    assert client.returncode == 0, client.stdout + client.stderr

    with Session(engine) as db:  # the audit log names who acted, and from which system account
        actors = {entry.action: entry.actor for entry in db.exec(select(AuditEntry))}
    user = pwd.getpwuid(os.getuid()).pw_name
    assert actors["staff.created"] == actors["client.created"] == f"cli:{user} as staff:{admin.id}"
    assert actors["export"] == f"cli:{user} as staff:{dpo.id}"


def test_as_names_the_operating_system_account_in_the_audit_log(app, env: dict[str, str], engine) -> None:
    """``--as`` asserts a role, it proves nothing: whoever typed it is named by the system account
    that ran the command, in the audit log."""
    env = {k: v for k, v in env.items() if k != "SUDO_USER"}
    user = pwd.getpwuid(os.getuid()).pw_name
    dpo = make_staff(app, role="dpo", name="Camille Délégué")
    citizen = make_citizen(app)
    erased = run(["gdpr", "erase", "--citizen", str(citizen.id), "--reason", "demande", "--as", dpo.email], env)
    assert erased.returncode == 0, erased.stdout + erased.stderr
    created = run(["staff", "create", "--email", "a2@ville.example.fr", "--role", "admin"], env)
    assert created.returncode == 0, created.stdout + created.stderr
    with Session(engine) as db:
        actors = {entry.action: entry.actor for entry in db.exec(select(AuditEntry))}
    assert actors["erasure.completed"] == f"cli:{user} as staff:{dpo.id}"
    assert actors["staff.created"] == f"cli:{user}"  # the operator, without --as


def test_in_production_every_command_of_a_role_needs_as(app, env: dict[str, str], engine, data_dir: Path) -> None:
    """In production each command bound to a role names who acts (``--as``): without it, exit 2 and
    nothing done; the first administrator alone is created by the operator, as nobody could name one."""
    keyring = data_dir / "keyring.json"
    assert keyring.exists()
    production = {**env, "VAULT_ENV": "production", "VAULT_ISSUER": app.state.settings.issuer.replace("http:", "https:"),
                  "VAULT_STORAGE_BACKEND": "fs", "VAULT_ANTIVIRUS": "off", "VAULT_KEYRING_FILE": str(keyring),
                  "VAULT_JOBS": "worker"}
    citizen = make_citizen(app)
    for command in (["client", "list"], ["staff", "create", "--email", "dpo@ville.example.fr", "--role", "dpo"]):
        alone = run(command, production)  # no administrator yet: only the first one may be made without --as
        assert alone.returncode == 2 and "--as" in json.loads(alone.stdout)["detail"], (command, alone.stdout)
    first = run(["staff", "create", "--email", "premier@ville.example.fr", "--role", "admin"], production)
    assert first.returncode == 0, first.stdout + first.stderr  # no administrator yet: the operator makes the first
    admin = make_staff(app, role="admin")
    dpo = make_staff(app, role="dpo")
    out = str(data_dir.parent / "export.zip")
    role_bound = {
        "dpo": [["gdpr", "export", "--citizen", str(citizen.id), "--out", out],
                ["gdpr", "hold", "--document", str(uuid.uuid4()), "--reason", "x"],
                ["gdpr", "release", "--document", str(uuid.uuid4())],
                ["gdpr", "erase", "--citizen", str(citizen.id), "--reason", "x"],
                ["citizen", "list"]],
        "admin": [["staff", "create", "--email", "second@ville.example.fr", "--role", "admin"],
                  ["client", "list"],
                  ["client", "create", "--name", "Cantine", "--redirect-uri", "https://cantine.example.fr/cb"],
                  ["client", "rotate-secret", "nope"], ["client", "disable", "nope"],
                  ["citizen", "create", "--email", "new@example.org", "--given-name", "Marie", "--family-name", "Curie",
                   "--birthdate", "1990-01-01", "--gender", "female", "--birthplace", "75056"]],
    }
    with Session(engine) as db:
        before = len(db.exec(select(AuditEntry)).all())
    for role, commands in role_bound.items():
        other = dpo if role == "admin" else admin
        for command in commands:
            bare = run(command, production)
            assert bare.returncode == 2 and "--as" in json.loads(bare.stdout)["detail"], (command, bare.stdout)
            wrong = run([*command, "--as", other.email], production)
            assert wrong.returncode == 2 and "as" in json.loads(wrong.stdout)["fields"], (command, wrong.stdout)
    assert not Path(out).exists()
    with Session(engine) as db:
        assert len(db.exec(select(AuditEntry)).all()) == before  # nothing was done
        assert db.get(Citizen, citizen.id) is not None  # not erased
        assert db.exec(select(Citizen).where(Citizen.email == "new@example.org")).first() is None
    listed = run(["citizen", "list", "--as", dpo.email], production)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert citizen.email in listed.stdout
    created = run(["citizen", "create", "--email", "new@example.org", "--given-name", "Marie", "--family-name", "Curie",
                   "--birthdate", "1990-01-01", "--gender", "female", "--birthplace", "75056", "--as", admin.email],
                  production)
    assert created.returncode == 0, created.stdout + created.stderr
    with Session(engine) as db:
        entries = list(db.exec(select(AuditEntry).order_by(col(AuditEntry.id))))  # the trail's order
        assert [e.action for e in entries][-2:] == ["citizens.listed", "citizen.created"]
        assert entries[-1].target.startswith("subject:")  # the trail names nobody in clear
        assert json.loads(created.stdout)["id"] not in entries[-1].target
