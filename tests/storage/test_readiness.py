"""/readyz also answers for the object store (SeaweedFS's S3) and the antivirus (clamd)."""

from __future__ import annotations

import uuid

import boto3
import pytest
from botocore.config import Config
from pydantic import SecretStr

from tests.services import ClamdService, S3Service, free_port
from tests.support import Browser
from vault.app import create_app


@pytest.fixture
def bucket(s3: S3Service) -> str:
    name = f"vault-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name=s3.region,
                          aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
                          config=Config(request_checksum_calculation="when_required",
                                        response_checksum_validation="when_required"))
    client.create_bucket(Bucket=name)
    return name


def s3_settings(settings, s3: S3Service, bucket: str, **extra):
    return settings.model_copy(update={
        "storage_backend": "s3", "s3_endpoint_url": s3.endpoint_url, "s3_bucket": bucket, "s3_region": s3.region,
        "s3_access_key_id": s3.access_key, "s3_secret_access_key": SecretStr(s3.secret_key), **extra})


def test_ready_with_s3_and_clamd(settings, engine, s3: S3Service, bucket: str, clamd: ClamdService) -> None:
    app = create_app(s3_settings(settings, s3, bucket, antivirus="clamd", clamd_address=clamd.address), engine=engine)
    with Browser(app) as browser:
        ready = browser.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "object_store": "ok", "antivirus": "ok"}


def test_not_ready_when_the_bucket_is_missing(settings, engine, s3: S3Service) -> None:
    app = create_app(s3_settings(settings, s3, "no-such-bucket"), engine=engine)
    with Browser(app) as browser:
        ready = browser.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["object_store"] == "unavailable"


def test_not_ready_when_clamd_does_not_answer(settings, engine) -> None:
    app = create_app(settings.model_copy(update={"antivirus": "clamd",
                                                 "clamd_address": f"tcp://127.0.0.1:{free_port()}"}), engine=engine)
    with Browser(app) as browser:
        ready = browser.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": "ok", "object_store": "ok", "antivirus": "unavailable"}
