"""How far behind the body an upload's parts go to the store (VAULT_UPLOAD_STORE_LAG_MB), on SeaweedFS."""

from __future__ import annotations

import os
import time
import uuid

from vault.storage.antivirus import NoScanner
from vault.storage.blobs import S3BlobStore
from vault.storage.pipeline import UploadPipeline

MiB = 1024 * 1024


def begun(store: S3BlobStore, key: str) -> bool:
    return any(upload.key == key for upload in store.unfinished_uploads())


def feed(store: S3BlobStore, lag: int, size: int) -> tuple[UploadPipeline, str]:
    key = uuid.uuid4().hex
    pipeline = UploadPipeline(store=store, scanner=NoScanner(), key=os.urandom(32), document_id=uuid.uuid4(),
                              blob_key=key, max_size=64 * MiB, store_lag=lag)
    pipeline.feed(b"%PDF-1.7\n")
    for _ in range(size // MiB):
        pipeline.feed(os.urandom(MiB))
    return pipeline, key


def test_parts_wait_for_the_end_of_the_body_within_the_lag_and_leave_beyond_it(vault_settings) -> None:
    store = S3BlobStore(vault_settings)
    store.ensure_bucket()
    # Within the lag: nothing reaches the store while the body arrives (clamd gets it first).
    pipeline, key = feed(store, lag=32 * MiB, size=24 * MiB)
    time.sleep(1.0)  # room for a part to leave, were it sent as it fills
    assert not begun(store, key)
    stored = pipeline.finish()  # the store catches up at the end: the whole document is there
    assert store.size(key) == stored.ciphertext_size
    # Beyond it (a large document sent slowly): parts leave while the body still arrives.
    pipeline, key = feed(store, lag=4 * MiB, size=24 * MiB)
    deadline = time.monotonic() + 30
    while not begun(store, key):
        assert time.monotonic() < deadline, "no part sent while the body arrived"
        time.sleep(0.1)
    stored = pipeline.finish()
    assert store.size(key) == stored.ciphertext_size and not begun(store, key)
