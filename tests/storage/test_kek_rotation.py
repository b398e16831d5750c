"""KEK rotation under faults, on the real services (PostgreSQL or SQLite, SeaweedFS, clamd) and the
real `vault` command: interrupted at every step and run again, with two replicas serving uploads
and downloads while it runs. Nothing may be lost, and no request may fail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from typing import Any

import pytest
from sqlmodel import Session

from tests.factories import CitizenData, logged_in, make_citizen, make_oidc_app, make_staff, pdf, upload
from tests.oidc.oidc_support import authorize, exchange, verify_id_token
from tests.support import Browser
from vault.app import create_app
from vault.crypto.rotation import Progress, settle_delay
from vault.settings import KEYRING_RELOAD_MAX_SECONDS, Settings

VAULT = [sys.executable, "-m", "vault.cli"]
SETTLE = 2 * KEYRING_RELOAD_MAX_SECONDS + 1  # after an activation, before a retirement


@pytest.fixture
def kek_settings(vault_settings: Settings) -> Settings:
    return vault_settings.model_copy(update={"keyring_reload_seconds": 0.2})


@pytest.fixture
def env(kek_settings: Settings) -> dict[str, str]:
    """The environment of an operator's shell on the same database and keyring as the replicas."""
    return {**os.environ, "VAULT_DATABASE_URL": kek_settings.database_url or "",
            "VAULT_DATA_DIR": str(kek_settings.data_dir), "VAULT_KEYRING_RELOAD_SECONDS": "0.2",
            "VAULT_ARGON2_MEMORY_KIB": "8192", "VAULT_ARGON2_TIME_COST": "1"}


def vault(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run([*VAULT, *args, "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, f"vault {' '.join(args)}: {done.stdout} {done.stderr}"
    return json.loads(done.stdout)


def by_version(app: Any) -> dict[int, int]:
    """How many values are wrapped under each KEK version (what `vault keys kek status` counts)."""
    found: dict[int, int] = {}
    for counts in app.state.services.kek.census().values():
        for version, n in counts.items():
            found[version] = found.get(version, 0) + n
    return found


def keyring(settings: Settings) -> dict[str, Any]:
    return json.loads((settings.data_dir / "keyring.json").read_text())


class Vault:
    """Citizens with documents on one replica, each logged in on every replica given."""

    def __init__(self, *apps: Any) -> None:
        self.apps = apps
        self.owners: list[tuple[list[Browser], dict[str, Any], bytes]] = []
        self.citizens: list[CitizenData] = []

    def add(self, uploader: int = 0) -> tuple[list[Browser], dict[str, Any], bytes]:
        """A new citizen (their key is made by ``uploader``'s replica at the first upload)."""
        citizen = make_citizen(self.apps[0])
        self.citizens.append(citizen)
        browsers = [logged_in(Browser(app).__enter__(), citizen) for app in self.apps]
        content = pdf()
        answer = upload(browsers[uploader], content)
        assert answer.status_code == 201, answer.text
        self.owners.append((browsers, answer.json(), content))
        return self.owners[-1]

    def read_all(self) -> list[int]:
        """Every document, downloaded through every replica: the status codes that were not 200."""
        failures = []
        for browsers, doc, content in self.owners:
            for browser in browsers:
                answer = browser.get(f"/api/v1/documents/{doc['id']}/content")
                if answer.status_code != 200 or answer.content != content:
                    failures.append(answer.status_code)
        return failures

    def close(self) -> None:
        for browsers, _, _ in self.owners:
            for browser in browsers:
                browser.__exit__(None, None, None)


def test_two_replicas_serve_every_citizen_during_a_kek_rotation(kek_settings: Settings, engine, env) -> None:
    """Replica A and replica B run on one database and one keyring file while the operator runs
    `vault keys rotate-kek`: citizens whose keys one replica wrapped under the new KEK upload and
    download through the other without a single failure, during the rotation and after it."""
    a, b = create_app(kek_settings, engine=engine), create_app(kek_settings, engine=engine)
    replicas = Vault(a, b)
    oidc_app = make_oidc_app(engine, scope="openid profile")
    try:
        for i in range(4):
            replicas.add(uploader=i % 2)
        rotation = subprocess.Popen([*VAULT, "keys", "rotate-kek", "--batch-size", "2", "--json"], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        failures: list[int] = []
        rounds = 0
        while rotation.poll() is None or rounds < 2:
            if rotation.poll() is not None:
                rounds += 1
            browsers, doc, content = replicas.add(uploader=rounds % 2)  # a key wrapped by one replica...
            for browser in browsers:  # ...opened by both
                answer = browser.get(f"/api/v1/documents/{doc['id']}/content")
                if answer.status_code != 200 or answer.content != content:
                    failures.append(answer.status_code)
            failures += replicas.read_all()
            failures += _login_with_totp_and_exchange_a_code(replicas.apps, oidc_app)
        out, err = rotation.communicate()
        assert rotation.returncode == 0, err
        assert failures == []
        body = json.loads(out)
        assert body["kek_version"] == 2 and body["retired"] == [1] and body["failed"] == {}
        # After the rotation: everything is under version 2, the only one left, and still opens.
        assert set(by_version(a)) == {2}
        assert keyring(kek_settings)["active"] == 2
        assert replicas.read_all() == []
        # Version 2 started to wrap only once every replica could have loaded it (the settle delay
        # after it was added), as the rotation's order has it: added, loaded, then active.
        document = keyring(kek_settings)
        added = datetime.fromisoformat(next(k["created"] for k in document["keys"] if k["version"] == 2))
        activated = datetime.fromisoformat(document["activated_at"])
        assert activated - added >= settle_delay(a.state.services.keys), (added, activated)
    finally:
        replicas.close()


def _login_with_totp_and_exchange_a_code(apps: tuple[Any, ...], oidc_app: Any) -> list[int]:
    """A citizen enrolled in TOTP on one replica (their seed wrapped by the KEK it holds) logs in
    on each replica, lets the app in and the app exchanges the code (an ID token signed with a key
    the KEK wraps, checked against the other replica's /jwks): the statuses that were not the
    expected ones."""
    failures = []
    for index, app in enumerate(apps):
        citizen = make_citizen(apps[index - 1], totp=True)
        with Browser(app) as browser:
            flow = authorize(browser, oidc_app, email=citizen.email, otp=citizen.totp.now())
            if flow.response.status_code != 303 or "code" not in flow.result:
                failures.append(flow.response.status_code)
                continue
            token = exchange(browser, flow)
            if token.status_code != 200:
                failures.append(token.status_code)
                continue
        with Browser(apps[index - 1]) as other:
            verify_id_token(other, token.json()["id_token"])
    return failures


def test_kek_steps_can_each_be_run_again(kek_settings: Settings, engine, env) -> None:
    app = create_app(kek_settings, engine=engine)
    replica = Vault(app)
    try:
        replica.add()
        assert vault(env, "keys", "kek", "add")["added"] == 2
        again = vault(env, "keys", "kek", "add")  # retried: the version waiting for activation, not another one
        assert again == {"added": 2, "active": 1, "already_added": True}
        assert set(by_version(app)) == {1}  # added is not used
        app.state.services.keys.activate(2)  # `vault keys kek activate 2`, as the command runs it
        refused = subprocess.run([*VAULT, "keys", "kek", "retire", "1", "--json"], capture_output=True, text=True,
                                 env=env, timeout=120)
        assert refused.returncode == 2 and json.loads(refused.stdout)["error"] == "refused"
        assert keyring(kek_settings)["keys"][0]["version"] == 1

        done = vault(env, "keys", "kek", "rewrap", "--batch-size", "1")
        assert done["rewrapped"]["citizen keys"] == 1 and sum(done["remaining"].values()) == 0
        assert set(by_version(app)) == {2}
        time.sleep(SETTLE)  # twice the longest VAULT_KEYRING_RELOAD_SECONDS and a second after the activation
        assert vault(env, "keys", "kek", "retire", "1")["changed"] is True
        assert [k["version"] for k in keyring(kek_settings)["keys"]] == [2]
        status = vault(env, "keys", "kek", "status")  # what the operator checks at the end
        assert status["versions"] == [2] and status["pending"] == [] and set(status["wrapped_by_version"]) == {"2"}
        assert replica.read_all() == []
    finally:
        replica.close()


def _kill_after_first_batch(env: dict[str, str], *args: str) -> None:
    """Run a `vault` command and SIGKILL it once it reported its first committed batch."""
    process = subprocess.Popen([*VAULT, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        if "re-wrapped" in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("interrupted", ["after add", "after activate", "rewrap killed", "rotate-kek killed"])
def test_rotate_kek_interrupted_at_each_step_finishes_when_run_again(
        kek_settings: Settings, engine, env, interrupted: str) -> None:
    vault_app = create_app(kek_settings, engine=engine)
    keys = vault_app.state.services.keys
    replica = Vault(vault_app)
    try:
        for _ in range(3):
            replica.add()
        staff = make_staff(vault_app)
        if interrupted in ("after add", "after activate", "rewrap killed"):
            keys.add_version()  # the steps as `vault keys kek add` and `activate` run them
        if interrupted in ("after activate", "rewrap killed"):
            keys.activate(2)
        if interrupted == "rewrap killed":
            _kill_after_first_batch(env, "keys", "kek", "rewrap", "--batch-size", "1")
        if interrupted == "rotate-kek killed":
            _kill_after_first_batch(env, "keys", "rotate-kek", "--batch-size", "1")
        if "killed" in interrupted:
            half = by_version(vault_app)
            assert half[1] > 0 and half[2] > 0  # killed half-way: some under each version
        assert replica.read_all() == []  # mid-rotation, every document opens

        body = vault(env, "keys", "rotate-kek")  # run again: it finishes that rotation, no other
        assert body["kek_version"] == 2 and body["retired"] == [1]
        assert body["resumed"] is True
        assert [k["version"] for k in keyring(kek_settings)["keys"]] == [2] and set(by_version(vault_app)) == {2}
        assert replica.read_all() == []
        # The TOTP seed of a member of staff went along with the rest.
        with Browser(vault_app) as browser:
            answer = browser.submit("/dpo/login", {"email": staff.email, "password": staff.password,
                                                   "otp": staff.totp.now()})
            assert answer.status_code == 303
    finally:
        replica.close()


class Interrupted(Exception):
    """Raised by the test between two committed batches, as a crash would stop the rewrap."""


def test_rewrap_interrupted_between_batches_loses_no_key(kek_settings: Settings, engine) -> None:
    vault_app = create_app(kek_settings, engine=engine)
    replica = Vault(vault_app)
    try:
        for _ in range(4):
            replica.add()
        citizen_with_totp = make_citizen(vault_app, totp=True)
        services = vault_app.state.services
        keys = services.keys
        keys.activate(keys.add_version())

        def crash(progress: Progress) -> None:
            raise Interrupted

        for _ in range(3):  # three crashes, each after one committed batch
            with pytest.raises(Interrupted):
                services.kek.rewrap(batch_size=1, after_batch=crash)
            assert replica.read_all() == []
        assert services.kek.census()["citizen keys"] == {1: 1, 2: 3}

        progress = services.kek.rewrap(batch_size=2)
        assert progress.total_remaining == 0 and progress.failed == {}
        assert services.kek.in_use(1) == 0
        time.sleep(SETTLE)
        services.kek.check_retirable(1)
        keys.retire(1)
        assert replica.read_all() == []
        with Browser(vault_app) as browser:
            logged_in(browser, citizen_with_totp)
    finally:
        replica.close()


def test_kek_steps_with_a_kms_say_what_to_do(env: dict[str, str], kms, monkeypatch) -> None:
    from tests.crypto.test_kms import new_kms_key

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    kms_env = {**env, "VAULT_KEY_PROVIDER": "aws-kms", "VAULT_KMS_KEY_ID": new_kms_key(kms),
               "VAULT_KMS_ENDPOINT_URL": kms.endpoint_url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    for step in (["add"], ["retire", "1"]):
        done = subprocess.run([*VAULT, "keys", "kek", *step, "--json"], capture_output=True, text=True,
                              env=kms_env, timeout=120)
        assert done.returncode == 2, done.stderr
        answer = json.loads(done.stdout)
        assert answer["error"] == "not_supported" and "VAULT_KMS_KEY_ID" in answer["detail"]


def test_kms_rewrap_moves_everything_to_the_current_key(kek_settings: Settings, engine, kms, monkeypatch) -> None:
    from tests.crypto.test_kms import new_kms_key
    from vault.services import build_services

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    old = kek_settings.model_copy(update={"key_provider": "aws-kms", "kms_key_id": new_kms_key(kms),
                                          "kms_endpoint_url": kms.endpoint_url})
    replica = Vault(create_app(old, engine=engine))
    try:
        replica.add()
        new = old.model_copy(update={"kms_key_id": new_kms_key(kms)})
        services = build_services(new, engine=engine)
        progress = services.kek.rewrap(batch_size=1)
        assert progress.rewrapped["citizen keys"] == 1 and progress.total_remaining == 0
        assert {v for c in services.kek.census().values() for v in c} == {services.keys.active_version}
        _, doc, content = replica.owners[0]
        with Browser(create_app(new, engine=engine)) as browser:  # a replica restarted on the new key
            logged_in(browser, replica.citizens[0])
            assert browser.get(f"/api/v1/documents/{doc['id']}/content").content == content
    finally:
        replica.close()


def test_a_document_kept_under_legal_hold_survives_a_kek_rotation(kek_settings: Settings, engine) -> None:
    """After its owner's erasure a held document's key is wrapped by the KEK itself: the rotation
    moves it too, so retiring the old version does not make the document unreadable."""
    from vault.gdpr.service import Staff
    from vault.storage.models import Document

    dpo = Staff(actor="staff:test", label="DPO de test")
    app = create_app(kek_settings, engine=engine)
    replica = Vault(app)
    try:
        _, doc, content = replica.add()
        services = app.state.services
        with Session(engine) as db:
            services.gdpr.hold(db, document_id=uuid.UUID(doc["id"]), reason="Dossier d'urbanisme", by=dpo)
            db.commit()
        with Session(engine) as db:
            services.gdpr.erase(db, citizen_id=replica.citizens[0].id, reason="demande", by=dpo)
        keys = services.keys
        keys.activate(keys.add_version())
        progress = services.kek.rewrap()
        assert progress.rewrapped["legal-hold document keys"] == 1
        time.sleep(SETTLE)
        services.kek.check_retirable(1)
        keys.retire(1)
        with Session(engine) as db:
            document = db.get(Document, uuid.UUID(doc["id"]))
            assert document is not None and document.owner_id is None
            key = services.documents.document_key(db, document)
            assert b"".join(services.documents.plaintext(document, key)) == content
    finally:
        replica.close()
