"""What an operator sets up before the first request: the bucket (created with versioning by
`vault db upgrade` and by `vault storage init`) and the deployment's issuer, which every replica
must share (a replica configured with another one is not ready, and says why)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.services import S3Service, free_port
from tests.support import Browser
from vault.app import create_app

VAULT = [sys.executable, "-m", "vault.cli"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VAULT, *args], capture_output=True, text=True, env=env, timeout=120)


def s3_env(tmp_path: Path, s3: S3Service, bucket: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "VAULT_DATA_DIR": str(tmp_path / "var"), "VAULT_STORAGE_BACKEND": "s3",
            "VAULT_S3_ENDPOINT_URL": s3.endpoint_url, "VAULT_S3_BUCKET": bucket, "VAULT_S3_REGION": s3.region,
            "VAULT_S3_ACCESS_KEY_ID": s3.access_key, "VAULT_S3_SECRET_ACCESS_KEY": s3.secret_key,
            "VAULT_ARGON2_MEMORY_KIB": "8192", "VAULT_ARGON2_TIME_COST": "1", **extra}


def s3_client(s3: S3Service):
    return boto3.client("s3", endpoint_url=s3.endpoint_url, region_name=s3.region,
                        aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
                        config=Config(request_checksum_calculation="when_required",
                                      response_checksum_validation="when_required"))


# ---- the bucket ---------------------------------------------------------------------------------


def test_db_upgrade_creates_the_versioned_bucket(tmp_path: Path, s3: S3Service) -> None:
    bucket = f"vault-up-{uuid.uuid4().hex[:10]}"
    done = run(["db", "upgrade"], s3_env(tmp_path, s3, bucket))
    assert done.returncode == 0, done.stderr
    assert f"bucket '{bucket}' created" in done.stderr
    client = s3_client(s3)
    client.head_bucket(Bucket=bucket)
    assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_storage_init_creates_the_bucket_and_can_be_repeated(tmp_path: Path, s3: S3Service) -> None:
    bucket = f"vault-init-{uuid.uuid4().hex[:10]}"
    env = s3_env(tmp_path, s3, bucket)
    first = run(["storage", "init"], env)
    assert first.returncode == 0, first.stderr
    assert f"bucket '{bucket}' created, versioning on" in first.stdout
    assert s3_client(s3).get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    again = run(["storage", "init"], env)
    assert again.returncode == 0, again.stderr
    assert f"bucket '{bucket}' already there, versioning on" in again.stdout


def test_storage_init_turns_versioning_on_in_an_existing_bucket(tmp_path: Path, s3: S3Service) -> None:
    bucket = f"vault-old-{uuid.uuid4().hex[:10]}"
    client = s3_client(s3)
    client.create_bucket(Bucket=bucket)
    assert client.get_bucket_versioning(Bucket=bucket).get("Status") is None
    done = run(["storage", "init"], s3_env(tmp_path, s3, bucket))
    assert done.returncode == 0, done.stderr
    assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_storage_init_says_when_s3_does_not_answer(tmp_path: Path, s3: S3Service) -> None:
    env = s3_env(tmp_path, s3, "vault-nowhere", VAULT_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
                 VAULT_S3_CONNECT_TIMEOUT_SECONDS="1")
    done = run(["storage", "init"], env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "does not answer" in done.stderr and "VAULT_S3_ENDPOINT_URL" in done.stderr
    upgrade = run(["db", "upgrade"], env)  # the database is migrated; the command still says it failed
    assert upgrade.returncode == 2 and "Traceback" not in upgrade.stderr
    assert "does not answer" in upgrade.stderr and "vault storage init" in upgrade.stderr


def test_storage_init_says_when_s3_refuses_the_bucket(tmp_path: Path, s3: S3Service) -> None:
    # A name S3 refuses to create (upper case, underscore): refused as credentials without the right are.
    done = run(["storage", "init", "--json"], s3_env(tmp_path, s3, "No_Such_Bucket"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert '"error": "unavailable"' in done.stdout and "No_Such_Bucket" in done.stdout


# ---- the deployment's issuer ----------------------------------------------------------------------


def test_db_upgrade_records_the_issuer_and_refuses_another_without_being_told(tmp_path: Path) -> None:
    env = {**os.environ, "VAULT_DATA_DIR": str(tmp_path / "var"), "VAULT_ISSUER": "https://vault.example.fr"}
    assert run(["db", "upgrade"], env).returncode == 0
    assert run(["db", "upgrade"], env).returncode == 0  # the same issuer: nothing to say
    moved = {**env, "VAULT_ISSUER": "https://coffre.example.fr"}
    refused = run(["db", "upgrade"], moved)
    assert refused.returncode == 2
    assert "https://vault.example.fr" in refused.stderr and "--change-issuer" in refused.stderr
    changed = run(["db", "upgrade", "--change-issuer"], moved)
    assert changed.returncode == 0, changed.stderr
    assert "changed from https://vault.example.fr to https://coffre.example.fr" in changed.stderr


def test_a_replica_with_another_issuer_is_not_ready(settings, engine, caplog: pytest.LogCaptureFixture) -> None:
    first = create_app(settings.model_copy(update={"issuer": "https://vault.example.fr"}), engine=engine)
    with Browser(first) as browser:
        ready = browser.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["issuer"] == "ok"

    with caplog.at_level(logging.ERROR):
        second = create_app(settings.model_copy(update={"issuer": "https://vault.example.fr:8443"}), engine=engine)
    assert any(r.levelno == logging.ERROR and "issuer" in r.getMessage() for r in caplog.records)
    with Browser(second) as browser:
        ready = browser.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable" and body["checks"]["issuer"] == "mismatch"
        assert "https://vault.example.fr:8443" in body["reason"] and "is https://vault.example.fr:" in body["reason"]
        assert "VAULT_ISSUER" in body["reason"]
    with Browser(first) as browser:  # the replica with the deployment's issuer stays ready
        assert browser.get("/readyz").status_code == 200
