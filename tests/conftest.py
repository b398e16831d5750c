"""Test fixtures: real services (PostgreSQL, clamd, SeaweedFS) started on loopback for the session.

Every test that uses ``app``/``browser`` runs twice: on SQLite and on PostgreSQL. The schema is
created once per database by the migrations (as in production) and emptied after each test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config
from pydantic import SecretStr
from sqlalchemy import text
from sqlmodel import SQLModel

from tests.factories import citizen_browser
from tests.services import (
    ClamdService,
    MotoService,
    PostgresService,
    S3Service,
    free_port,
    start_clamd,
    start_moto,
    start_postgres,
    start_seaweedfs,
)
from tests.support import Browser, Outbox
from vault.app import create_app
from vault.db import make_engine
from vault.migrations import upgrade
from vault.settings import Settings

# The suite must not pick up an operator's configuration.
for _name in [n for n in os.environ if n.startswith("VAULT_")]:
    del os.environ[_name]


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vault-tests-"))
    os.chmod(path, 0o755)  # noqa: S103  (the servers run as another user when the suite runs as root)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(services_dir: Path) -> Iterator[PostgresService]:
    service = start_postgres(services_dir / "postgres")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def clamd(services_dir: Path) -> Iterator[ClamdService]:
    service = start_clamd(services_dir / "clamd")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def s3(services_dir: Path) -> Iterator[S3Service]:
    service = start_seaweedfs(services_dir / "seaweedfs")
    yield service
    service.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, services_dir: Path) -> str:
    """A migrated database of each kind, shared by the session's tests (emptied between tests)."""
    if request.param == "sqlite":
        url = f"sqlite:///{services_dir / 'vault-tests.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres").create_database("vault_tests")
    upgrade(url)
    return url


def make_settings(data_dir: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": database_url,
        # Cheap argon2 in tests only; production keeps RFC 9106's parameters.
        "argon2_time_cost": 1,
        "argon2_memory_kib": 8 * 1024,
        # No jobs thread: the `outbox` fixture delivers the queued mail when a test reads it.
        "jobs": "worker",
        # No floor under the answers of the pages that mail someone (tests/auth/test_mail_requests.py sets one).
        "mail_request_min_ms": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def settings(data_dir: Path, database_url: str) -> Settings:
    return make_settings(data_dir, database_url)


@pytest.fixture
def engine(database_url: str):
    engine = make_engine(database_url)
    yield engine
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(text(f'DELETE FROM "{table.name}"'))  # noqa: S608  (our own table names)
    engine.dispose()


@pytest.fixture
def app(settings: Settings, engine):
    return create_app(settings, engine=engine)


@pytest.fixture
def browser(app) -> Iterator[Browser]:
    with Browser(app) as browser:
        yield browser


@pytest.fixture
def outbox(settings: Settings, engine) -> Outbox:
    return Outbox(settings.outbox_dir, engine)


@dataclass
class LiveServer:
    """The service as an operator runs it: `vault serve` in its own process, on a free port."""

    url: str
    env: dict[str, str]

    def vault(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vault.cli", *args], input=stdin, capture_output=True,
                              text=True, env=self.env, timeout=120, check=True)


@pytest.fixture(scope="session")
def live_server(services_dir: Path, postgres: PostgresService) -> Iterator[LiveServer]:
    """A real server on PostgreSQL with the demo citizen and demo app seeded (`make run`'s steps)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "VAULT_ISSUER": url, "VAULT_DATA_DIR": str(services_dir / "live"),
           "VAULT_DATABASE_URL": postgres.create_database("vault_live"),
           "VAULT_ARGON2_MEMORY_KIB": "8192", "VAULT_ARGON2_TIME_COST": "1"}
    server = LiveServer(url=url, env=env)
    server.vault("db", "upgrade")
    log = open(services_dir / "live-server.log", "wb")  # noqa: SIM115  (the server's log, open while it runs)
    process = subprocess.Popen([sys.executable, "-m", "vault.cli", "serve", "--port", str(port)], env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((services_dir / "live-server.log").read_text()[-3000:])
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="session")
def kms(services_dir: Path) -> Iterator[MotoService]:
    service = start_moto(services_dir / "moto")
    yield service
    service.stop()


# ---- the document vault as deployed: SeaweedFS (S3) and clamd ------------------------------------


@pytest.fixture
def s3_client(s3: S3Service):
    return boto3.client("s3", endpoint_url=s3.endpoint_url, region_name=s3.region, aws_access_key_id=s3.access_key,
                        aws_secret_access_key=s3.secret_key,
                        config=Config(request_checksum_calculation="when_required",
                                      response_checksum_validation="when_required"))


@pytest.fixture
def bucket() -> str:
    return f"vault-{uuid.uuid4().hex[:12]}"  # created by the service itself, with versioning


@pytest.fixture
def vault_settings(settings, s3: S3Service, clamd: ClamdService, bucket: str):
    return settings.model_copy(update={
        "storage_backend": "s3", "s3_endpoint_url": s3.endpoint_url, "s3_bucket": bucket, "s3_region": s3.region,
        "s3_access_key_id": s3.access_key, "s3_secret_access_key": SecretStr(s3.secret_key),
        "antivirus": "clamd", "clamd_address": clamd.address, "max_file_mb": 8, "quota_mb": 20, "quota_documents": 5})


@pytest.fixture
def vault_app(vault_settings, engine):
    return create_app(vault_settings, engine=engine)


@pytest.fixture
def citizen(vault_app):
    with citizen_browser(vault_app, email="docs@example.org") as browser:
        yield browser
