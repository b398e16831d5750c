"""The aws-kms key provider, against moto's KMS in server mode (no KMS runs here)."""

from __future__ import annotations

import uuid

import boto3
import pytest

from tests.services import MotoService, free_port
from vault.crypto import (
    AwsKmsProvider,
    DecryptionError,
    KeyProviderError,
    load_key_provider,
)
from vault.crypto.hierarchy import new_citizen_key, open_citizen_key, rewrap_citizen_key
from vault.settings import Settings


def new_kms_key(kms: MotoService) -> str:
    client = boto3.client("kms", endpoint_url=kms.endpoint_url, region_name="eu-west-3",
                          aws_access_key_id="test", aws_secret_access_key="test")
    return client.create_key(Description="vault KEK")["KeyMetadata"]["KeyId"]


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # boto3's credential chain (what an instance role provides in production).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")


def provider(kms: MotoService, key_id: str) -> AwsKmsProvider:
    settings = Settings(key_provider="aws-kms", kms_key_id=key_id, kms_endpoint_url=kms.endpoint_url)
    keys = load_key_provider(settings)
    assert isinstance(keys, AwsKmsProvider)
    return keys


def test_wrap_unwrap_bound_to_context(kms: MotoService) -> None:
    keys = provider(kms, new_kms_key(kms))
    wrapped = keys.wrap(b"a citizen key here", context=b"citizen-key:1")
    assert b"a citizen key here" not in wrapped
    assert keys.unwrap(wrapped, context=b"citizen-key:1") == b"a citizen key here"
    with pytest.raises(DecryptionError):
        keys.unwrap(wrapped, context=b"citizen-key:2")
    with pytest.raises(DecryptionError):
        keys.unwrap(wrapped[:-1] + bytes([wrapped[-1] ^ 1]), context=b"citizen-key:1")


def test_citizen_keys_move_to_a_new_kms_key(kms: MotoService) -> None:
    citizen = uuid.uuid4()
    old = provider(kms, new_kms_key(kms))
    key, wrapped = new_citizen_key(old, citizen)
    new = provider(kms, new_kms_key(kms))
    assert new.active_version != old.active_version
    rewrapped = rewrap_citizen_key(new, wrapped, citizen)  # KMS finds the old key from the ciphertext
    assert open_citizen_key(new, rewrapped, citizen) == key
    assert rewrapped[2:6] == new.active_version.to_bytes(4, "big")


def test_unreachable_kms_is_a_clear_error() -> None:
    keys = AwsKmsProvider(key_id="alias/vault", endpoint_url=f"http://127.0.0.1:{free_port()}", region="eu-west-3")
    with pytest.raises(KeyProviderError, match="KMS"):
        keys.wrap(b"x", context=b"c")


def test_documents_with_the_kms_provider(kms: MotoService, settings, engine) -> None:
    from tests.factories import citizen_browser, upload
    from vault.app import create_app

    app = create_app(settings.model_copy(update={"key_provider": "aws-kms", "kms_key_id": new_kms_key(kms),
                                                 "kms_endpoint_url": kms.endpoint_url}), engine=engine)
    content = b"%PDF-1.7\n" + b"kms" * 1000
    with citizen_browser(app, email="kms@example.org") as browser:
        created = upload(browser, content, filename="a.pdf")
        assert created.status_code == 201, created.text
        assert browser.get(f"/api/v1/documents/{created.json()['id']}/content").content == content


def test_readiness_keeps_the_kms_answer_a_while(tmp_path, settings, engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """/readyz with aws-kms does not call the KMS at every probe: a KMS gone since the last check
    is seen once the kept answer is older than KMS_READINESS_TTL."""
    from tests.services import start_moto
    from tests.support import Browser
    from vault.app import create_app

    own_kms = start_moto(tmp_path / "moto")  # this test stops it
    try:
        app = create_app(settings.model_copy(update={"key_provider": "aws-kms", "kms_key_id": new_kms_key(own_kms),
                                                     "kms_endpoint_url": own_kms.endpoint_url}), engine=engine)
        with Browser(app) as browser:
            assert browser.get("/readyz").json()["checks"]["keyring"] == "ok"
            own_kms.stop()
            kept = browser.get("/readyz")
            assert kept.status_code == 200 and kept.json()["checks"]["keyring"] == "ok"  # no KMS call: the kept answer
            monkeypatch.setattr("vault.app.KMS_READINESS_TTL", 0.0)  # the kept answer has aged
            stale = browser.get("/readyz")
            assert stale.status_code == 503 and stale.json()["checks"]["keyring"] == "unavailable"
    finally:
        own_kms.stop()
