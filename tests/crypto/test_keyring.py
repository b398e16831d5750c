"""The local key provider: versioned 256-bit keys, AES-256-GCM wrapping bound to a context."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

import pytest

from vault import crypto
from vault.crypto import (
    DecryptionError,
    KeyProviderError,
    LocalKeyring,
    load_key_provider,
)
from vault.settings import Settings


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
