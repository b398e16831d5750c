"""/readyz also reports the object store (SeaweedFS's S3) and the antivirus (clamd), without failing
for them: a load balancer must keep sending logins and OpenID requests while only uploads and
downloads are out (503 for those). Its status code depends on the database and the keyring only."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import boto3
import pytest
from botocore.config import Config
from pydantic import SecretStr

from tests.services import ClamdService, S3Service, free_port
from tests.support import Browser
from vault.app import create_app


def s3_client(s3: S3Service):
    return boto3.client("s3", endpoint_url=s3.endpoint_url, region_name=s3.region,
                        aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
                        config=Config(request_checksum_calculation="when_required",
                                      response_checksum_validation="when_required"))


@pytest.fixture
def bucket(s3: S3Service) -> str:
    name = f"vault-{uuid.uuid4().hex[:12]}"
    s3_client(s3).create_bucket(Bucket=name)
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
    assert ready.json() == {"status": "ok", "checks": {
        "database": "ok", "issuer": "ok", "keyring": "ok", "object_store": "ok", "antivirus": "ok"}}


def test_a_missing_bucket_is_created_by_the_first_readiness_check(settings, engine, s3: S3Service) -> None:
    """A new deployment becomes ready before its first upload: the bucket is made, versioned."""
    name = f"vault-new-{uuid.uuid4().hex[:12]}"
    app = create_app(s3_settings(settings, s3, name), engine=engine)
    with Browser(app) as browser:
        ready = browser.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["object_store"] == "ok"
    client = s3_client(s3)
    client.head_bucket(Bucket=name)
    assert client.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"


def test_a_bucket_that_cannot_be_created_is_reported_without_failing(settings, engine, s3: S3Service) -> None:
    # A name S3 refuses to create (upper case, underscore): the same answer as credentials not allowed to.
    app = create_app(s3_settings(settings, s3, "No_Such_Bucket"), engine=engine)
    with Browser(app) as browser:
        ready = browser.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "degraded", "checks": {
        "database": "ok", "issuer": "ok", "keyring": "ok", "object_store": "bucket missing"}}


def test_s3_down_degrades_without_failing(settings, engine) -> None:
    app = create_app(settings.model_copy(update={
        "storage_backend": "s3", "s3_endpoint_url": f"http://127.0.0.1:{free_port()}", "s3_bucket": "vault",
        "s3_access_key_id": "x", "s3_secret_access_key": SecretStr("y")}), engine=engine)
    with Browser(app) as browser:
        ready = browser.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "degraded", "checks": {
            "database": "ok", "issuer": "ok", "keyring": "ok", "object_store": "unavailable"}}
        assert browser.get("/login").status_code == 200  # logins go on


def test_clamd_down_degrades_without_failing(settings, engine) -> None:
    app = create_app(settings.model_copy(update={"antivirus": "clamd",
                                                 "clamd_address": f"tcp://127.0.0.1:{free_port()}"}), engine=engine)
    with Browser(app) as browser:
        ready = browser.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "degraded", "checks": {
        "database": "ok", "issuer": "ok", "keyring": "ok", "object_store": "ok", "antivirus": "unavailable"}}


@pytest.fixture
def silent_listeners() -> Iterator[Callable[[], int]]:
    """Ports that accept connections and never answer (a stalled clamd, a stalled object store)."""
    sockets: list[socket.socket] = []
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def listen() -> int:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.settimeout(0.2)
        sockets.append(server)

        def accept() -> None:
            while not stop.is_set():
                try:
                    accepted.append(server.accept()[0])  # kept open, never read nor answered
                except TimeoutError:
                    continue
                except OSError:
                    return

        threading.Thread(target=accept, daemon=True).start()
        return int(server.getsockname()[1])

    yield listen
    stop.set()
    for each in sockets + accepted:
        each.close()


def test_a_stalled_clamd_and_object_store_answer_within_a_probe_timeout(settings, engine,
                                                                        silent_listeners) -> None:
    """Both accept and never answer: /readyz still answers within 3 s (Kubernetes' timeoutSeconds),
    200 and "degraded"; a balancer keeps the replica for logins."""
    app = create_app(settings.model_copy(update={
        "antivirus": "clamd", "clamd_address": f"tcp://127.0.0.1:{silent_listeners()}",
        "storage_backend": "s3", "s3_endpoint_url": f"http://127.0.0.1:{silent_listeners()}", "s3_bucket": "vault",
        "s3_access_key_id": "x", "s3_secret_access_key": SecretStr("y")}), engine=engine)
    with Browser(app) as browser:
        started = time.monotonic()
        ready = browser.get("/readyz")
        took = time.monotonic() - started
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "degraded", "checks": {
            "database": "ok", "issuer": "ok", "keyring": "ok", "object_store": "unavailable",
            "antivirus": "unavailable"}}
        assert took < 3, f"/readyz took {took:.1f} s"
        assert browser.get("/login").status_code == 200  # logins go on
