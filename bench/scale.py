"""Two Citizen Vault replicas and a worker behind HAProxy act as one: a bounded mixed load, one
replica killed (SIGKILL) and restarted in the middle of it, then checks.

Starts PostgreSQL, SeaweedFS and clamd (as the tests do, tests/services.py), an SMTP sink, two
`vault serve` replicas sharing them (and the keyring's folder), a `vault worker`, and Debian's
HAProxy in front (health checks on /readyz, as deploy/haproxy.cfg). Then, for one replica (the other
in maintenance through HAProxy's runtime API) and for two:

- citizens (one thread each, each from its own client address) log in, upload a document, list
  their vault, download a document and check its SHA-256, register a new account now and then
  (a mail goes through the outbox and the worker);
- an app obtains codes for them (consent remembered), exchanges them at /token and calls /userinfo.

During the two-replica phase, replica 1 is killed with SIGKILL and started again, and the worker
too. Printed: throughput and p50/p95 per operation for each phase, the errors inside the kill
window (requests in flight on the killed replica) and outside it (there must be none), and the
checks: no document lost or corrupted (every acknowledged upload downloads with its SHA-256 from
each replica; an upload whose answer was lost is either absent or whole), every login session and
every access token valid on either replica, every mail delivered exactly once (no job run twice).

Usage: .venv/bin/python bench/scale.py [--seconds 30] [--concurrency 4] [--document-kb 256]
Exit status 0 when every check passes. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import httpx
from common import STOPPABLE, Server, group_cpu_seconds, run_cli, service_pgid, stop_everything, vault_env
from oidc import PASSWORD, REDIRECT_URI, SCOPE, FlowError, authorize, exchange, pick_form

from tests.services import free_port, start_clamd, start_postgres, start_seaweedfs

BUCKET = "citizen-vault-scale"
HAPROXY = "/usr/sbin/haproxy"
TIMEOUT = 60.0
OPERATIONS = ("login", "upload", "list", "download", "register", "code", "token", "userinfo")
IDENTITY = {"given_name": "Anne", "family_name": "Charge", "birthdate": "1980-01-01", "gender": "female",
            "birthplace": "75056", "birthcountry": "99100"}
stopping = threading.Event()


# ---- the parts ----------------------------------------------------------------------------------------


class MailSink:
    """An SMTP server (aiosmtpd) that keeps every message it receives: Message-ID and recipients."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.lock = threading.Lock()
        self.messages: list[tuple[str, list[str], str]] = []  # (Message-ID, recipients, subject)
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802, ARG002
                message = message_from_bytes(envelope.original_content or envelope.content)
                with sink.lock:
                    sink.messages.append((str(message["Message-ID"]), list(envelope.rcpt_tos),
                                          str(message["Subject"])))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


class HAProxy:
    """Debian's HAProxy with the replicas as one backend; its runtime API (a UNIX socket) puts a
    server in maintenance or back and reports each server's state."""

    def __init__(self, base: Path, replicas: dict[str, int]) -> None:
        if not Path(HAPROXY).exists():
            raise SystemExit("HAProxy is not installed (apt-get install haproxy; `make test` installs it)")
        self.port = free_port()
        self.socket = base / "haproxy.sock"
        servers = "\n".join(f"    server {name} 127.0.0.1:{port} check" for name, port in replicas.items())
        # As deploy/haproxy.cfg, except: plain HTTP on loopback, a health check every 2 s (the deployment's
        # 5 s would stretch the kill window; a dead replica refuses connections, which HAProxy retries on
        # the other one anyway), and the client's X-Forwarded-For kept and extended (each load thread plays
        # a citizen at an address of its own, as they would arrive from the Internet). Server state changes
        # are logged, and counted in the report.
        config = base / "haproxy.cfg"
        config.write_text(f"""global
    maxconn 1024
    stats socket {self.socket} mode 600 level admin
    log stdout format raw local0 notice

defaults
    mode http
    log global
    option dontlog-normal
    timeout connect 2s
    timeout client 60s
    timeout server 120s
    timeout http-request 30s
    retries 2
    option redispatch

frontend http
    bind 127.0.0.1:{self.port}
    option forwardfor
    default_backend vault

backend vault
    balance leastconn
    option httpchk
    http-check send meth GET uri /readyz hdr Host localhost
    http-check expect status 200
    timeout check 5s
    default-server inter 2s fall 2 rise 2
{servers}
""")
        check = Server("haproxy-check", [HAPROXY, "-c", "-q", "-f", str(config)], env=dict(os.environ),
                       log=base / "haproxy-check.log")
        if check.popen.wait(timeout=30) != 0:
            raise RuntimeError(f"HAProxy refuses its configuration:\n{check.tail()}")
        self.server = Server("haproxy", [HAPROXY, "-db", "-f", str(config)], env=dict(os.environ),
                             log=base / "haproxy.log")
        self.url = f"http://127.0.0.1:{self.port}"

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while data := sock.recv(65536):
                chunks.append(data)
        return b"".join(chunks).decode()

    def states(self) -> dict[str, str]:
        """Each server's status as HAProxy sees it: UP, DOWN, MAINT…"""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == "vault" and row.get("svname") not in ("FRONTEND", "BACKEND"):
                out[row["svname"]] = row["status"].split(" ")[0]
        return out

    def wait_state(self, name: str, wanted: str, timeout: float = 60.0) -> float:
        started = time.monotonic()
        while self.states().get(name) != wanted:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"HAProxy: {name} is {self.states().get(name)}, not {wanted}, after {timeout:.0f} s")
            time.sleep(0.1)
        return time.monotonic() - started


@dataclass
class Deployment:
    base: Path
    env: dict[str, str]
    replica_ports: dict[str, int]
    replicas: dict[str, Server]
    worker: Server
    haproxy: HAProxy
    mail: MailSink
    client_id: str
    client_secret: str
    issuer: str
    token_endpoint: str = ""
    authorization_endpoint: str = ""
    userinfo_endpoint: str = ""
    restarts: Counter[str] = field(default_factory=Counter)
    services: dict[str, int | None] = field(default_factory=dict)  # PostgreSQL, SeaweedFS, clamd: process groups
    lost_cpu: Counter[str] = field(default_factory=Counter)  # CPU seconds of killed processes, read just before

    def cpu_exact(self) -> dict[str, float]:
        """As ``cpu``, from the scheduler's nanosecond counters of every thread (the clock-tick counts
        are 10 ms steps, coarser than one token exchange); for one operation at a time."""
        groups = {"replicas": [s.pid for s in self.replicas.values()], **{k: [v] for k, v in self.services.items() if v},
                  "haproxy": [self.haproxy.server.pid]}
        return {party: sum(thread_cpu_seconds(g) for g in pgids) for party, pgids in groups.items()}

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far by party (replicas together, the worker, each service, HAProxy), killed
        processes included."""
        out = Counter(self.lost_cpu)
        for server in self.replicas.values():
            out["replicas"] += group_cpu_seconds(server.pid)
        out["worker"] += group_cpu_seconds(self.worker.pid)
        for name, pgid in self.services.items():
            out[name] += group_cpu_seconds(pgid)
        out["haproxy"] += group_cpu_seconds(self.haproxy.server.pid)
        return dict(out)

    def kill(self, server: Server, party: str) -> None:
        self.lost_cpu[party] += group_cpu_seconds(server.pid)
        os.killpg(server.pid, signal.SIGKILL)
        server.popen.wait()

    def start_replica(self, name: str) -> Server:
        suffix = f"-{self.restarts[name]}" if self.restarts[name] else ""
        server = Server(name, [sys.executable, "-m", "vault.cli", "serve", "--host", "127.0.0.1",
                               "--port", str(self.replica_ports[name]), "--workers", "1"],
                        env=self.env, log=self.base / f"{name}{suffix}.log")
        self.restarts[name] += 1
        self.replicas[name] = server
        return server

    def start_worker(self) -> Server:
        suffix = f"-{self.restarts['worker']}" if self.restarts["worker"] else ""
        self.restarts["worker"] += 1
        self.worker = Server("worker", [sys.executable, "-m", "vault.cli", "worker"], env=self.env,
                             log=self.base / f"worker{suffix}.log")
        return self.worker

    def replica_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.replica_ports[name]}"


def thread_cpu_seconds(pgid: int) -> float:
    """CPU seconds of the live threads of a process group, from /proc/<pid>/task/<tid>/schedstat (ns)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            if int(stat[stat.rindex(")") + 2:].split()[2]) != pgid:
                continue
            for task in os.scandir(Path(entry.path, "task")):
                total += int(Path(task.path, "schedstat").read_text().split()[0])
        except (OSError, ValueError):
            continue
    return total / 1e9


def wait_ready(server: Server, url: str, timeout: float = 90.0) -> float:
    started = time.monotonic()
    while True:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited during startup:\n{server.tail()}")
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{server.name} was not ready after {timeout:.0f} s:\n{server.tail()}")
        time.sleep(0.1)


def start_deployment(base: Path, citizens: list[str]) -> Deployment:
    postgres = start_postgres(base / "postgres")
    STOPPABLE.append(postgres)
    clamd = start_clamd(base / "clamd")
    STOPPABLE.append(clamd)
    s3 = start_seaweedfs(base / "seaweedfs")
    STOPPABLE.append(s3)
    mail = MailSink()
    STOPPABLE.append(mail)
    ports = {"vault-1": free_port(), "vault-2": free_port()}
    haproxy = HAProxy(base, ports)
    issuer = haproxy.url  # both replicas answer as the one address the citizens and apps know
    data_dir = base / "vault-data"  # shared by the replicas, as the keyring's volume in deploy/compose.yaml
    data_dir.mkdir()
    env = vault_env(
        database_url=postgres.create_database("vault_scale"), issuer=issuer, data_dir=data_dir, s3=s3,
        bucket=BUCKET, antivirus="clamd", VAULT_CLAMD_ADDRESS=clamd.address,
        VAULT_QUOTA_MB="4096", VAULT_QUOTA_DOCUMENTS="1000",
        VAULT_SMTP_URL=f"smtp://127.0.0.1:{mail.port}", VAULT_JOBS="worker", VAULT_MAIL_POLL_SECONDS="1",
        VAULT_TRUSTED_PROXIES="127.0.0.1",  # HAProxy: the X-Forwarded-For it passes on is believed
    )
    run_cli(["db", "upgrade"], env)
    run_cli(["storage", "init"], env)
    for email in citizens:
        run_cli(["citizen", "create", "--email", email, *(f"--{k.replace('_', '-')}={v}" for k, v in IDENTITY.items()),
                 "--password-stdin", "--verified", "--json"], env, stdin=PASSWORD + "\n")
    app = json.loads(run_cli(["client", "create", "--name", "Scale app", "--redirect-uri", REDIRECT_URI,
                              "--scope", SCOPE, "--auth-method", "client_secret_post", "--json"], env))
    deployment = Deployment(base, env, ports, {}, None, haproxy, mail,  # type: ignore[arg-type]
                            app["client_id"], app["client_secret"], issuer,
                            services={"postgresql": service_pgid(postgres), "seaweedfs": service_pgid(s3),
                                      "clamd": service_pgid(clamd)})
    for name in ports:
        deployment.start_replica(name)
    deployment.start_worker()
    for name, server in deployment.replicas.items():
        wait_ready(server, deployment.replica_url(name))
    for name in ports:
        haproxy.wait_state(name, "UP")
    meta = httpx.get(issuer + "/.well-known/openid-configuration", timeout=10).json()
    deployment.authorization_endpoint = meta["authorization_endpoint"]
    deployment.token_endpoint = meta["token_endpoint"]
    deployment.userinfo_endpoint = meta["userinfo_endpoint"]
    return deployment


# ---- the load -----------------------------------------------------------------------------------------


@dataclass
class Event:
    operation: str
    started: float  # time.monotonic()
    seconds: float
    error: str | None = None


@dataclass
class Upload:
    citizen: str
    title: str
    sha256: str
    size: int
    document_id: str | None  # None: the answer was lost (the upload may or may not have happened)


@dataclass
class Record:
    """What the load did and saw, shared by its threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    events: list[Event] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    sessions: list[tuple[str, httpx.Cookies]] = field(default_factory=list)  # (citizen, cookies of a login)
    tokens: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)
    # While set (one citizen acting alone): each operation's CPU by party, read before and after it.
    probe: Callable[[], dict[str, float]] | None = None
    cpu_by_operation: dict[str, list[dict[str, float]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)


class OperationFailed(Exception):
    pass


@contextmanager
def timed(record: Record, operation: str) -> Iterator[None]:
    cpu_before = record.probe() if record.probe else {}
    started = time.monotonic()
    try:
        yield
    except (httpx.HTTPError, OperationFailed, FlowError, KeyError, ValueError) as exc:
        record.add(Event(operation, started, time.monotonic() - started, f"{type(exc).__name__}: {str(exc)[:120]}"))
        raise OperationFailed(operation) from exc
    record.add(Event(operation, started, time.monotonic() - started))
    if record.probe:
        cpu_after = record.probe()
        record.cpu_by_operation[operation].append({k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after})


def expect(response: httpx.Response, *statuses: int) -> httpx.Response:
    if response.status_code not in statuses:
        raise OperationFailed(f"HTTP {response.status_code} at {response.request.url.path}")
    return response


class Citizen:
    """One load thread: a citizen at an address of their own, and the app acting for them."""

    def __init__(self, deployment: Deployment, record: Record, email: str, index: int, document: bytes) -> None:
        self.d, self.record, self.email, self.index = deployment, record, email, index
        self.address = f"198.51.100.{index + 1}"
        self.document_size = len(document)
        self.browser = self._browser()
        self.app = httpx.Client(timeout=TIMEOUT)
        self.documents: list[tuple[str, str]] = []  # (id, sha256) of this citizen's acknowledged uploads
        self.count = 0
        self.registrations = 0

    def _browser(self, address: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.d.issuer, follow_redirects=False, timeout=TIMEOUT,
                            headers={"X-Forwarded-For": address or self.address})

    def login(self) -> None:
        """A new browser (the previous session stays valid: it is checked at the end)."""
        self.browser = self._browser()
        with timed(self.record, "login"):
            page = expect(self.browser.get("/login"), 200)
            form = pick_form(page.text)
            if form is None:
                raise OperationFailed("no login form")
            _, data, action = form
            data.update(email=self.email, password=PASSWORD)
            expect(self.browser.post(urljoin(str(page.url), action), data=data), 303)
        with self.record.lock:
            self.record.sessions.append((self.email, self.browser.cookies))

    def upload(self) -> None:
        self.count += 1
        body = b"%PDF-1.7\n" + os.urandom(self.document_size - 15) + b"\n%%EOF"
        digest = hashlib.sha256(body).hexdigest()
        title = f"scale {self.index}-{self.count}"
        entry = Upload(self.email, title, digest, len(body), None)
        with self.record.lock:
            self.record.uploads.append(entry)
        with timed(self.record, "upload"):
            answer = expect(self.browser.post("/api/v1/documents", files={"file": ("avis.pdf", body, "application/pdf")},
                                              data={"type": "tax_notice", "title": title},
                                              headers={"X-CSRF-Token": self.browser.cookies["csrf"]}), 201).json()
        if answer.get("sha256") not in (None, digest):
            raise OperationFailed(f"upload answered another SHA-256 for {title}")
        entry.document_id = answer["id"]
        self.documents.append((answer["id"], digest))

    def list(self) -> None:
        with timed(self.record, "list"):
            expect(self.browser.get("/api/v1/documents", params={"limit": 50}), 200).json()

    def download(self) -> None:
        if not self.documents:
            return
        document_id, digest = self.documents[secrets.randbelow(len(self.documents))]
        with timed(self.record, "download"):
            body = expect(self.browser.get(f"/api/v1/documents/{document_id}/content"), 200).content
            if hashlib.sha256(body).hexdigest() != digest:
                raise OperationFailed(f"document {document_id} downloaded with another SHA-256")

    def register(self) -> None:
        email = f"nouveau-{self.index}-{secrets.token_hex(4)}@example.org"
        self.registrations += 1
        # A newcomer each time, from an address of their own: the service mails at most
        # VAULT_MAIL_REQUESTS_FREE_PER_ADDRESS registrations an hour for one address (then answers
        # alike and sends nothing), which one load thread would reach in a long run.
        visitor = self._browser(f"100.64.{self.index}.{self.registrations % 250 + 1}")
        with visitor, timed(self.record, "register"):
            page = expect(visitor.get("/register"), 200)
            token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            expect(visitor.post("/register", data={"email": email, "password": PASSWORD + " neuf",
                                                   "csrf_token": token, **IDENTITY}), 200, 303)
        with self.record.lock:
            self.record.registered.append(email)

    def app_round(self) -> None:
        """The app sends the citizen's browser to /authorize (consent remembered after the first time),
        exchanges the code, and reads the userinfo."""
        with timed(self.record, "code"):
            grant = authorize(self.d, self.browser, self.email, prompt=None)  # type: ignore[arg-type]
        with timed(self.record, "token"):
            tokens = exchange(self.d, self.app, grant)  # type: ignore[arg-type]
        with timed(self.record, "userinfo"):
            info = expect(self.app.get(self.d.userinfo_endpoint,
                                       headers={"Authorization": f"Bearer {tokens['access_token']}"}), 200).json()
            if not info.get("sub"):
                raise OperationFailed("userinfo without sub")
        with self.record.lock:
            self.record.tokens.append(tokens["access_token"])

    def run(self, until: Deadline, register_every: int) -> None:
        rounds = 0
        steps: list[Callable[[], None]] = [self.upload, self.list, self.download, self.app_round]
        while time.monotonic() < until.at and not stopping.is_set():
            rounds += 1
            steps_now = [self.login, *steps] if rounds % 4 == 1 else steps  # a new login now and then
            if register_every and rounds % register_every == 0:
                steps_now = [*steps_now, self.register]
            for step in steps_now:
                if time.monotonic() >= until.at:
                    break
                try:
                    step()
                except OperationFailed:
                    if step is self.login:  # no session: the rest of the round would fail for that reason
                        break


@dataclass
class Deadline:
    """When the load threads stop; the kill can push it back (the restarted replica must serve a while)."""

    at: float


def run_phase(deployment: Deployment, record: Record, citizens: list[Citizen], seconds: float,
              during: Callable[[Deadline], None] | None = None) -> tuple[float, float, dict[str, float]]:
    """The load for ``seconds`` (or longer, if ``during`` pushes the deadline back); returns when the load
    started and ended, and the CPU seconds each party spent meanwhile."""
    cpu_before = deployment.cpu()
    started = time.monotonic()
    until = Deadline(started + seconds)
    threads = [threading.Thread(target=c.run, args=(until, 3), name=f"citizen-{c.index}", daemon=True) for c in citizens]
    for thread in threads:
        thread.start()
    if during is not None:
        during(until)
    for thread in threads:
        thread.join(timeout=max(0.0, until.at - time.monotonic()) + TIMEOUT * 3)
    ended = time.monotonic()
    cpu_after = deployment.cpu()
    return started, ended, {party: cpu_after[party] - cpu_before.get(party, 0.0) for party in cpu_after}


# ---- the kill -----------------------------------------------------------------------------------------


@dataclass
class KillWindow:
    killed_at: float = 0.0
    out_after: float = 0.0  # seconds until HAProxy took the replica out
    restarted_at: float = 0.0
    ready_after: float = 0.0  # seconds from the restart until /readyz answered 200
    back_at: float = 0.0  # HAProxy sends it requests again
    worker_killed_at: float = 0.0
    worker_restarted_at: float = 0.0


def kill_and_restart(deployment: Deployment, window: KillWindow, seconds: float,
                     down_seconds: float) -> Callable[[Deadline], None]:
    """Replica vault-1 killed at a third of the phase and started again ``down_seconds`` later; the
    worker killed at half of it (a mail being sent then is sent once, by the next one) and started again."""

    def worker_kill(started: float) -> None:
        time.sleep(max(0.0, started + seconds / 2 - time.monotonic()))
        window.worker_killed_at = time.monotonic()
        deployment.kill(deployment.worker, "worker")
        time.sleep(1.0)
        window.worker_restarted_at = time.monotonic()
        deployment.start_worker()

    def during(until: Deadline) -> None:
        started = time.monotonic()
        worker_thread = threading.Thread(target=worker_kill, args=(started,), name="worker-kill", daemon=True)
        worker_thread.start()
        time.sleep(seconds / 3)
        replica = deployment.replicas["vault-1"]
        until.at = float("inf")  # the load goes on until the restarted replica has served a while
        window.killed_at = time.monotonic()
        deployment.kill(replica, "replicas")
        window.out_after = deployment.haproxy.wait_state("vault-1", "DOWN")
        time.sleep(max(0.0, down_seconds - window.out_after))
        window.restarted_at = time.monotonic()
        server = deployment.start_replica("vault-1")
        window.ready_after = wait_ready(server, deployment.replica_url("vault-1"))
        deployment.haproxy.wait_state("vault-1", "UP")
        window.back_at = time.monotonic()
        until.at = max(started + seconds, window.back_at + seconds / 3)
        worker_thread.join()

    return during


# ---- the checks ---------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def check_documents(deployment: Deployment, record: Record) -> list[Check]:
    acknowledged = [u for u in record.uploads if u.document_id]
    lost_answers = [u for u in record.uploads if not u.document_id]
    bad: list[str] = []
    browsers: dict[str, httpx.Cookies] = {}
    for email, cookies in record.sessions:
        browsers[email] = cookies
    by_title: dict[str, Upload] = {u.title: u for u in record.uploads}
    stored: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for email, cookies in browsers.items():
        with httpx.Client(base_url=deployment.issuer, cookies=cookies, timeout=TIMEOUT) as client:
            offset = 0
            while True:
                page = expect(client.get("/api/v1/documents", params={"limit": 200, "offset": offset}), 200).json()
                stored[email].extend(page["items"])
                offset += len(page["items"])
                if not page["items"] or offset >= page["total"]:
                    break
    seen_ids = {item["id"] for items in stored.values() for item in items}
    missing = [u.title for u in acknowledged if u.document_id not in seen_ids]
    completed_unanswered = 0
    for email, items in stored.items():
        for item in items:
            upload = by_title.get(item.get("title", ""))
            if upload is None or upload.citizen != email:
                bad.append(f"unexpected document {item['id']} ({item.get('title')!r}) in {email}'s vault")
            elif upload.document_id is None:
                completed_unanswered += 1  # its answer was lost; it is checked whole below
                upload.document_id = item["id"]
    # Every stored document, whole, from each replica directly (not through HAProxy).
    for name in deployment.replica_ports:
        for email, cookies in browsers.items():
            with httpx.Client(base_url=deployment.replica_url(name), cookies=cookies, timeout=TIMEOUT) as client:
                for item in stored[email]:
                    upload = by_title.get(item.get("title", ""))
                    if upload is None:
                        continue
                    answer = client.get(f"/api/v1/documents/{item['id']}/content")
                    if answer.status_code != 200:
                        bad.append(f"{name}: document {item['id']}: HTTP {answer.status_code}")
                    elif hashlib.sha256(answer.content).hexdigest() != upload.sha256:
                        bad.append(f"{name}: document {item['id']} ({upload.title}) corrupted")
    total = sum(len(items) for items in stored.values())
    return [
        Check("no acknowledged document lost", not missing,
              f"{len(acknowledged)} acknowledged uploads, {len(missing)} missing" + (f": {missing[:5]}" if missing else "")),
        Check("no document corrupted, each whole from either replica", not bad,
              f"{total} stored documents × {len(deployment.replica_ports)} replicas downloaded and hashed; "
              f"{len(lost_answers)} uploads lost their answer, {completed_unanswered} of them stored (whole), "
              f"the rest absent" + (f"; problems: {bad[:5]}" if bad else "")),
    ]


def check_sessions_and_tokens(deployment: Deployment, record: Record) -> list[Check]:
    bad_sessions, bad_tokens = [], []
    for name in deployment.replica_ports:
        url = deployment.replica_url(name)
        for email, cookies in record.sessions:
            with httpx.Client(base_url=url, cookies=cookies, timeout=TIMEOUT) as client:
                status = client.get("/api/v1/documents", params={"limit": 1}).status_code
                if status != 200:
                    bad_sessions.append(f"{name}: {email}'s session: HTTP {status}")
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            for token in record.tokens:
                status = client.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code
                if status != 200:
                    bad_tokens.append(f"{name}: HTTP {status}")
    replicas = len(deployment.replica_ports)
    return [
        Check("every login session valid on either replica", not bad_sessions,
              f"{len(record.sessions)} sessions × {replicas} replicas" + (f"; {bad_sessions[:5]}" if bad_sessions else "")),
        Check("every access token valid on either replica", not bad_tokens,
              f"{len(record.tokens)} tokens × {replicas} replicas at /userinfo" + (f"; {bad_tokens[:5]}" if bad_tokens else "")),
    ]


def check_mail(deployment: Deployment, record: Record, timeout: float = 90.0) -> list[Check]:
    """Every registration's mail delivered once: waits for the outbox to empty (the worker retries
    what a killed worker had claimed once the claim expires)."""
    import psycopg

    deadline = time.monotonic() + timeout
    url = deployment.env["VAULT_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    waiting = -1
    while time.monotonic() < deadline:
        with psycopg.connect(url) as conn:
            waiting = conn.execute("SELECT count(*) FROM mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL"
                                   ).fetchone()[0]  # type: ignore[index]
        if waiting == 0:
            break
        time.sleep(1)
    with deployment.mail.lock:
        messages = list(deployment.mail.messages)
    twice = [mid for mid, n in Counter(mid for mid, _, _ in messages).items() if n > 1]
    received = Counter(r for _, recipients, _ in messages for r in recipients)
    not_once = [email for email in record.registered if received[email] != 1]
    return [
        Check("every mail delivered, none twice (no job run twice)", waiting == 0 and not twice and not not_once,
              f"{len(record.registered)} registrations, {len(messages)} messages received, "
              f"{waiting} still waiting, {len(twice)} Message-IDs twice"
              + (f", addresses without exactly one mail: {not_once[:5]}" if not_once else "")),
    ]


# ---- the report ---------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def phase_table(title: str, events: list[Event], seconds: float, cpu: dict[str, float]) -> list[str]:
    lines = [f"\n{title} ({seconds:.0f} s)",
             f"  {'operation':<10} {'done':>6} {'per s':>7} {'p50 ms':>8} {'p95 ms':>8} {'errors':>7}"]
    for operation in OPERATIONS:
        done = [e.seconds * 1000 for e in events if e.operation == operation and e.error is None]
        errors = sum(1 for e in events if e.operation == operation and e.error is not None)
        if not done and not errors:
            continue
        p50 = statistics.median(done) if done else 0.0
        lines.append(f"  {operation:<10} {len(done):>6} {len(done) / seconds:>7.2f} {p50:>8.0f}"
                     f" {pct(done, 0.95):>8.0f} {errors:>7}")
    operations = sum(1 for e in events if e.error is None)
    lines.append("  CPU seconds by party (share of the machine's cores over the phase): " + ", ".join(
        f"{party} {value:.1f} ({value / seconds / (os.cpu_count() or 1):.0%})" for party, value in cpu.items()))
    if operations:
        lines.append(f"  CPU per operation, all parties: {sum(cpu.values()) / operations * 1000:.0f} ms "
                     f"(replicas {cpu.get('replicas', 0.0) / operations * 1000:.0f} ms, PostgreSQL "
                     f"{cpu.get('postgresql', 0.0) / operations * 1000:.0f} ms)")
    return lines


def alone_table(cpu_by_operation: dict[str, list[dict[str, float]]]) -> list[str]:
    parties = ("replicas", "postgresql", "seaweedfs", "clamd", "haproxy")
    lines = ["\nCPU per operation, one citizen acting alone (mean ms; the replica's includes argon2id for login"
             " and register)", f"  {'operation':<10} {'n':>4} " + " ".join(f"{p:>10}" for p in parties)]
    for operation in OPERATIONS:
        samples = cpu_by_operation.get(operation, [])
        if samples:
            lines.append(f"  {operation:<10} {len(samples):>4} " + " ".join(
                f"{statistics.fmean(s.get(p, 0.0) for s in samples) * 1000:>10.1f}" for p in parties))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase (one, then two replicas)")
    parser.add_argument("--concurrency", type=int, default=4, help="citizens acting at once (one thread each)")
    parser.add_argument("--document-kb", type=int, default=256, help="size of each uploaded document")
    parser.add_argument("--solo-seconds", type=float, default=30.0,
                        help="length of the first measure: one citizen alone, each operation's CPU")
    parser.add_argument("--down-seconds", type=float, default=5.0, help="how long the killed replica stays down")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (servers' logs)")
    args = parser.parse_args()
    for name, value, low, high in (("--seconds", args.seconds, 10, 600), ("--concurrency", args.concurrency, 1, 32),
                                   ("--document-kb", args.document_kb, 1, 64 * 1024),
                                   ("--down-seconds", args.down_seconds, 0, 120),
                                   ("--solo-seconds", args.solo_seconds, 5, 600)):
        if not low <= value <= high:
            parser.error(f"{name} must be between {low} and {high}")

    def on_signal(signum: int, frame: Any) -> None:
        stopping.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    base = Path(tempfile.mkdtemp(prefix="vault-scale-"))
    ok = False
    try:
        emails = [f"citoyen-{i}@example.org" for i in range(args.concurrency)]
        print(f"starting PostgreSQL, SeaweedFS, clamd, HAProxy, two replicas and a worker in {base} …", flush=True)
        deployment = start_deployment(base, emails)
        load_before = os.getloadavg()
        document = b"x" * (args.document_kb * 1024)
        record = Record()
        citizens = [Citizen(deployment, record, email, i, document) for i, email in enumerate(emails)]
        for citizen in citizens:  # each citizen's first login and consent, untimed
            citizen.login()
            authorize(deployment, citizen.browser, citizen.email, prompt="consent")  # type: ignore[arg-type]
        record.events.clear()

        # Alone: one citizen, one operation at a time, each operation's CPU read before and after it.
        deployment.haproxy.command("set server vault/vault-2 state maint")
        deployment.haproxy.wait_state("vault-2", "MAINT")
        record.probe = deployment.cpu_exact
        run_phase(deployment, record, citizens[:1], args.solo_seconds)
        record.probe = None
        solo = alone_table(record.cpu_by_operation)
        record.events.clear()
        deployment.haproxy.command("set server vault/vault-2 state ready")
        deployment.haproxy.wait_state("vault-2", "UP")

        log_start = len(deployment.haproxy.server.log.read_text(errors="replace").splitlines())
        deployment.haproxy.command("set server vault/vault-2 state maint")
        deployment.haproxy.wait_state("vault-2", "MAINT")
        one_start, one_end, one_cpu = run_phase(deployment, record, citizens, args.seconds)
        deployment.haproxy.command("set server vault/vault-2 state ready")
        deployment.haproxy.wait_state("vault-2", "UP")
        window = KillWindow()
        two_start, two_end, two_cpu = run_phase(deployment, record, citizens, args.seconds,
                                       kill_and_restart(deployment, window, args.seconds, args.down_seconds))
        load_after = os.getloadavg()

        one = [e for e in record.events if one_start <= e.started < one_end]
        two = [e for e in record.events if two_start <= e.started < two_end]
        print(f"\nmachine: {os.cpu_count()} cores, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after;"
              f" {args.concurrency} citizens, documents of {args.document_kb} KiB, argon2id at the production cost")
        for line in [*solo, *phase_table("one replica (vault-2 in maintenance)", one, one_end - one_start, one_cpu),
                     *phase_table("two replicas, vault-1 killed and restarted", two, two_end - two_start, two_cpu)]:
            print(line)
        # The kill window: from the SIGKILL until HAProxy sends the restarted replica requests again.
        inside = [e for e in two if e.error and window.killed_at - 0.5 <= e.started + e.seconds
                  and e.started <= window.back_at]
        outside = [e for e in record.events if e.error and e not in inside]
        print(f"\nkill window: vault-1 killed at +{window.killed_at - two_start:.1f} s, out of HAProxy after "
              f"{window.out_after:.1f} s, restarted after {window.restarted_at - window.killed_at:.1f} s, ready "
              f"{window.ready_after:.1f} s later, back in HAProxy at +{window.back_at - two_start:.1f} s; worker killed "
              f"at +{window.worker_killed_at - two_start:.1f} s and restarted 1 s later")
        changes = [line for line in deployment.haproxy.server.log.read_text(errors="replace").splitlines()[log_start:]
                   if line.startswith("Server vault/") and ("DOWN" in line or " UP" in line)]
        print(f"  HAProxy's server state changes during the load: {len(changes)} (two missed health checks take a"
              " replica out; vault-2's maintenance in the first phase included)")
        for line in changes[:12]:
            print("    " + line.split(", check duration")[0].split(". ")[0][:150])
        print(f"  errors inside the window (requests in flight on the killed replica): {len(inside)}")
        for reason, count in Counter(f"{e.operation}: {e.error}" for e in inside).most_common(8):
            print(f"    {count} × {reason}")
        print(f"  errors outside the window: {len(outside)}")
        for reason, count in Counter(f"{e.operation}: {e.error}" for e in outside).most_common(8):
            print(f"    {count} × {reason}")

        checks = [Check("no error outside the kill window", not outside, f"{len(outside)} errors")]
        checks += check_documents(deployment, record)
        checks += check_sessions_and_tokens(deployment, record)
        checks += check_mail(deployment, record)
        for server in [*deployment.replicas.values(), deployment.worker]:
            if not server.alive():
                checks.append(Check(f"{server.name} still running", False, server.tail(5)))
        print("\nchecks:")
        for check in checks:
            print(f"  [{'pass' if check.passed else 'FAIL'}] {check.name}: {check.detail}")
        ok = all(c.passed for c in checks)
        print("\nall checks pass" if ok else "\nSOME CHECKS FAILED", flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        stopping.set()
        stop_everything()
        if args.keep or not ok:
            print(f"logs kept in {base}")
        else:
            import shutil

            shutil.rmtree(base, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
