"""The local key provider: versioned 256-bit keys, AES-256-GCM wrapping bound to a context."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.factories import logged_in, make_citizen, pdf, upload
from tests.support import Browser
from vault import crypto
from vault.app import create_app
from vault.crypto import (
    DecryptionError,
    KeyProviderError,
    LocalKeyring,
    load_key_provider,
)
from vault.crypto.rotation import settle_delay
from vault.settings import KEYRING_RELOAD_MAX_SECONDS, Settings

NOBODY = 65534


def test_wrap_unwrap_round_trip_and_context_binding(tmp_path: Path) -> None:
    keys = LocalKeyring.create(tmp_path / "keyring.json")
    wrapped = crypto.wrap(keys, b"JBSWY3DPEHPK3PXP", context=b"totp:citizen-1")
    assert b"JBSWY3DPEHPK3PXP" not in wrapped
    assert crypto.unwrap(keys, wrapped, context=b"totp:citizen-1") == b"JBSWY3DPEHPK3PXP"
    # Two wraps of the same secret differ (random nonce).
    assert crypto.wrap(keys, b"same", context=b"c") != crypto.wrap(keys, b"same", context=b"c")
    with pytest.raises(DecryptionError):
        crypto.unwrap(keys, wrapped, context=b"totp:citizen-2")  # moved to another row


@pytest.mark.parametrize("damage", ["flip", "truncate", "relabel", "empty"])
def test_tampered_blobs_fail_with_one_error(tmp_path: Path, damage: str) -> None:
    keys = LocalKeyring.create(tmp_path / "keyring.json")
    blob = bytearray(crypto.wrap(keys, b"secret", context=b"ctx"))
    if damage == "flip":
        blob[-1] ^= 1
    elif damage == "truncate":
        blob = blob[:20]
    elif damage == "relabel":
        blob[2:6] = (2).to_bytes(4, "big")  # claims another KEK version
    else:
        blob = bytearray()
    with pytest.raises(DecryptionError):
        crypto.unwrap(keys, bytes(blob), context=b"ctx")


def test_keyring_file_is_private_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "keyring.json"
    keys = LocalKeyring.create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    wrapped = keys.wrap(b"x", context=b"c")
    assert LocalKeyring.load(path).unwrap(wrapped, context=b"c") == b"x"
    with pytest.raises(FileExistsError):
        LocalKeyring.create(path)  # never overwrites keys


def test_older_key_versions_still_unwrap(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    old = LocalKeyring.create(path)
    wrapped = old.wrap(b"x", context=b"c")
    document = json.loads(path.read_text())
    document["keys"].append({"version": 2, "key": base64.b64encode(os.urandom(32)).decode()})
    document["active"] = 2
    path.write_text(json.dumps(document))
    rotated = LocalKeyring.load(path)
    assert rotated.active_version == 2
    assert rotated.unwrap(wrapped, context=b"c") == b"x"
    assert rotated.wrap(b"y", context=b"c")[2:6] == (2).to_bytes(4, "big")


@pytest.mark.parametrize(
    "content",
    ["not json", '{"active": 1, "keys": []}', '{"active": 1, "keys": [{"version": 1, "key": "c2hvcnQ="}]}'],
)
def test_malformed_keyring_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "keyring.json"
    path.write_text(content)
    with pytest.raises(KeyProviderError):
        LocalKeyring.load(path)


def test_keyring_is_generated_in_development_only(tmp_path: Path) -> None:
    dev = Settings(data_dir=tmp_path / "dev")
    assert isinstance(load_key_provider(dev), LocalKeyring)
    assert (tmp_path / "dev" / "keyring.json").is_file()
    prod = Settings(env="production", data_dir=tmp_path / "prod", keyring_file=tmp_path / "prod" / "k.json")
    with pytest.raises(KeyProviderError, match="does not exist"):
        load_key_provider(prod)
    assert not (tmp_path / "prod" / "k.json").exists()


# ---- rotation steps and replicas sharing one keyring file -----------------------------------------


def test_an_added_version_reaches_other_processes_before_it_wraps(tmp_path: Path) -> None:
    """Two replicas on one keyring file: the operator's `kek add` is loaded by the other without a
    restart, but nobody wraps under it until `kek activate`; the activation reaches it too."""
    path = tmp_path / "keyring.json"
    operator = LocalKeyring.create(path)
    replica = LocalKeyring.load(path)
    replica.reload_seconds = 0.05
    version = operator.add_version()
    assert version == 2 and operator.active_version == 1
    time.sleep(0.1)
    assert replica.versions == [1, 2] and replica.active_version == 1
    assert replica.wrap(b"x", context=b"c")[2:6] == (1).to_bytes(4, "big")
    assert operator.activate(2) and not operator.activate(2)  # run again: nothing to do
    time.sleep(0.1)
    assert replica.wrap(b"x", context=b"c")[2:6] == (2).to_bytes(4, "big")


def test_an_unknown_version_reads_the_keyring_again_before_failing(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    operator = LocalKeyring.create(path)
    replica = LocalKeyring.load(path)
    replica.reload_seconds = 3600  # its periodic look would come much later
    operator.activate(operator.add_version())
    wrapped = operator.wrap(b"a citizen key", context=b"c")  # by a replica restarted since
    assert replica.unwrap(wrapped, context=b"c") == b"a citizen key"
    with pytest.raises(DecryptionError):
        replica.unwrap(wrapped[:2] + (7).to_bytes(4, "big") + wrapped[6:], context=b"c")


def test_keyring_changes_are_atomic_private_and_only_on_success(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    keys = LocalKeyring.create(path)
    keys.add_version()
    before = path.read_bytes()
    with pytest.raises(KeyProviderError, match="not in the keyring"):
        keys.activate(9)
    with pytest.raises(KeyProviderError, match="active version"):
        keys.retire(1)
    assert path.read_bytes() == before and keys.active_version == 1  # a refused step writes nothing
    keys.activate(2)
    assert keys.retire(1) and not keys.retire(1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyring.json", "keyring.json.lock"]  # no temporary file left
    reloaded = LocalKeyring.load(path)
    assert reloaded.versions == [2] and reloaded.active_version == 2 and reloaded.activated_at is not None


def test_a_step_works_from_the_file_not_from_a_stale_memory(tmp_path: Path) -> None:
    """Two operators (or a command and a replica) holding the keyring: each change starts from the
    file as it is now, so one never undoes the other's."""
    path = tmp_path / "keyring.json"
    first, second = LocalKeyring.create(path), LocalKeyring.load(path)
    first.reload_seconds = second.reload_seconds = 3600
    assert first.add_version() == 2
    assert second.add_version() == 3  # not a second version 2 over the first one's
    assert LocalKeyring.load(path).versions == [1, 2, 3]


# ---- a keyring file that cannot be read ----------------------------------------------------------------


def _as_user(uid: int, step: Callable[[], object]) -> None:
    """Run ``step`` with the rights of user ``uid`` (then root's again)."""
    os.setegid(uid)
    os.seteuid(uid)
    try:
        step()
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.mark.parametrize("damage", ["another owner", "malformed", "a directory"])
def test_a_change_never_overwrites_a_keyring_it_cannot_read(tmp_path: Path, damage: str) -> None:
    """The keyring as a command meets it after someone else changed it (`sudo vault keys kek add`
    left it private to root, or it was damaged): the step fails, says so, and writes nothing — a
    version only the file holds would be lost for good otherwise."""
    folder = Path(tempfile.mkdtemp(prefix="keyring-"))  # outside pytest's private tmp (another user must reach it)
    try:
        if os.geteuid() == 0:
            os.chown(folder, NOBODY, NOBODY)  # the service user's folder
        path = folder / "keyring.json"
        ring = LocalKeyring.create(path)
        assert LocalKeyring.load(path).add_version() == 2  # the file now holds a version 2 ...
        if damage == "another owner":
            if os.geteuid() != 0:
                pytest.skip("needs root to play two users")
            os.chown(folder / "keyring.json.lock", NOBODY, NOBODY)
            before = path.read_bytes()  # root's, 0600: the service user may rename over it, not read it
            with pytest.raises(KeyProviderError, match=r"unreadable.*nothing was changed"):
                _as_user(NOBODY, ring.add_version)  # its memory holds version 1 only
        else:
            if damage == "malformed":
                path.write_text('{"active": 2, "keys": [')
            else:
                path.unlink()
                path.mkdir()
            before = path.read_bytes() if path.is_file() else b""
            with pytest.raises(KeyProviderError, match="nothing was changed"):
                ring.add_version()  # its memory holds version 1 only
            with pytest.raises(KeyProviderError, match="nothing was changed"):
                ring.activate(1)
        assert (path.read_bytes() if path.is_file() else b"") == before
        assert sorted(p.name for p in folder.iterdir()) == ["keyring.json", "keyring.json.lock"]
    finally:
        shutil.rmtree(folder)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_change_run_as_root_keeps_the_keyring_owner(tmp_path: Path) -> None:
    """`sudo vault keys kek add` on the service user's keyring: the service can still read it."""
    path = tmp_path / "keyring.json"
    LocalKeyring.create(path)
    os.chown(path, NOBODY, NOBODY)
    keys = LocalKeyring.load(path)
    keys.activate(keys.add_version())
    assert (path.stat().st_uid, path.stat().st_gid) == (NOBODY, NOBODY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert LocalKeyring.load(path).versions == [1, 2]


def test_a_replica_that_cannot_read_the_changed_keyring_stops_wrapping(tmp_path: Path) -> None:
    """A replica that cannot read the keyring after a change must not go on wrapping under the
    version it holds (it may be retired meanwhile): it refuses until the file reads again, and
    still unwraps what it holds the keys of."""
    path = tmp_path / "keyring.json"
    operator = LocalKeyring.create(path)
    replica = LocalKeyring.load(path)
    replica.reload_seconds = 0.05
    old = replica.wrap(b"x", context=b"c")
    good = path.read_bytes()
    path.write_text('{"active": 2, "keys": [')  # an activation the replica cannot read
    time.sleep(0.1)
    with pytest.raises(KeyProviderError, match=r"keyring .*keyring\.json"):
        replica.wrap(b"x", context=b"c")
    time.sleep(0.1)
    with pytest.raises(KeyProviderError):
        replica.wrap(b"x", context=b"c")  # sticky: every wrap, not only the first after the change
    assert replica.failure is not None and replica.unwrap(old, context=b"c") == b"x"
    path.write_bytes(good)
    operator.activate(operator.add_version())
    time.sleep(0.1)
    assert replica.failure is None
    assert replica.wrap(b"x", context=b"c")[2:6] == (2).to_bytes(4, "big")


def test_readyz_and_requests_that_wrap_answer_503_while_the_keyring_cannot_be_read(vault_settings: Settings, engine) -> None:
    settings = vault_settings.model_copy(update={"keyring_reload_seconds": 0.05})
    app = create_app(settings, engine=engine)
    citizen = make_citizen(app)
    path = settings.effective_keyring_file
    good = path.read_bytes()
    with Browser(app) as browser:
        assert browser.get("/readyz").status_code == 200
        logged_in(browser, citizen)
        path.write_text("{")
        time.sleep(0.1)
        ready = browser.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["keyring"] == "unavailable" and str(path) in ready.json()["reason"]
        answer = upload(browser, pdf())  # a first document: the citizen's key is wrapped
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "unavailable"
        path.write_bytes(good)
        time.sleep(0.1)
        assert browser.get("/readyz").status_code == 200
        assert upload(browser, pdf()).status_code == 201


def test_retirement_waits_for_the_slowest_reload_any_replica_may_use(tmp_path: Path) -> None:
    """The command's own VAULT_KEYRING_RELOAD_SECONDS says nothing of the replicas': the wait
    before retiring covers the longest one a replica is allowed to run with."""
    keys = LocalKeyring.create(tmp_path / "keyring.json")
    keys.reload_seconds = 0.1  # the operator's shell
    assert settle_delay(keys).total_seconds() == 2 * KEYRING_RELOAD_MAX_SECONDS + 1
    with pytest.raises(ValueError):
        Settings(keyring_reload_seconds=KEYRING_RELOAD_MAX_SECONDS + 1)
