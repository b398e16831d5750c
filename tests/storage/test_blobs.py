"""S3 client settings that matter for integrity in transit."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from vault.settings import Settings
from vault.storage.blobs import S3BlobStore


@pytest.mark.parametrize(("endpoint", "signed"), [
    ("http://10.0.0.5:8333", True),  # plain HTTP: the store itself must refuse an altered body
    ("https://s3.example.org", False),  # TLS protects the body; the object is authenticated ciphertext anyway
    (None, False),  # AWS's own endpoints are HTTPS
])
def test_upload_bodies_are_signed_unless_tls_protects_them(endpoint: str | None, signed: bool) -> None:
    settings = Settings(storage_backend="s3", s3_endpoint_url=endpoint, s3_bucket="vault-docs",
                        s3_access_key_id="key", s3_secret_access_key=SecretStr("secret"))
    store = S3BlobStore(settings)
    assert store._client.meta.config.s3["payload_signing_enabled"] is signed  # noqa: SLF001
