"""The `vault` command, run as an operator runs it (a real process)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

VAULT = [sys.executable, "-m", "vault.cli"]


def run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VAULT, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)


def run_ok(args: list[str], env: dict[str, str], stdin: str = ""):
    """Run a command that must succeed; its JSON output (a failure shows the command's stderr)."""
    done = run(args, env, stdin)
    assert done.returncode == 0, f"vault {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return json.loads(done.stdout)


@pytest.fixture
def env(database_url: str, tmp_path: Path, engine) -> dict[str, str]:
    return {**os.environ, "VAULT_DATABASE_URL": database_url, "VAULT_DATA_DIR": str(tmp_path / "var"),
            "VAULT_ARGON2_MEMORY_KIB": "8192", "VAULT_ARGON2_TIME_COST": "1", "VAULT_KEYRING_RELOAD_SECONDS": "0.2"}


IDENTITY_ARGS = ["--given-name", "Paul Louis", "--family-name", "Durand", "--birthdate", "1975-11-02",
                 "--gender", "male", "--birthplace", "33063", "--birthcountry", "99100"]


def test_citizen_create_and_list_print_json_only(env: dict[str, str]) -> None:
    created = run(["citizen", "create", "--email", "Paul@Example.org", *IDENTITY_ARGS, "--password-stdin",
                   "--verified", "--json"], env, stdin="une phrase de passe solide\n")
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert body["email"] == "paul@example.org" and body["email_verified"] is True
    assert body["given_name"] == "Paul Louis" and "password" not in body

    listed = run(["citizen", "list", "--json"], env)
    assert listed.returncode == 0
    assert [c["email"] for c in json.loads(listed.stdout)] == ["paul@example.org"]


def test_citizen_create_generates_a_password_when_none_is_given(env: dict[str, str]) -> None:
    created = run(["citizen", "create", "--email", "gen@example.org", *IDENTITY_ARGS, "--json"], env)
    assert created.returncode == 0, created.stderr
    assert len(json.loads(created.stdout)["password"]) >= 20


def test_citizen_create_refuses_bad_input_and_duplicates(env: dict[str, str]) -> None:
    bad = run(["citizen", "create", "--email", "x@example.org", "--given-name", "X", "--family-name", "Y",
               "--birthdate", "2001-02-29", "--gender", "f", "--password-stdin", "--json"], env, stdin="short\n")
    assert bad.returncode == 2
    error = json.loads(bad.stdout)
    assert error["error"] == "invalid_input"
    assert set(error["fields"]) == {"birthdate", "gender", "password", "birthplace"}

    args = ["citizen", "create", "--email", "dup@example.org", *IDENTITY_ARGS, "--json"]
    assert run(args, env).returncode == 0
    duplicate = run(args, env)
    assert duplicate.returncode == 2 and "existe déjà" in json.loads(duplicate.stdout)["fields"]["email"]
    assert len(run_ok(["citizen", "list", "--json"], env)) == 1


def test_commands_refuse_an_unmigrated_database(tmp_path: Path) -> None:
    env = {**os.environ, "VAULT_DATA_DIR": str(tmp_path)}
    answer = run(["citizen", "list", "--json"], env)
    assert answer.returncode == 2 and json.loads(answer.stdout)["error"] == "migrations_pending"


def test_commands_refuse_a_configuration_that_cannot_run(env: dict[str, str]) -> None:
    """A broken setting is a clear error (exit 2, config_error), never a traceback, whichever command."""
    broken = {**env, "VAULT_ANTIVIRUS": "clamd", "VAULT_CLAMD_ADDRESS": "nonsense"}
    done = run(["citizen", "list", "--json"], broken)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    body = json.loads(done.stdout)
    assert body["error"] == "config_error" and "VAULT_CLAMD_ADDRESS" in body["detail"]


def test_db_upgrade_checks_the_configuration_before_migrating(tmp_path: Path) -> None:
    """In production, a configuration that cannot run stops `vault db upgrade` before any migration:
    never a database migrated but left without its signing keys."""
    database = tmp_path / "vault.sqlite3"
    env = {**os.environ, "VAULT_ENV": "production", "VAULT_DATA_DIR": str(tmp_path),
           "VAULT_DATABASE_URL": f"sqlite:///{database}", "VAULT_ISSUER": "https://vault.example.fr"}
    answer = run(["db", "upgrade"], env)
    assert answer.returncode == 2 and "VAULT_STORAGE_BACKEND" in answer.stderr
    assert not database.exists() or database.stat().st_size == 0


def test_production_profile_refuses_to_serve_on_defaults(tmp_path: Path) -> None:
    env = {**os.environ, "VAULT_ENV": "production", "VAULT_DATA_DIR": str(tmp_path)}
    answer = run(["serve", "--port", "1"], env)
    assert answer.returncode == 2
    for variable in ("VAULT_ISSUER", "VAULT_DATABASE_URL", "VAULT_STORAGE_BACKEND", "VAULT_ANTIVIRUS",
                     "VAULT_KEYRING_FILE"):
        assert variable in answer.stderr
    assert not (tmp_path / "keyring.json").exists()
    assert run(["demo", "seed", "--json"], env).returncode == 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_on_embedded_defaults(tmp_path: Path) -> None:
    """Command 1 in small: migrate, seed the demo citizen, serve; the home page and /readyz answer."""
    env = {**os.environ, "VAULT_DATA_DIR": str(tmp_path / "var")}
    assert run(["db", "upgrade"], env).returncode == 0
    seeded = run(["demo", "seed", "--json"], env)
    credentials = json.loads(seeded.stdout)
    port = free_port()
    server = subprocess.Popen([*VAULT, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60  # generous: a busy CI machine starts Python slowly
        while True:
            assert server.poll() is None, f"the server stopped: {server.communicate(timeout=5)[0][-3000:]}"
            assert time.monotonic() < deadline, "the server did not answer within 60 s"
            try:
                ready = httpx.get(f"{base}/readyz")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert ready.status_code == 200
        assert "Votre espace citoyen" in httpx.get(f"{base}/").text
        with httpx.Client(base_url=base) as browser:
            page = browser.get("/login")
            token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
            login = browser.post("/login", data={"email": credentials["email"], "password": credentials["password"],
                                                 "csrf_token": token})
            assert login.status_code == 303 and login.headers["location"] == "/account"
    finally:
        server.terminate()
        try:
            output, _ = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    # JSON logs, with a request id, and never the password.
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(entry.get("path") == "/login" and entry.get("request_id") for entry in lines)
    assert credentials["password"] not in output


def test_client_commands(env: dict[str, str], engine) -> None:
    from sqlmodel import Session

    from vault.oidc.models import OAuthClient

    created = run(["client", "create", "--name", "Portail des démarches", "--redirect-uri", "https://portail.example.fr/cb",
                   "--redirect-uri", "https://portail.example.fr/cb2", "--post-logout-redirect-uri",
                   "https://portail.example.fr/", "--scope", "openid identite_pivot email", "--auth-method",
                   "client_secret_post", "--sector", "portail", "--userinfo-signed", "--json"], env)
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    # 64 hex digits like FranceConnect's: an id starting with '-' would read as an option below.
    assert re.fullmatch(r"[0-9a-f]{64}", body["client_id"])
    assert body["redirect_uris"] == ["https://portail.example.fr/cb", "https://portail.example.fr/cb2"]
    assert body["userinfo_signed_response_alg"] == "ES256" and body["sector"] == "portail"
    secret = body["client_secret"]
    with Session(engine) as db:
        stored = db.get(OAuthClient, body["client_id"])
        assert stored.secret_hash and secret not in stored.secret_hash  # only a hash is kept

    listed = run_ok(["client", "list", "--json"], env)
    assert [c["client_id"] for c in listed] == [body["client_id"]] and "client_secret" not in listed[0]

    rotated = run_ok(["client", "rotate-secret", body["client_id"], "--json"], env)
    assert rotated["client_secret"] != secret
    disabled = run_ok(["client", "disable", body["client_id"], "--json"], env)
    assert disabled["disabled"] is True
    missing = run(["client", "disable", "nope", "--json"], env)
    assert missing.returncode == 2 and json.loads(missing.stdout) == {"error": "not_found",
                                                                      "detail": "no app with client_id nope"}

    # An id from an older version that starts with '-' is still reachable, after '--'.
    with Session(engine) as db:
        db.add(OAuthClient(client_id="-Legacy_id", name="Ancienne appli", secret_hash=stored.secret_hash,
                                redirect_uris=["https://old.example.fr/cb"], post_logout_redirect_uris=[],
                                scope="openid", auth_method="client_secret_post", sector="old"))
        db.commit()
    assert run_ok(["client", "rotate-secret", "--json", "--", "-Legacy_id"], env)["client_id"] == "-Legacy_id"
    assert run_ok(["client", "disable", "--json", "--", "-Legacy_id"], env)["disabled"] is True


def test_client_create_refuses_bad_input(env: dict[str, str]) -> None:
    bad = run(["client", "create", "--name", "", "--redirect-uri", "portail.example.fr/cb", "--scope", "profile",
               "--auth-method", "implicit", "--json"], env)
    assert bad.returncode == 2
    fields = json.loads(bad.stdout)["fields"]
    assert set(fields) == {"name", "redirect-uri", "scope", "auth-method"}
    no_keys = run(["client", "create", "--name", "X", "--redirect-uri", "https://x.example.fr/cb",
                   "--auth-method", "private_key_jwt", "--json"], env)
    assert "jwks" in json.loads(no_keys.stdout)["fields"]
    assert run_ok(["client", "list", "--json"], env) == []


def test_keys_rotate(env: dict[str, str]) -> None:
    """The new keys sign once every cached /jwks holds them; a second rotation meanwhile is refused
    unless forced with --now (an emergency)."""
    from datetime import UTC, datetime

    first = run_ok(["keys", "rotate", "--json"], env)
    assert len(first["active"]) == 2
    assert (datetime.fromisoformat(first["active_from"]) - datetime.now(UTC)).total_seconds() > 300
    refused = run(["keys", "rotate", "--json"], env)
    assert refused.returncode == 2 and json.loads(refused.stdout)["error"] == "rotation_pending"
    second = run_ok(["keys", "rotate", "--now", "--json"], env)
    assert not set(first["active"]) & set(second["active"])
    assert (datetime.fromisoformat(second["active_from"]) - datetime.now(UTC)).total_seconds() <= 0


def test_storage_reconcile_and_kek_rotation(env: dict[str, str], tmp_path: Path) -> None:
    blobs = Path(env["VAULT_DATA_DIR"]) / "blobs" / "or"
    blobs.mkdir(parents=True)
    orphan = blobs / "orphan-left-by-a-crash"
    orphan.write_bytes(b"x")
    old = time.time() - 7200
    os.utime(orphan, (old, old))
    dry = run_ok(["storage", "reconcile", "--dry-run", "--json"], env)
    assert dry["orphans_removed"] == ["orphan-left-by-a-crash"] and orphan.exists()
    done = run_ok(["storage", "reconcile", "--json"], env)
    assert done["orphans_removed"] == ["orphan-left-by-a-crash"] and not orphan.exists()

    run(["db", "upgrade"], env)  # creates the signing keys and the pairwise secret (wrapped by the KEK)
    rotated = run(["keys", "rotate-kek", "--json"], env)
    assert rotated.returncode == 0, rotated.stderr
    body = json.loads(rotated.stdout)
    assert body["kek_version"] == 2 and body["service_keys_rewrapped"] >= 3 and body["retired"] == [1]
    keyring = json.loads((Path(env["VAULT_DATA_DIR"]) / "keyring.json").read_text())
    assert keyring["active"] == 2 and [k["version"] for k in keyring["keys"]] == [2]


def test_kek_rotation_rewraps_citizen_keys(env: dict[str, str], database_url: str, engine) -> None:
    """A citizen's key made before `vault keys rotate-kek` is re-wrapped by the command and still opens."""
    from sqlmodel import Session

    from tests.conftest import make_settings
    from vault.services import build_services

    created = run_ok(["citizen", "create", "--email", "kek@example.org", *IDENTITY_ARGS, "--json"], env)
    settings = make_settings(Path(env["VAULT_DATA_DIR"]), database_url)
    with Session(engine) as db:
        key = build_services(settings, engine=engine).documents.citizen_key(db, uuid.UUID(created["id"]))
        db.commit()
    body = run_ok(["keys", "rotate-kek", "--json"], env)
    assert body["kek_version"] == 2 and body["citizen_keys_rewrapped"] == 1
    with Session(engine) as db:  # a fresh process's view: the keyring file now holds version 2
        assert build_services(settings, engine=engine).documents.citizen_key(db, uuid.UUID(created["id"])) == key


def test_gdpr_commands(env: dict[str, str], tmp_path: Path) -> None:
    import zipfile

    staff = run(["staff", "create", "--email", "dpo@ville.example.fr", "--role", "dpo", "--name", "Camille",
                 "--password-stdin", "--json"], env, stdin="la protection des données avant tout\n")
    assert staff.returncode == 0, staff.stderr
    assert json.loads(staff.stdout)["otpauth_uri"].startswith("otpauth://totp/")
    bad_role = run(["staff", "create", "--email", "x@ville.example.fr", "--role", "king", "--json"], env)
    assert bad_role.returncode == 2 and "role" in json.loads(bad_role.stdout)["fields"]

    created = json.loads(run(["citizen", "create", "--email", "rgpd@example.org", *IDENTITY_ARGS, "--verified",
                              "--json"], env).stdout)
    out = tmp_path / "export.zip"
    exported = run(["gdpr", "export", "--citizen", created["id"], "--out", str(out), "--json"], env)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["file"] == str(out) and (out.stat().st_mode & 0o777) == 0o600
    with zipfile.ZipFile(out) as zf:
        assert json.loads(zf.read("compte.json"))["email"] == "rgpd@example.org"

    erased = run(["gdpr", "erase", "--citizen", created["id"], "--reason", "demande au guichet", "--json"], env)
    assert erased.returncode == 0, erased.stderr
    certificate = json.loads(erased.stdout)["certificate"]
    again = run(["gdpr", "erase", "--citizen", created["id"], "--reason", "bis", "--json"], env)
    assert json.loads(again.stdout)["certificate"] == certificate  # the first certificate, again
    after = run(["gdpr", "export", "--citizen", created["id"], "--out", str(tmp_path / "x.zip"), "--json"], env)
    assert after.returncode == 2 and json.loads(after.stdout)["error"] == "erased"
    assert not (tmp_path / "x.zip").exists() and not list(tmp_path.glob(".x.zip.part"))
    unknown = run(["gdpr", "erase", "--citizen", "00000000-0000-0000-0000-000000000000", "--reason", "x", "--json"], env)
    assert unknown.returncode == 2 and json.loads(unknown.stdout)["error"] == "not_found"
    assert run(["gdpr", "erase", "--citizen", "not-an-id", "--reason", "x"], env).returncode == 2

    missing = run(["gdpr", "hold", "--document", "00000000-0000-0000-0000-000000000000", "--reason", "PLU", "--json"],
                  env)
    assert missing.returncode == 2 and json.loads(missing.stdout)["error"] == "not_found"
    bad_id = run(["gdpr", "release", "--document", "nope", "--json"], env)
    assert bad_id.returncode == 2 and json.loads(bad_id.stdout)["error"] == "invalid_input"

    verified = run(["audit", "verify", "--json"], env)
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True
    assert run_ok(["retention", "run", "--dry-run", "--json"], env)["accounts_erased"] == []


def test_audit_verify_fails_on_an_edited_entry(env: dict[str, str], engine) -> None:
    from sqlalchemy import text

    run(["staff", "create", "--email", "a@ville.example.fr", "--role", "admin", "--json"], env)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET action = 'rewritten'"))
    broken = run(["audit", "verify"], env)
    assert broken.returncode == 1 and "BROKEN" in broken.stderr


@pytest.mark.parametrize(("args", "problem"), [
    (["--profile", "fc-v3"], "fc-v3"),
    (["--profile", "fc-v1", "--userinfo-signed"], "userinfo"),
    (["--profile", "fc-v2", "--auth-method", "client_secret_basic"], "client_secret_post"),
    (["--profile", "fc-v2", "--scope", "openid rnipp_given_name"], "rnipp_given_name"),
])
def test_client_create_refuses_a_bad_profile(env: dict[str, str], args: list[str], problem: str) -> None:
    done = run(["client", "create", "--name", "Cantine", "--redirect-uri", "https://cantine.example.fr/cb", *args],
               env)
    assert done.returncode == 2 and problem in done.stderr + done.stdout
    assert run_ok(["client", "list", "--json"], env) == []


def test_client_create_registers_and_lists_a_profile(env: dict[str, str]) -> None:
    body = run_ok(["client", "create", "--name", "Cantine", "--json", "--redirect-uri", "https://cantine.example.fr/cb",
                   "--profile", "fc-v2", "--scope", "openid identite_pivot"], env)
    assert body["profile"] == "fc-v2" and body["auth_method"] == "client_secret_post"
    standard = run_ok(["client", "create", "--name", "Portail", "--json", "--redirect-uri", "https://portail.example.fr/cb"],
                      env)
    assert standard["profile"] == "oidc" and standard["auth_method"] == "client_secret_basic"
    listed = run(["client", "list"], env).stdout
    assert "Cantine  (fc-v2, client_secret_post)" in listed and "Portail  (oidc, client_secret_basic)" in listed


def test_staff_create_makes_a_counter_agent_with_its_service(env: dict[str, str]) -> None:
    agent = run_ok(["staff", "create", "--email", "Agent.Cli@Ville.example.fr", "--role", "agent", "--name",
                    "Dominique Accueil", "--service", "  Mairie   annexe Nord ", "--password-stdin", "--json"],
                   env, stdin="un mot de passe assez long\n")
    assert agent["role"] == "agent" and agent["service"] == "Mairie annexe Nord"  # spaces tidied
    assert agent["otpauth_uri"].startswith("otpauth://totp/") and "guichet" in agent["otpauth_uri"]
    missing = run(["staff", "create", "--email", "b@ville.example.fr", "--role", "agent", "--password-stdin"],
                  env, stdin="un mot de passe assez long\n")
    assert missing.returncode != 0 and "service" in missing.stderr + missing.stdout


def test_worker_delivers_the_mail_the_app_queued(env: dict[str, str], database_url: str, engine, tmp_path: Path) -> None:
    """`vault worker --once` (VAULT_JOBS=worker): the page answered, the mail waited in the outbox
    table; one pass of the jobs delivers it (here to the development folder), and only once."""
    from tests.conftest import make_settings
    from tests.support import Browser, Outbox
    from vault.app import create_app

    app = create_app(make_settings(tmp_path / "var", database_url), engine=engine)
    with Browser(app) as browser:
        assert browser.register("worker@example.org").status_code == 200
    folder = Outbox(tmp_path / "var" / "outbox")  # without the engine: reads the folder only
    assert folder.all() == []
    assert run_ok(["worker", "--once", "--json"], env) == {
        "send_mail": {"sent": 1, "retried": 0, "failed": 0, "errors": [], "purged": 0},
        "finish_erasures": {"erasures_finished": 0}, "validity_alerts": {"validity_alerts": 0}}
    [mail] = folder.all()
    assert mail.to == "worker@example.org" and "/verify-email?token=" in mail.body
    assert run_ok(["worker", "--once", "--json"], env)["send_mail"]["sent"] == 0


def test_worker_runs_until_stopped_and_logs_no_address(env: dict[str, str], database_url: str, engine,
                                                       tmp_path: Path) -> None:
    """`vault worker` as an operator runs it: it delivers what the app queues while it runs, logs
    JSON lines naming no address and no link, and stops cleanly on SIGTERM."""
    import signal

    from tests.conftest import make_settings
    from tests.support import Browser, Outbox
    from vault.app import create_app

    worker = subprocess.Popen([*VAULT, "worker"], env={**env, "VAULT_MAIL_POLL_SECONDS": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        app = create_app(make_settings(tmp_path / "var", database_url), engine=engine)
        with Browser(app) as browser:
            assert browser.register("looping@example.org").status_code == 200
        folder = Outbox(tmp_path / "var" / "outbox")
        deadline = time.monotonic() + 60
        while not folder.all():
            assert worker.poll() is None, worker.communicate(timeout=5)[0][-3000:]
            assert time.monotonic() < deadline, "the worker delivered nothing within 60 s"
            time.sleep(0.2)
        [mail] = folder.all()
        token = mail.body.split("token=")[1].split()[0]
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(entry.get("msg") == "mail written to the outbox" for entry in lines)
    assert "looping@example.org" not in output and token not in output
