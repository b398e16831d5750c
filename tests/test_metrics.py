"""The metrics an operator scrapes from VAULT_METRICS_PORT count what they claim: `vault serve
--workers 2` on PostgreSQL, SeaweedFS and clamd, driven over HTTP, its /metrics read as Prometheus
reads it (the sum over both worker processes, served by the parent on a port of its own)."""

from __future__ import annotations

import html
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from prometheus_client import REGISTRY
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from tests.factories import pdf
from tests.oidc.test_live_clients import citizen_browser
from tests.services import ClamdService, PostgresService, S3Service, free_port
from tests.storage.test_documents import EICAR
from vault.settings import Settings
from vault.storage.blobs import BlobStoreUnavailable, S3BlobStore

VAULT = [sys.executable, "-m", "vault.cli"]
PASSWORD = "une phrase pour les compteurs"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> tuple[str, Samples]:
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples = {(sample.name, frozenset(sample.labels.items())): sample.value
               for family in text_string_to_metric_families(answer.text) for sample in family.samples}
    return answer.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@dataclass
class Served:
    url: str
    metrics_port: int
    env: dict[str, str]
    tmp: Path  # the server's TMPDIR: its multiprocess directory is made in there

    def vault(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run([*VAULT, *args], input=stdin, capture_output=True, text=True, env=self.env, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def samples(self) -> Samples:
        return scrape(self.metrics_port)[1]

    def per_worker(self, name: str, **labels: str) -> dict[str, float]:
        """A counter's value in each worker's own file (what the parent sums)."""
        found: dict[str, float] = {}
        for path in sorted(self.tmp.glob("vault-metrics-*/counter_*.db")):
            for family in MultiProcessCollector.merge([str(path)]):
                for sample in family.samples:
                    if sample.name == name and sample.labels == labels:
                        found[path.stem] = sample.value
        return found


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 300  # two workers start slowly on a busy machine (48 s seen at load 13)
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)


@pytest.fixture(scope="module")
def served(services_dir: Path, postgres: PostgresService, s3: S3Service, clamd: ClamdService) -> Iterator[Served]:
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    tmp = services_dir / f"{name}-tmp"
    tmp.mkdir()
    url, metrics_port = f"http://127.0.0.1:{free_port()}", free_port()
    env = {**os.environ, "VAULT_ISSUER": url, "VAULT_DATA_DIR": str(services_dir / name),
           "VAULT_DATABASE_URL": postgres.create_database(f"vault_{name.replace('-', '_')}"),
           "VAULT_STORAGE_BACKEND": "s3", "VAULT_S3_ENDPOINT_URL": s3.endpoint_url, "VAULT_S3_BUCKET": name,
           "VAULT_S3_REGION": s3.region, "VAULT_S3_ACCESS_KEY_ID": s3.access_key,
           "VAULT_S3_SECRET_ACCESS_KEY": s3.secret_key, "VAULT_ANTIVIRUS": "clamd", "VAULT_CLAMD_ADDRESS": clamd.address,
           "VAULT_ARGON2_MEMORY_KIB": "8192", "VAULT_ARGON2_TIME_COST": "1", "VAULT_METRICS_PORT": str(metrics_port),
           "VAULT_LOGIN_FREE_FAILURES_PER_ADDRESS": "100000", "VAULT_LOGIN_FREE_FAILURES_PER_ACCOUNT": "3",
           "TMPDIR": str(tmp)}
    server = Served(url=url, metrics_port=metrics_port, env=env, tmp=tmp)
    server.vault("db", "upgrade")
    server.vault("citizen", "create", "--email", "compteurs@example.org", "--given-name", "Léa", "--family-name",
                 "Compte", "--birthdate", "1990-01-01", "--gender", "female", "--birthplace", "13055",
                 "--password-stdin", "--verified", stdin=f"{PASSWORD}\n")
    log = services_dir / f"{name}.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([*VAULT, "serve", "--port", url.rsplit(":", 1)[1], "--workers", "2"], env=env,
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for(f"{url}/readyz", process, log)
        wait_for(f"http://127.0.0.1:{metrics_port}/metrics", process, log)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def login_page(client: httpx.Client) -> str:
    page = client.get("/login")
    return html.unescape(CSRF.search(page.text).group(1))


def logged_in(served: Served) -> httpx.Client:
    client = httpx.Client(base_url=served.url, timeout=60)
    token = login_page(client)
    answer = client.post("/login", data={"email": "compteurs@example.org", "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 303, answer.text[:500]
    return client


def upload(client: httpx.Client, content: bytes) -> httpx.Response:
    return client.post("/api/v1/documents", files={"file": ("avis.pdf", io.BytesIO(content), "application/pdf")},
                       data={"type": "tax_notice"}, headers={"X-CSRF-Token": client.cookies["csrf"]})


# ---- logins ------------------------------------------------------------------------------------------------


def test_wrong_passwords_are_counted_exactly_once_over_both_workers(served: Served) -> None:
    """Each try on a new connection, until both workers have answered some: the sum the parent
    serves is exactly the number of tries, and each worker's own file holds a part of it."""
    labels = {"method": "password", "outcome": "bad_credentials"}
    before = value(served.samples(), "vault_logins_total", **labels)
    workers_before = served.per_worker("vault_logins_total", **labels)
    tries = 0
    while True:
        with httpx.Client(base_url=served.url, timeout=60, headers={"Connection": "close"}) as client:
            token = login_page(client)
            answer = client.post("/login", data={"email": f"nobody-{tries}@example.org", "password": "faux",
                                                 "csrf_token": token})
        assert answer.status_code == 401
        tries += 1
        per_worker = served.per_worker("vault_logins_total", **labels)
        grew = [worker for worker, count in per_worker.items() if count > workers_before.get(worker, 0)]
        if tries >= 6 and len(grew) == 2:
            break
        assert tries < 80, f"one worker answered every login: {per_worker}"
    assert value(served.samples(), "vault_logins_total", **labels) - before == tries
    assert sum(per_worker.values()) - sum(workers_before.values()) == tries


def test_a_locked_account_counts_throttled_logins(served: Served) -> None:
    """VAULT_LOGIN_FREE_FAILURES_PER_ACCOUNT=3: the tries refused by the lock (429) are "throttled",
    the others "bad_credentials"; a good password counts a success."""
    before = served.samples()
    email = f"verrou-{uuid.uuid4().hex[:6]}@example.org"
    statuses = []
    with httpx.Client(base_url=served.url, timeout=60) as client:
        for _ in range(6):
            statuses.append(client.post("/login", data={"email": email, "password": "faux",
                                                        "csrf_token": login_page(client)}).status_code)
    logged_in(served).close()
    after = served.samples()
    assert statuses.count(429) >= 1 and set(statuses) == {401, 429}

    def delta(outcome: str) -> float:
        return (value(after, "vault_logins_total", method="password", outcome=outcome)
                - value(before, "vault_logins_total", method="password", outcome=outcome))

    assert delta("throttled") == statuses.count(429)
    assert delta("bad_credentials") == statuses.count(401)
    assert delta("success") == 1


# ---- documents and the antivirus -------------------------------------------------------------------------


def test_an_upload_and_a_download_are_counted_with_their_bytes(served: Served) -> None:
    content = pdf(300_000)
    before = served.samples()
    with closing(logged_in(served)) as client:
        created = upload(client, content)
        assert created.status_code == 201, created.text
        middle = served.samples()
        download = client.get(f"/api/v1/documents/{created.json()['id']}/content")
        assert download.status_code == 200 and download.content == content
    after = served.samples()

    def delta(name: str, then: Samples, now: Samples, **labels: str) -> float:
        return value(now, name, **labels) - value(then, name, **labels)

    assert delta("vault_documents_uploaded_total", before, middle) == 1
    assert delta("vault_documents_uploaded_bytes_total", before, middle) == len(content)
    assert delta("vault_antivirus_verdicts_total", before, middle, verdict="clean") == 1
    assert delta("vault_antivirus_scan_duration_seconds_count", before, middle) == 1
    assert delta("vault_documents_downloaded_total", middle, after) == 1
    assert delta("vault_documents_downloaded_bytes_total", middle, after) == len(content)
    assert delta("vault_documents_uploaded_total", middle, after) == 0


def test_an_infected_upload_counts_an_infected_verdict_and_no_document(served: Served) -> None:
    before = served.samples()
    with closing(logged_in(served)) as client:
        refused = upload(client, b"%PDF-1.4\n" + EICAR + b"\n%%EOF")
        assert refused.status_code == 422, refused.text
    after = served.samples()
    assert value(after, "vault_antivirus_verdicts_total", verdict="infected") - value(
        before, "vault_antivirus_verdicts_total", verdict="infected") == 1
    assert value(after, "vault_antivirus_verdicts_total", verdict="clean") == value(
        before, "vault_antivirus_verdicts_total", verdict="clean")
    assert value(after, "vault_documents_uploaded_total") == value(before, "vault_documents_uploaded_total")
    assert value(after, "vault_documents_uploaded_bytes_total") == value(before, "vault_documents_uploaded_bytes_total")


# ---- the OpenID Connect provider ---------------------------------------------------------------------------


def test_a_code_exchange_and_a_refresh_count_one_token_each(served: Served) -> None:
    app = json.loads(served.vault("client", "create", "--name", "compteur", "--redirect-uri", "http://127.0.0.1:9/cb",
                                  "--scope", "openid profile", "--auth-method", "client_secret_basic",
                                  "--refresh-tokens", "--json"))
    meta = httpx.get(f"{served.url}/.well-known/openid-configuration").json()
    client = OAuth2Client(app["client_id"], app["client_secret"], scope="openid profile",
                          redirect_uri="http://127.0.0.1:9/cb", code_challenge_method="S256",
                          token_endpoint_auth_method="client_secret_basic")
    verifier = "v" * 64
    url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce="n0nce")
    _, callback = citizen_browser(served.url, url.removeprefix(served.url), "compteurs@example.org", PASSWORD)
    before = served.samples()
    token = client.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier,
                               state=state)
    middle = served.samples()
    client.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    after = served.samples()
    name = "vault_oidc_tokens_issued_total"
    assert value(middle, name, grant_type="authorization_code") - value(before, name, grant_type="authorization_code") == 1
    assert value(middle, name, grant_type="refresh_token") == value(before, name, grant_type="refresh_token")
    assert value(after, name, grant_type="refresh_token") - value(middle, name, grant_type="refresh_token") == 1


# ---- HTTP ---------------------------------------------------------------------------------------------------


def test_requests_are_labelled_by_route_template_never_by_path(served: Served) -> None:
    missing, unknown = uuid.uuid4(), uuid.uuid4().hex
    before = served.samples()
    with closing(logged_in(served)) as client:
        assert client.get(f"/api/v1/documents/{missing}").status_code == 404
        assert client.get(f"/nulle-part/{unknown}").status_code == 404
    text, after = scrape(served.metrics_port)
    route = "/api/v1/documents/{document_id}"
    labels = {"route": route, "method": "GET", "status": "404"}
    assert value(after, "vault_http_requests_total", **labels) - value(before, "vault_http_requests_total", **labels) == 1
    assert value(after, "vault_http_request_duration_seconds_count", route=route, method="GET") > 0
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    assert value(after, "vault_http_requests_total", **unmatched) - value(before, "vault_http_requests_total",
                                                                             **unmatched) == 1
    assert str(missing) not in text and unknown not in text and "nulle-part" not in text


def test_metrics_are_not_on_the_public_port(served: Served) -> None:
    assert httpx.get(f"{served.url}/metrics").status_code == 404
    text, _ = scrape(served.metrics_port)
    assert "# TYPE vault_http_requests_total counter" in text


# ---- the metrics port's settings -------------------------------------------------------------------------------


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "VAULT_DATA_DIR": str(tmp_path / "var"), "TMPDIR": str(tmp_path)}
    done = subprocess.run([*VAULT, "db", "upgrade"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return env


@pytest.mark.parametrize("bad", ["neuf-mille", "70000", "-1", "9100.5"])
def test_a_bad_metrics_port_is_refused_before_serving(tmp_path: Path, bad: str) -> None:
    env = {**os.environ, "VAULT_DATA_DIR": str(tmp_path), "VAULT_METRICS_PORT": bad}
    done = subprocess.run([*VAULT, "serve", "--port", str(free_port())], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 2
    assert "VAULT_METRICS_PORT must be a port number (1-65535), or 0 for no metrics" in done.stderr


def test_the_metrics_port_may_not_be_the_service_port(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "VAULT_DATA_DIR": str(tmp_path), "VAULT_METRICS_PORT": str(port)}
    done = subprocess.run([*VAULT, "serve", "--port", str(port), "--workers", "2"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 2
    assert f"VAULT_METRICS_PORT={port} is the service's own port" in done.stderr
    assert not list(tmp_path.glob("vault-metrics-*")), "the workers' directory is removed"


@pytest.mark.parametrize("command", [["serve", "--workers", "2"], ["serve"], ["worker"]])
def test_a_metrics_port_in_use_is_a_clear_error(sqlite_env: dict[str, str], tmp_path: Path,
                                                command: list[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [*command, "--port", str(free_port())] if command[0] == "serve" else command
        done = subprocess.run([*VAULT, *args], capture_output=True, text=True,
                              env={**sqlite_env, "VAULT_METRICS_PORT": str(port)}, timeout=120)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr and "VAULT_METRICS_PORT" in done.stderr
    assert not list(tmp_path.glob("vault-metrics-*")), "the workers' directory is removed"


def test_the_workers_directory_is_made_fresh_and_removed_at_exit(sqlite_env: dict[str, str], tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    stale = {**sqlite_env, "VAULT_METRICS_PORT": str(metrics_port), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "old")}
    (tmp_path / "old").mkdir()
    with open(log, "wb") as output:
        process = subprocess.Popen([*VAULT, "serve", "--port", str(port), "--workers", "2"], env=stale,
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", process, log)
        [made] = tmp_path.glob("vault-metrics-*")
        assert {path.name.split("_")[0] for path in made.iterdir()} >= {"counter", "histogram"}
        assert not list((tmp_path / "old").iterdir()), "an inherited directory is not used"
        assert value(scrape(metrics_port)[1], "vault_http_requests_total", route="/healthz", method="GET",
                     status="200") >= 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0, log.read_text()[-2000:]
    assert not made.exists()


def test_the_worker_serves_its_own_metrics(sqlite_env: dict[str, str], tmp_path: Path) -> None:
    metrics_port = free_port()
    log = tmp_path / "worker.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([*VAULT, "worker"], env={**sqlite_env, "VAULT_METRICS_PORT": str(metrics_port)},
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{metrics_port}/metrics", process, log)
        text, _ = scrape(metrics_port)
        assert "# TYPE vault_logins_total counter" in text and "process_cpu_seconds_total" in text
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0, log.read_text()[-2000:]


# ---- the object store ------------------------------------------------------------------------------------------


def test_object_store_errors_are_counted_by_operation(tmp_path: Path) -> None:
    """A store that does not answer (nothing listens on its port): each failed operation counts once,
    under the S3 operation's name."""
    settings = Settings(data_dir=tmp_path, storage_backend="s3", s3_bucket="nowhere",
                        s3_endpoint_url=f"http://127.0.0.1:{free_port()}", s3_access_key_id="x",
                        s3_secret_access_key=SecretStr("y"), s3_connect_timeout_seconds=1)
    store = S3BlobStore(settings)

    def errors(operation: str) -> float:
        return REGISTRY.get_sample_value("vault_object_store_errors_total", {"operation": operation}) or 0.0

    before = errors("head_object")
    for _ in range(2):
        with pytest.raises(BlobStoreUnavailable):
            store.size("documents/absent")
    assert errors("head_object") - before == 2

