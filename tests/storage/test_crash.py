"""A replica killed (SIGKILL) in the middle of an upload, on PostgreSQL and SeaweedFS: the S3
multipart upload it had begun stays in the bucket (invisible, but its parts use space) and no
document row exists. `vault storage reconcile --dry-run` reports it; `vault storage reconcile`
aborts it, once it is older than VAULT_MULTIPART_ABANDON_MINUTES."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import httpx
from botocore.config import Config
from sqlalchemy import create_engine, text

from tests.services import PostgresService, S3Service, free_port
from tests.storage.test_faults import PASSWORD, body, login


def test_a_replica_killed_mid_upload_leaves_an_upload_that_reconcile_reports_then_aborts(
        services_dir: Path, postgres: PostgresService, s3: S3Service) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    bucket = f"crash-{uuid.uuid4().hex[:10]}"
    database_url = postgres.create_database(f"vault_crash_{uuid.uuid4().hex[:6]}")
    env = {**os.environ, "VAULT_ISSUER": url, "VAULT_DATA_DIR": str(services_dir / f"crash-{bucket}"),
           "VAULT_DATABASE_URL": database_url, "VAULT_STORAGE_BACKEND": "s3",
           "VAULT_S3_ENDPOINT_URL": s3.endpoint_url, "VAULT_S3_BUCKET": bucket, "VAULT_S3_REGION": s3.region,
           "VAULT_S3_ACCESS_KEY_ID": s3.access_key, "VAULT_S3_SECRET_ACCESS_KEY": s3.secret_key,
           "VAULT_MAX_FILE_MB": "60", "VAULT_ARGON2_MEMORY_KIB": "8192", "VAULT_ARGON2_TIME_COST": "1",
           "VAULT_UPLOAD_STORE_LAG_MB": "0"}  # parts leave as they fill: the crash hits a multipart upload begun

    def vault(*args: str, stdin: str = "") -> str:
        done = subprocess.run([sys.executable, "-m", "vault.cli", *args], input=stdin, capture_output=True,
                              text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    vault("db", "upgrade")
    vault("citizen", "create", "--email", "faults@example.org", "--given-name", "Léa", "--family-name", "Panne",
          "--birthdate", "1991-01-01", "--gender", "female", "--birthplace", "13055", "--password-stdin", "--verified",
          stdin=f"{PASSWORD}\n")
    log_path = services_dir / f"crash-{bucket}.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "vault.cli", "serve", "--port", url.rsplit(":", 1)[1]],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    s3_client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name=s3.region,
                             aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
                             config=Config(request_checksum_calculation="when_required",
                                           response_checksum_validation="when_required"))
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        client = login(url)
        host, port = url.removeprefix("http://").split(":")
        cookies = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        with socket.create_connection((host, int(port))) as raw:
            raw.sendall((f"POST /api/v1/documents HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/pdf\r\n"
                         f"Content-Length: {42 * 1024 * 1024}\r\nCookie: {cookies}\r\n"
                         f"X-CSRF-Token: {client.cookies['csrf']}\r\n\r\n").encode())
            for chunk in body(20 * 1024 * 1024):  # two 8 MiB parts sent: a multipart upload is under way
                raw.sendall(chunk)
            deadline = time.monotonic() + 30
            while not s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads"):
                assert time.monotonic() < deadline, "no multipart upload began"
                time.sleep(0.1)
            server.send_signal(signal.SIGKILL)  # the replica dies mid-upload, without a word
            server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    [upload] = s3_client.list_multipart_uploads(Bucket=bucket)["Uploads"]
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:  # nothing half-written in the database
            assert conn.execute(text("SELECT count(*) FROM document")).scalar_one() == 0
    finally:
        engine.dispose()

    # Younger than the abandon age (a day by default): it may be an upload in progress, kept.
    report = json.loads(vault("storage", "reconcile", "--dry-run", "--json"))
    assert report["unfinished_uploads"] == [] and report["unfinished_uploads_kept_recent"] == 1

    report = json.loads(vault("storage", "reconcile", "--dry-run", "--uploads-older-than", "0", "--json"))
    assert [(u["key"], u["upload_id"]) for u in report["unfinished_uploads"]] == [(upload["Key"], upload["UploadId"])]
    assert report["unfinished_uploads_aborted"] == 0
    assert len(s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1  # a dry run keeps it

    text_report = vault("storage", "reconcile", "--dry-run", "--uploads-older-than", "0")
    assert "would abort 1 unfinished upload(s)" in text_report and upload["Key"] in text_report

    report = json.loads(vault("storage", "reconcile", "--uploads-older-than", "0", "--json"))
    assert report["unfinished_uploads_aborted"] == 1
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    versions = s3_client.list_object_versions(Bucket=bucket)
    documents = [v["Key"] for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])
                 if not v["Key"].startswith("audit/")]  # the audit log's checkpoints stay
    assert documents == []
