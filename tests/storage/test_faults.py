"""Faults on a running server (`vault serve` with PostgreSQL, clamd, SeaweedFS): a citizen's
connection dropping mid-upload, and the object store dying mid-upload. Nothing is left behind."""

from __future__ import annotations

import html
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.fault_proxy import FaultProxy
from tests.services import ClamdService, PostgresService, S3Service, free_port

PASSWORD = "une phrase pour les pannes"  # the citizens the server holds


@pytest.fixture(scope="module")
def server(services_dir: Path, postgres: PostgresService, s3: S3Service, clamd: ClamdService):
    host, port = s3.endpoint_url.removeprefix("http://").split(":")
    proxy = FaultProxy((host, int(port)))
    url = f"http://127.0.0.1:{free_port()}"
    bucket = f"faults-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "VAULT_ISSUER": url, "VAULT_DATA_DIR": str(services_dir / "faults"),
           "VAULT_DATABASE_URL": postgres.create_database("vault_faults"), "VAULT_STORAGE_BACKEND": "s3",
           "VAULT_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}", "VAULT_S3_BUCKET": bucket,
           "VAULT_S3_REGION": s3.region, "VAULT_S3_ACCESS_KEY_ID": s3.access_key,
           "VAULT_S3_SECRET_ACCESS_KEY": s3.secret_key, "VAULT_ANTIVIRUS": "clamd", "VAULT_CLAMD_ADDRESS": clamd.address,
           "VAULT_MAX_FILE_MB": "60", "VAULT_ARGON2_MEMORY_KIB": "8192", "VAULT_ARGON2_TIME_COST": "1",
           "VAULT_UPLOAD_STORE_LAG_MB": "0"}  # parts leave as they fill: the faults hit a multipart upload begun

    def vault(*args: str, stdin: str = "") -> str:
        return subprocess.run([sys.executable, "-m", "vault.cli", *args], input=stdin, capture_output=True, text=True,
                              env=env, check=True, timeout=120).stdout

    vault("db", "upgrade")
    vault("citizen", "create", "--email", "faults@example.org", "--given-name", "Léa", "--family-name", "Panne",
          "--birthdate", "1991-01-01", "--gender", "female", "--birthplace", "13055", "--password-stdin", "--verified",
          stdin=f"{PASSWORD}\n")
    log = open(services_dir / "faults-server.log", "wb")  # noqa: SIM115  (the server's log, open while it runs)
    process = subprocess.Popen([sys.executable, "-m", "vault.cli", "serve", "--port", url.rsplit(":", 1)[1]],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            log.close()
            raise RuntimeError((services_dir / "faults-server.log").read_text()[-3000:])
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    s3_client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name=s3.region,
                             aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
                             config=Config(request_checksum_calculation="when_required",
                                           response_checksum_validation="when_required"))
    try:
        yield type("Server", (), {"url": url, "proxy": proxy, "bucket": bucket, "s3": s3_client, "vault": vault,
                                  "log": services_dir / "faults-server.log"})
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        proxy.close()


def login(url: str, email: str = "faults@example.org") -> httpx.Client:
    """A client logged in to the running server as ``email`` (a citizen made with ``PASSWORD``)."""
    client = httpx.Client(base_url=url, timeout=60)
    page = client.get("/login")
    token = html.unescape(re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1))
    assert client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token},
                       follow_redirects=False).status_code == 303
    return client


def body(size: int) -> Iterator[bytes]:
    yield b"%PDF-1.7\n"
    sent = 9
    while sent < size:
        chunk = os.urandom(min(1 << 20, size - sent))
        sent += len(chunk)
        yield chunk


def wait_until_nothing_left(server, client: httpx.Client) -> None:
    deadline = time.monotonic() + 20
    while True:
        versions = server.s3.list_object_versions(Bucket=server.bucket)
        kept = [v for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])
                if not v["Key"].startswith("audit/")]  # the audit log's checkpoints stay
        pending = server.s3.list_multipart_uploads(Bucket=server.bucket).get("Uploads", [])
        documents = client.get("/api/v1/documents").json()["total"]
        if not kept and not pending and documents == 0:
            return
        assert time.monotonic() < deadline, (kept, pending, documents)
        time.sleep(0.2)


def test_client_disconnecting_mid_upload_leaves_nothing(server) -> None:
    client = login(server.url)
    logged = server.log.stat().st_size
    host, port = server.url.removeprefix("http://").split(":")
    cookies = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall((f"POST /api/v1/documents HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/pdf\r\n"
                     f"Content-Length: {30 * 1024 * 1024}\r\nCookie: {cookies}\r\n"
                     f"X-CSRF-Token: {client.cookies['csrf']}\r\n\r\n").encode())
        for chunk in body(12 * 1024 * 1024):  # more than one 8 MiB part: a multipart upload has begun
            raw.sendall(chunk)
    # The real server logs the client going away once it has noticed it (and cleaned up), never an error.
    deadline = time.monotonic() + 30
    while True:
        with server.log.open("rb") as log:
            log.seek(logged)
            lines = log.read().decode(errors="replace")
        if "client went away" in lines or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "client went away" in lines and "unhandled error" not in lines and "Traceback" not in lines, lines[-3000:]
    wait_until_nothing_left(server, client)
    assert client.get("/readyz").status_code == 200  # the server is fine


def test_object_store_dying_mid_upload_is_503_and_leaves_nothing(server) -> None:
    client = login(server.url)

    def dying(size: int) -> Iterator[bytes]:
        for n, chunk in enumerate(body(size)):
            if n == 20:  # 20 MB in: two parts already stored
                server.proxy.cut()
            yield chunk

    try:
        answer = client.post("/api/v1/documents", content=dying(40 * 1024 * 1024),
                             headers={"Content-Type": "application/pdf", "X-CSRF-Token": client.cookies["csrf"]})
        assert answer.status_code == 503 and answer.json()["error"] == "unavailable"
    finally:
        server.proxy.restore()
    # The abort could not reach the store while it was down: reconcile finishes the job (here
    # without waiting the usual hour).
    report = json.loads(server.vault("storage", "reconcile", "--older-than", "0", "--uploads-older-than", "0",
                                     "--json"))
    assert report["documents_without_blob"] == []
    wait_until_nothing_left(server, client)


def test_object_store_down_at_download_is_503_and_the_document_comes_back(server) -> None:
    client = login(server.url)
    content = b"".join(body(3 * 1024 * 1024))
    document = client.post("/api/v1/documents", content=content, headers={
        "Content-Type": "application/pdf", "X-CSRF-Token": client.cookies["csrf"]}).json()
    server.proxy.cut()
    try:
        answer = client.get(f"/api/v1/documents/{document['id']}/content")
        assert answer.status_code == 503 and answer.json()["error"] == "unavailable"
        assert "nothing was kept" not in answer.json()["detail"]  # a read: nothing was at stake
        page = client.get(f"/documents/{document['id']}/download")
        assert page.status_code == 503 and "ne sont pas perdus" in page.text
    finally:
        server.proxy.restore()
    again = client.get(f"/api/v1/documents/{document['id']}/content")  # pooled connections were cut too
    assert again.status_code == 200 and again.content == content
    client.delete(f"/api/v1/documents/{document['id']}", headers={"X-CSRF-Token": client.cookies["csrf"]})


def test_object_store_dying_mid_download_aborts_it(server) -> None:
    client = login(server.url)
    size = 30 * 1024 * 1024
    content = b"".join(body(size))
    document = client.post("/api/v1/documents", content=content, headers={
        "Content-Type": "application/pdf", "X-CSRF-Token": client.cookies["csrf"]}).json()
    received = 0
    try:
        # The store dies after 4 MiB of the object: the answer (200, the full length) has started.
        server.proxy.cut_after(4 * 1024 * 1024)
        # Cut short: never a complete-looking file.
        with (pytest.raises(httpx.RemoteProtocolError),
              client.stream("GET", f"/api/v1/documents/{document['id']}/content") as answer):
            assert answer.status_code == 200 and answer.headers["content-length"] == str(size)
            for piece in answer.iter_raw(65536):
                received += len(piece)
    finally:
        server.proxy.restore()
    assert 0 < received <= 4 * 1024 * 1024
    again = client.get(f"/api/v1/documents/{document['id']}/content")
    assert again.status_code == 200 and again.content == content
    client.delete(f"/api/v1/documents/{document['id']}", headers={"X-CSRF-Token": client.cookies["csrf"]})


def test_concurrent_first_uploads_share_one_citizen_key(server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    server.vault("citizen", "create", "--email", "rush@example.org", "--given-name", "Rémi", "--family-name", "Presse",
                 "--birthdate", "1992-02-02", "--gender", "male", "--birthplace", "13055", "--password-stdin",
                 "--verified", stdin=f"{PASSWORD}\n")
    client = login(server.url, "rush@example.org")

    def first_upload(_: int) -> int:
        return client.post("/api/v1/documents", content=b"%PDF-1.7\n" + os.urandom(50_000),
                           headers={"Content-Type": "application/pdf", "X-CSRF-Token": client.cookies["csrf"]}).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(first_upload, range(4))) == [201, 201, 201, 201]
    documents = client.get("/api/v1/documents").json()["items"]
    assert len(documents) == 4
    for document in documents:  # every one readable with the key that won
        assert client.get(f"/api/v1/documents/{document['id']}/content").status_code == 200
