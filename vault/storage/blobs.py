"""Blob stores behind one interface: ``s3`` (boto3) and ``fs`` (a folder; development only).

For now they only answer the readiness probe; the streaming upload and ranged reads arrive with
the document vault. Backend errors are translated here: no botocore error reaches a route.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Protocol

from vault.settings import Settings


class BlobStoreUnavailable(Exception):
    """The object store does not answer, or the bucket/folder is missing or not writable."""


class BlobStore(Protocol):
    def check(self) -> None:
        """Raise BlobStoreUnavailable unless the store can be used now."""


class FilesystemBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                pass
        except OSError as exc:
            raise BlobStoreUnavailable(f"{type(exc).__name__} on the blob folder") from None


class S3BlobStore:
    def __init__(self, settings: Settings) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = settings.s3_bucket or ""
        secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
        self._client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=secret,
            config=Config(
                # botocore ≥ 1.36 sends CRC checksums that many S3-compatible servers reject.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise BlobStoreUnavailable(f"bucket {self.bucket!r}: {code or 'error'}") from None
        except BotoCoreError as exc:
            raise BlobStoreUnavailable(type(exc).__name__) from None


def make_blob_store(settings: Settings) -> BlobStore:
    if settings.storage_backend == "s3":
        return S3BlobStore(settings)
    return FilesystemBlobStore(settings.data_dir / "blobs")


