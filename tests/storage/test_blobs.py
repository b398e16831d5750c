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
    assert store._client.meta.config.s3["payload_signing_enabled"] is signed


# ---- the filesystem store (development, `make run`): the same read path as S3 --------------------------------


def test_filesystem_store_reads_like_s3(app, browser, data_dir) -> None:
    from tests.factories import MARKER, logged_in, make_citizen, make_document, pdf
    from vault.crypto import DecryptionError

    logged_in(browser, make_citizen(app, email="fichiers@example.org"))
    content = pdf(3 * 1024 * 1024 + 123)
    doc = make_document(browser, content)
    answer = browser.get(f"/api/v1/documents/{doc['id']}/content")
    assert answer.status_code == 200 and answer.content == content
    ranged = browser.get(f"/api/v1/documents/{doc['id']}/content", headers={"Range": "bytes=1048000-1049999"})
    assert ranged.status_code == 206 and ranged.content == content[1048000:1050000]
    blobs = [p for p in data_dir.rglob("*") if p.is_file() and p.stat().st_size > len(content)]
    assert len(blobs) == 1 and MARKER not in blobs[0].read_bytes()  # ciphertext only on disk

    blobs[0].write_bytes(blobs[0].read_bytes()[: 2 * 1024 * 1024])  # the last segments are gone
    with pytest.raises(DecryptionError):  # cut short mid-stream, never a complete-looking file
        browser.get(f"/api/v1/documents/{doc['id']}/content")
    blobs[0].unlink()
    gone = browser.get(f"/api/v1/documents/{doc['id']}/content")
    assert gone.status_code == 500 and gone.json()["error"] == "content_missing"
