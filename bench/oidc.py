"""Citizen Vault's OpenID Connect provider against panva's oidc-provider (Node), on this machine.

Measures, for both providers configured alike (code flow, PKCE S256, pairwise sub, ES256 ID
tokens, scopes openid/profile/email, client_secret_post, argon2id password checks at the same cost):

1. complete flows per second: a fresh browser (new cookie jar, new connection) per flow runs
   authorize -> login page -> login (argon2id) -> consent page -> allow -> code -> token exchange,
   and the ID token is checked (alg, iss, aud, nonce);
2. code-for-token exchanges per second: codes are obtained first (untimed, by logged-in browsers
   whose consent is remembered), then only the POST /token requests are timed;
3. userinfo requests (GET, Bearer access token) and token introspections (RFC 7662, POST with the
   app's client_secret_post credentials) per second, with access tokens of the exchanges.

Usage: .venv/bin/python bench/oidc.py [--flows N] [--exchanges N] [--userinfo N] [--introspections N]
       [--concurrency C] [--workers W] [--oidc-provider-storage postgres|memory]
See bench/README.md for what is compared and why.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import httpx
from common import SERVERS, Server, proc_stats, run_cli

from tests.services import free_port, start_postgres

NODE_DIR = ROOT / "bench" / "oidc-provider"
REDIRECT_URI = "http://127.0.0.1:9/cb"  # never contacted: the flow stops at the redirect
SCOPE = "openid profile email"
PASSWORD = "un chat vert mange des prunes au banc"
REQUEST_TIMEOUT = 60.0
MAX_STEPS = 12  # redirects and pages in one authorization, at most
PHASE_DEADLINE = 600.0  # a timed phase gives up after this many seconds
CODE_BATCH = 300  # codes live 60 s on both sides: obtain and exchange them in batches
CODE_BATCH_SECONDS = 20.0

FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S | re.I)
ATTR = re.compile(r'([a-zA-Z_:-]+)\s*=\s*"([^"]*)"')
INPUT = re.compile(r"<input\b([^>]*)>", re.I)

stopping = threading.Event()


# ---- processes -----------------------------------------------------------------------------------


def tree_cpu_seconds(root: int | None) -> float:
    """CPU time (user + system) of a server: the process ``root``, every live process in its process
    group or descending from it (workers; PostgreSQL's backends, which leave the group), plus what
    the children they reaped had used."""
    if root is None:
        return 0.0
    procs = proc_stats()  # pid -> (ppid, pgrp, ticks)

    def belongs(pid: int) -> bool:
        for _ in range(64):
            if pid == root or procs.get(pid, (0, 0, 0))[1] == root:
                return True
            if pid not in procs or pid <= 1:
                return False
            pid = procs[pid][0]
        return False

    return sum(ticks for pid, (_, _, ticks) in procs.items() if belongs(pid)) / os.sysconf("SC_CLK_TCK")


def wait_http(server: Server, url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited during startup:\n{server.tail()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} did not answer {url} within {timeout:.0f} s:\n{server.tail()}")


def ensure_node_modules() -> None:
    if (NODE_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not installed (Node 20+ and npm are needed for the oidc-provider side)")
    print("bench/oidc-provider/node_modules is missing: running npm ci", flush=True)
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=600)


# ---- the providers -----------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    issuer: str
    client_id: str
    client_secret: str
    emails: list[str]
    cpu_groups: list[int | None]
    server: Server
    authorization_endpoint: str = ""
    token_endpoint: str = ""
    jwks_uri: str = ""
    userinfo_endpoint: str = ""
    introspection_endpoint: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def discover(self) -> None:
        meta = httpx.get(self.issuer + "/.well-known/openid-configuration", timeout=10).json()
        assert meta["issuer"] == self.issuer, meta["issuer"]
        self.authorization_endpoint = meta["authorization_endpoint"]
        self.token_endpoint = meta["token_endpoint"]
        self.jwks_uri = meta["jwks_uri"]
        self.userinfo_endpoint = meta["userinfo_endpoint"]
        self.introspection_endpoint = meta["introspection_endpoint"]

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far: (the server's processes, PostgreSQL's when this server uses it)."""
        server, *database = self.cpu_groups
        return tree_cpu_seconds(server), sum(tree_cpu_seconds(g) for g in database)


def start_citizen_vault(base: Path, pg_url: str, workers: int, emails: list[str]) -> Target:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    data_dir = base / "vault-data"
    data_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    env.update(VAULT_DATABASE_URL=pg_url, VAULT_ISSUER=issuer, VAULT_DATA_DIR=str(data_dir))
    run_cli(["db", "upgrade"], env)
    for email in emails:
        run_cli(["citizen", "create", "--email", email, "--given-name", "Anne", "--family-name", "Bench",
                 "--birthdate", "1980-01-01", "--gender", "female", "--birthplace", "75056",
                 "--birthcountry", "99100", "--password-stdin", "--verified", "--json"], env, stdin=PASSWORD + "\n")
    client = json.loads(run_cli(["client", "create", "--name", "Bench", "--redirect-uri", REDIRECT_URI,
                                 "--scope", SCOPE, "--auth-method", "client_secret_post", "--json"], env))
    server = Server("citizen-vault", [sys.executable, "-m", "vault.cli", "serve", "--host", "127.0.0.1",
                                      "--port", str(port), "--workers", str(workers)],
                    cwd=ROOT, env=env, log=base / "citizen-vault.log")
    target = Target("citizen-vault", issuer, client["client_id"], client["client_secret"], emails,
                    [server.popen.pid], server)
    wait_http(server, issuer + "/.well-known/openid-configuration")
    target.discover()
    return target


def start_oidc_provider(base: Path, pg_url: str, workers: int, storage: str, emails: list[str],
                        argon2_params: dict[str, int], name: str) -> Target:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not installed")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    client = {"client_id": "bench-" + secrets.token_urlsafe(12), "client_secret": secrets.token_urlsafe(32),
              "redirect_uri": REDIRECT_URI}
    config = {"issuer": issuer, "port": port, "workers": workers, "storage": storage, "database_url": pg_url,
              "client": client, "accounts": [{"email": e, "password": PASSWORD} for e in emails],
              "argon2": argon2_params}
    config_path = base / f"oidc-provider-{storage}.json"
    config_path.write_text(json.dumps(config))
    config_path.chmod(0o600)
    log = base / f"oidc-provider-{storage}.log"
    server = Server(name, [node, "server.mjs", str(config_path)], cwd=NODE_DIR,
                    env=dict(os.environ, NODE_ENV="production"), log=log)
    deadline = time.monotonic() + 120
    ready: dict[str, Any] | None = None
    while ready is None:
        if not server.alive():
            raise RuntimeError(f"oidc-provider exited during startup:\n{server.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"oidc-provider was not ready after 120 s:\n{server.tail()}")
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith('{"ready":true'):
                ready = json.loads(line)
        time.sleep(0.2)
    target = Target(name, issuer, client["client_id"], client["client_secret"], emails,
                    [server.popen.pid], server, notes=ready)
    target.discover()
    return target


# ---- a browser, driven ------------------------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class FlowError(Exception):
    pass


@dataclass
class Authorization:
    code: str
    verifier: str
    nonce: str
    steps: list[str]
    requests: int


def pick_form(page: str) -> tuple[str, dict[str, str], str] | None:
    """The login form (it has a password field) or the consent form (a decision button)."""
    for attrs, body in FORM.findall(page):
        kind = "login" if 'type="password"' in body else "consent" if 'name="decision"' in body else None
        if kind is None:
            continue
        action = html.unescape(dict(ATTR.findall(attrs)).get("action", ""))
        hidden = {}
        for input_attrs in INPUT.findall(body):
            a = dict(ATTR.findall(input_attrs))
            if a.get("type") == "hidden" and "name" in a:
                hidden[html.unescape(a["name"])] = html.unescape(a.get("value", ""))
        return kind, hidden, action
    return None


def authorize(target: Target, browser: httpx.Client, email: str, *, prompt: str | None) -> Authorization:
    """From the app's redirect to /authorize until the provider sends the browser back with a code,
    logging in and allowing when a page asks for it."""
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    params = {"response_type": "code", "client_id": target.client_id, "redirect_uri": REDIRECT_URI, "scope": SCOPE,
              "state": state, "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256"}
    if prompt:
        params["prompt"] = prompt
    url = target.authorization_endpoint + "?" + urlencode(params)
    response = browser.get(url)
    requests = 1
    steps = []
    for _ in range(MAX_STEPS):
        if response.status_code in (302, 303):
            location = urljoin(str(response.url), response.headers["location"])
            if location.startswith(REDIRECT_URI):
                result = dict(parse_qsl(urlsplit(location).query))
                if "code" not in result:
                    raise FlowError(f"no code: {result}")
                if result.get("state") != state:
                    raise FlowError("state mismatch")
                if result.get("iss", target.issuer) != target.issuer:
                    raise FlowError(f"iss mismatch: {result.get('iss')}")
                return Authorization(result["code"], verifier, nonce, steps, requests)
            if urlsplit(location).netloc != urlsplit(target.issuer).netloc:
                raise FlowError(f"redirect off the provider: {location}")
            response = browser.get(location)
            requests += 1
            continue
        if response.status_code == 200:
            form = pick_form(response.text)
            if form is None:
                raise FlowError(f"page without a login or consent form at {response.url}")
            kind, data, action = form
            steps.append(kind)
            if kind == "login":
                data.update(email=email, password=PASSWORD)
            else:
                data["decision"] = "allow"
            response = browser.post(urljoin(str(response.url), action), data=data)
            requests += 1
            continue
        raise FlowError(f"HTTP {response.status_code} at {response.url.path}: {response.text[:300]!r}")
    raise FlowError(f"more than {MAX_STEPS} steps")


def b64json(part: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def exchange(target: Target, app: httpx.Client, auth: Authorization) -> dict[str, Any]:
    response = app.post(target.token_endpoint, data={
        "grant_type": "authorization_code", "code": auth.code, "redirect_uri": REDIRECT_URI,
        "client_id": target.client_id, "client_secret": target.client_secret, "code_verifier": auth.verifier})
    if response.status_code != 200:
        raise FlowError(f"token: HTTP {response.status_code}: {response.text[:300]!r}")
    body = response.json()
    id_token = body.get("id_token")
    if not id_token or not body.get("access_token"):
        raise FlowError(f"token response without id_token/access_token: {sorted(body)}")
    header_part, claims_part, _ = id_token.split(".")
    header, claims = b64json(header_part), b64json(claims_part)
    if header.get("alg") != "ES256" or claims.get("iss") != target.issuer or claims.get("nonce") != auth.nonce:
        raise FlowError(f"unexpected ID token: {header} {claims}")
    aud = claims.get("aud")
    if target.client_id not in (aud if isinstance(aud, list) else [aud]):
        raise FlowError(f"ID token for another audience: {aud}")
    return body


def userinfo(target: Target, app: httpx.Client, access_token: str) -> dict[str, Any]:
    response = app.get(target.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"})
    if response.status_code != 200:
        raise FlowError(f"userinfo: HTTP {response.status_code}: {response.text[:300]!r}")
    body = response.json()
    if not body.get("sub") or not body.get("email"):
        raise FlowError(f"userinfo without sub/email: {sorted(body)}")
    return body


def introspect(target: Target, app: httpx.Client, access_token: str) -> dict[str, Any]:
    response = app.post(target.introspection_endpoint, data={
        "token": access_token, "token_type_hint": "access_token",
        "client_id": target.client_id, "client_secret": target.client_secret})
    if response.status_code != 200:
        raise FlowError(f"introspection: HTTP {response.status_code}: {response.text[:300]!r}")
    body = response.json()
    if body.get("active") is not True or body.get("client_id") != target.client_id:
        raise FlowError(f"introspection: not active for this client: {body}")
    return body


def new_browser() -> httpx.Client:
    return httpx.Client(follow_redirects=False, timeout=REQUEST_TIMEOUT)


# ---- load -----------------------------------------------------------------------------------------


@dataclass
class Phase:
    done: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    server_cpu: float = 0.0  # the server's processes and PostgreSQL's
    database_cpu: float = 0.0  # PostgreSQL's alone
    client_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def run_parallel(count: int, concurrency: int, job: Callable[[int, int], None], phase: Phase,
                 target: Target) -> None:
    """Run job(worker, index) for index in range(count) on ``concurrency`` threads; the phase's
    wall time, CPU times and errors are added to ``phase``."""
    next_index = iter(range(count))
    lock = threading.Lock()
    deadline = time.monotonic() + PHASE_DEADLINE

    def loop(worker: int) -> None:
        while not stopping.is_set() and time.monotonic() < deadline:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            started = time.perf_counter()
            try:
                job(worker, index)
            except (FlowError, httpx.HTTPError, ValueError, KeyError, AssertionError) as exc:
                with lock:
                    phase.errors[f"{type(exc).__name__}: {str(exc)[:200]}"] += 1
                continue
            elapsed = time.perf_counter() - started
            with lock:
                phase.done += 1
                phase.latencies.append(elapsed)

    threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in range(concurrency)]
    cpu_before, client_before, wall_before = target.cpu(), time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
    phase.seconds += time.perf_counter() - wall_before
    cpu_after = target.cpu()
    phase.server_cpu += sum(cpu_after) - sum(cpu_before)
    phase.database_cpu += cpu_after[1] - cpu_before[1]
    phase.client_cpu += time.process_time() - client_before
    if stopping.is_set():
        raise KeyboardInterrupt


@dataclass
class Results:
    flows: Phase
    exchanges: Phase
    userinfo: Phase
    introspection: Phase
    info: dict[str, Any]

    def phases(self) -> list[tuple[str, Phase]]:
        return [("flow", self.flows), ("exchange", self.exchanges), ("userinfo", self.userinfo),
                ("introspect", self.introspection)]


class Run:
    """The measurements of one provider: warm-up, then chunks of flows and of exchanges (the providers
    take turns, chunk by chunk, so that a change of load on the machine hits them all alike)."""

    def __init__(self, target: Target, concurrency: int) -> None:
        self.target = target
        self.concurrency = concurrency
        self.info: dict[str, Any] = {}
        self.flows = Phase()
        self.exchanges = Phase()
        self.userinfo = Phase()
        self.introspection = Phase()
        self.collect = Phase()
        self.access_tokens: list[str] = []  # from the exchanges: for userinfo and introspection
        self.collected = 0
        # Browsers that stay logged in, with consent remembered, to obtain the exchange phase's codes;
        # and the app's connections to the token endpoint (keep-alive, as an app's backend would).
        self.sessions = [new_browser() for _ in range(concurrency)]
        self.apps = [httpx.Client(timeout=REQUEST_TIMEOUT) for _ in range(concurrency)]

    def email(self, index: int) -> str:
        return self.target.emails[index % len(self.target.emails)]

    def warm_up(self) -> None:
        """Untimed: one complete flow per client thread, in the browsers kept for the exchange phase."""
        warm = Phase()
        tokens: list[dict[str, Any]] = []

        def job(worker: int, index: int) -> None:
            auth = authorize(self.target, self.sessions[worker], self.email(worker), prompt="consent")
            tokens.append(exchange(self.target, self.apps[worker], auth))
            self.info.setdefault("steps", auth.steps)
            self.info.setdefault("requests", auth.requests + 1)  # + the token request

        run_parallel(self.concurrency, self.concurrency, job, warm, self.target)
        if warm.errors or not tokens:
            raise RuntimeError(f"{self.target.name}: warm-up failed: {dict(warm.errors)}\n{self.target.server.tail()}")
        self.info["id_token"] = verify_id_token(self.target, tokens[0]["id_token"])

    def run_flows(self, count: int, first_index: int) -> None:
        """Complete flows, each in a fresh browser (new cookie jar, new connection)."""

        def job(worker: int, index: int) -> None:
            with new_browser() as browser:
                auth = authorize(self.target, browser, self.email(first_index + index), prompt="consent")
                if auth.steps != ["login", "consent"]:
                    raise FlowError(f"steps {auth.steps}")
            exchange(self.target, self.apps[worker], auth)

        run_parallel(count, self.concurrency, job, self.flows, self.target)

    def run_exchanges(self, count: int) -> None:
        """Codes obtained first (untimed), in batches, then only the POST /token requests are timed."""
        remaining = count
        while remaining > 0 and not stopping.is_set():
            codes: list[Authorization] = []
            batch_started = time.monotonic()

            def obtain(worker: int, index: int) -> None:
                if time.monotonic() - batch_started > CODE_BATCH_SECONDS:
                    return
                auth = authorize(self.target, self.sessions[worker], self.email(worker), prompt=None)
                if auth.steps:
                    raise FlowError(f"expected no page with a remembered consent, got {auth.steps}")
                codes.append(auth)

            run_parallel(min(remaining, CODE_BATCH), self.concurrency, obtain, self.collect, self.target)
            if not codes:
                raise RuntimeError(f"{self.target.name}: no code obtained: {dict(self.collect.errors)}")
            remaining -= len(codes)
            self.collected += len(codes)
            tokens = self.access_tokens

            def job(worker: int, index: int) -> None:
                tokens.append(exchange(self.target, self.apps[worker], codes[index])["access_token"])

            run_parallel(len(codes), self.concurrency, job, self.exchanges, self.target)
        del self.access_tokens[:-CODE_BATCH]  # the latest ones: access tokens live 10 minutes on both sides

    def run_userinfo(self, count: int) -> None:
        """GET userinfo with the access tokens of the exchanges, in turn (they live 10 minutes)."""
        tokens = self.access_tokens

        def job(worker: int, index: int) -> None:
            body = userinfo(self.target, self.apps[worker], tokens[index % len(tokens)])
            self.info.setdefault("userinfo", sorted(body))

        run_parallel(count, self.concurrency, job, self.userinfo, self.target)

    def run_introspection(self, count: int) -> None:
        """POST introspection (the app's own credentials) of the access tokens of the exchanges."""
        tokens = self.access_tokens

        def job(worker: int, index: int) -> None:
            body = introspect(self.target, self.apps[worker], tokens[index % len(tokens)])
            self.info.setdefault("introspection", sorted(body))

        run_parallel(count, self.concurrency, job, self.introspection, self.target)

    def results(self) -> Results:
        if self.collect.errors:
            self.exchanges.errors.update({f"(obtaining codes) {k}": v for k, v in self.collect.errors.items()})
        self.info["codes_per_second_untimed"] = self.collected / self.collect.seconds if self.collect.seconds else 0.0
        return Results(self.flows, self.exchanges, self.userinfo, self.introspection, self.info)

    def close(self) -> None:
        for client in self.sessions + self.apps:
            client.close()


def chunks(total: int, rounds: int) -> list[int]:
    """``total`` split into at most ``rounds`` near-equal non-empty parts."""
    rounds = min(rounds, total)
    return [total // rounds + (1 if r < total % rounds else 0) for r in range(rounds)]


def measure_all(targets: list[Target], flows: int, exchanges: int, userinfo_count: int, introspections: int,
                concurrency: int, rounds: int) -> dict[str, Results]:
    runs = [Run(target, concurrency) for target in targets]
    try:
        for run in runs:
            print(f"warming up {run.target.name} ...", flush=True)
            run.warm_up()
        done = 0
        for r, count in enumerate(chunks(flows, rounds)):
            print(f"complete flows, round {r + 1}: {count} per provider ...", flush=True)
            for run in runs:
                run.run_flows(count, done)
            done += count
        for r, count in enumerate(chunks(exchanges, rounds)):
            print(f"token exchanges, round {r + 1}: {count} per provider ...", flush=True)
            for run in runs:
                run.run_exchanges(count)
        for r, (count_u, count_i) in enumerate(zip(chunks(userinfo_count, rounds), chunks(introspections, rounds),
                                                   strict=True)):
            print(f"userinfo and introspection, round {r + 1}: {count_u} and {count_i} per provider ...", flush=True)
            for run in runs:
                run.run_userinfo(count_u)
            for run in runs:
                run.run_introspection(count_i)
        return {run.target.name: run.results() for run in runs}
    finally:
        for run in runs:
            run.close()


def verify_id_token(target: Target, id_token: str) -> dict[str, Any]:
    """Check one ID token's signature against the provider's JWKS (untimed), return its claim names."""
    from joserfc import jwk, jwt

    keys = jwk.KeySet.import_key_set(httpx.get(target.jwks_uri, timeout=10).json())
    token = jwt.decode(id_token, keys, algorithms=["ES256"])
    return {"alg": token.header["alg"], "claims": sorted(token.claims), "sub_length": len(token.claims["sub"])}


# ---- report -----------------------------------------------------------------------------------------


def argon2_settings() -> dict[str, int]:
    """Citizen Vault's production argon2id cost (its defaults; VAULT_ARGON2_* is not set here)."""
    from vault.settings import Settings

    fields = Settings.model_fields
    return {"timeCost": fields["argon2_time_cost"].default, "memoryCost": fields["argon2_memory_kib"].default,
            "parallelism": 2}


def python_argon2_verify_ms(params: dict[str, int], rounds: int = 5) -> float:
    from vault.auth.passwords import Hasher

    hasher = Hasher(time_cost=params["timeCost"], memory_kib=params["memoryCost"])
    stored = hasher.hash(PASSWORD)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        assert hasher.verify(stored, PASSWORD)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def server_errors(target: Target) -> list[str]:
    """Error lines of a server's log (Citizen Vault logs JSON lines; Node prints stack traces)."""
    found = []
    for line in target.server.log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if re.search(r"Traceback|Error\b|error:", line) and "WARNING" not in line:
                found.append(line)
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
            found.append(line)
    return found


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def describe_node(notes: dict[str, Any]) -> str:
    storage = ("PostgreSQL (the same server, its own database, a small adapter in server.mjs)"
               if notes["storage"] == "postgres" else "oidc-provider's own in-memory adapter")
    workers = notes["workers"]
    return (f"oidc-provider {notes['oidc_provider']} on Node {notes['node']} (NODE_ENV=production): {workers} process"
            f"{'es (node:cluster)' if workers > 1 else ''}, {storage}")


def rate_text(value: float) -> str:
    return f"{value:.1f}/s" if value < 100 else f"{value:.0f}/s"


def report(args: argparse.Namespace, targets: list[Target], results: dict[str, Results],
           argon2_params: dict[str, int], py_argon2_ms: float) -> None:
    ours, theirs = targets[0], targets[1]
    node = theirs.notes
    print()
    print("Citizen Vault vs oidc-provider, OpenID Connect code flow (PKCE S256, pairwise sub, ES256 ID token,"
          f" scope '{SCOPE}', client_secret_post), on this machine")
    print(f"settings: {os.cpu_count()} cores shared by servers, PostgreSQL and this client; {args.concurrency}"
          f" concurrent clients (threads, httpx) for every provider; N = {args.flows} complete flows,"
          f" {args.exchanges} token exchanges, {args.userinfo} userinfo requests and {args.introspections}"
          f" introspections per provider, after {args.concurrency} untimed warm-up flows; the"
          f" providers take turns in {args.rounds} rounds of each phase")
    print(f"  load average (1 min) before the run: {args.load_average:.2f} (anything else running on this machine"
          " takes CPU from the servers and skews these numbers)")
    print(f"  citizen-vault: `vault serve --workers {args.workers}` (uvicorn), PostgreSQL, development profile"
          " (VAULT_ENV unset: the production profile refuses an http:// issuer, and this loopback bench has no HTTPS)")
    print(f"  {describe_node(node)}")
    for extra in targets[2:]:
        print(f"  reference run: {describe_node(extra.notes)}")
    print("  PostgreSQL: the test suite's throwaway instance (tests/services.py: fsync, full_page_writes and"
          " synchronous_commit off)")
    print(f"  argon2id t={argon2_params['timeCost']} m={argon2_params['memoryCost']} KiB p={argon2_params['parallelism']}"
          " on both (Citizen Vault's production cost, VAULT_ARGON2_* not set): one verify takes"
          f" {py_argon2_ms:.0f} ms in Python (argon2-cffi), {node['argon2_verify_ms']:.0f} ms in Node"
          f" (npm argon2 {node['argon2_package']})")
    print("  consent: asked and given in every timed flow on both (prompt=consent), with"
          f" {len(ours.emails)} citizens (flow i logs in as citizen i mod {len(ours.emails)}); a citizen per flow"
          " would need one `vault citizen create` process (and argon2 hash) each")
    print("  exchanges: codes obtained first (untimed) by logged-in browsers whose consent is remembered, in batches"
          f" of at most {CODE_BATCH} (codes live 60 s), then only the POST /token requests are timed")
    print("  userinfo (GET, Bearer) and introspection (POST, client_secret_post, token_type_hint=access_token): with"
          f" the access tokens of the last {CODE_BATCH} exchanges, in turn, on the app's keep-alive connections")
    print()
    labels = {"flow": "complete flows:  ", "exchange": "token exchanges: ", "userinfo": "userinfo:        ",
              "introspect": "introspections:  "}
    for (name, mine), (_, other) in zip(results[ours.name].phases(), results[theirs.name].phases(), strict=True):
        a, b = mine.rate, other.rate
        print(f"{labels[name]} citizen-vault {rate_text(a):<9} oidc-provider {rate_text(b):<9} ratio"
              f" {a / b if b else float('nan'):.2f}")
    for extra in targets[2:]:
        parts = []
        for (name, mine), (_, other) in zip(results[ours.name].phases(), results[extra.name].phases(), strict=True):
            parts.append(f"{name} {rate_text(other.rate)} (ratio {mine.rate / other.rate if other.rate else float('nan'):.2f})")
        print(f"reference, {extra.name}: {', '.join(parts)}")
    print()
    print("details per operation (latency p50/p95; server CPU = the server's processes plus PostgreSQL's when it"
          " uses it, PostgreSQL's share in brackets; client CPU = this script):")
    width = max(len(t.name) for t in targets)
    for target in targets:
        info = results[target.name].info
        for name, phase in results[target.name].phases():
            per = max(phase.done, 1)
            print(f"  {target.name:<{width}} {name:<10} {phase.done:>5} ok {sum(phase.errors.values()):>3} failed"
                  f" in {phase.seconds:5.1f} s  latency {pct(phase.latencies, 0.5):4.0f}/{pct(phase.latencies, 0.95):4.0f} ms"
                  f"  server CPU {phase.server_cpu / per * 1000:5.1f} ms (PostgreSQL {phase.database_cpu / per * 1000:4.1f})"
                  f"  client CPU {phase.client_cpu / per * 1000:4.1f} ms")
        print(f"  {target.name:<{width}} pages: {' -> '.join(info.get('steps', []))}; {info['requests']} HTTP requests"
              f" per flow; ID token claims: {', '.join(info['id_token']['claims'])}")
    print()
    print("what differs between the setups:")
    print("  - no TLS on either side; Citizen Vault in its development profile (no Secure/__Host- cookies, no HSTS)")
    if node["storage"] == "postgres":
        print("  - storage: Citizen Vault's schema through SQLAlchemy vs one JSONB table through"
              " node-postgres; citizens are rows in PostgreSQL for Citizen Vault, a static in-memory list for"
              " oidc-provider (findAccount)")
    else:
        print(f"  - storage: PostgreSQL for Citizen Vault ({args.workers} workers) vs memory for oidc-provider (one"
              " process: its in-memory store cannot be shared); accounts in memory (findAccount)")
    print("  - Citizen Vault's pages are full templates (CSRF double submit, CSP, French/English) and it logs JSON"
          " lines; oidc-provider's pages here are a few lines of HTML without CSRF token (its interaction cookie"
          " binds the form) and it logs nothing")
    ours_claims = set(results[ours.name].info["id_token"]["claims"])
    their_claims = set(results[theirs.name].info["id_token"]["claims"])
    if ours_claims != their_claims:
        print(f"  - ID token claims only Citizen Vault sends: {', '.join(sorted(ours_claims - their_claims)) or 'none'};"
              f" only oidc-provider: {', '.join(sorted(their_claims - ours_claims)) or 'none'} (oidc-provider sends"
              " acr/amr/auth_time only when asked, sid only with its logout features, at_hash only outside the"
              " token endpoint)")
    for what, explain in (("userinfo", "the profile scope's claims Citizen Vault has no value for are left out"),
                          ("introspection", "RFC 7662's optional members each side chooses to send")):
        mine_keys = set(results[ours.name].info.get(what, []))
        other_keys = set(results[theirs.name].info.get(what, []))
        if mine_keys != other_keys:
            print(f"  - {what} members only Citizen Vault sends: {', '.join(sorted(mine_keys - other_keys)) or 'none'};"
                  f" only oidc-provider: {', '.join(sorted(other_keys - mine_keys)) or 'none'} ({explain})")
    print("  - introspection: oidc-provider's `introspection` feature turned on (off by default), the app"
          " authenticating with client_secret_post on both")
    print("  - oidc-provider 9 asks for Node 22 LTS or later and warns on Node 20, the Node installed here")
    for target in targets:
        errors = server_errors(target)
        total = sum(sum(p.errors.values()) for _, p in results[target.name].phases())
        if errors or total:
            print(f"  ! {target.name}: {total} failed operations, {len(errors)} error lines in {target.server.log}")
            for _, phase in results[target.name].phases():
                for message, count in phase.errors.most_common(5):
                    print(f"      {count} x {message}")
            for line in errors[:5]:
                print(f"      log: {_error_summary(line)}")


def _error_summary(line: str) -> str:
    """A server log line, short: its message and, for a traceback, where it ended and what it raised."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line[:300]
    if not isinstance(entry, dict):
        return line[:300]
    trace = [row for row in str(entry.get("exc") or "").splitlines() if row.strip()]
    return " | ".join([f"{entry.get('logger')}: {entry.get('msg')}", *trace[-3:]])[:1000]


# ---- main -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=120, help="complete flows per provider (default 120)")
    parser.add_argument("--exchanges", type=int, default=1200,
                        help="code-for-token exchanges per provider (default 1200)")
    parser.add_argument("--userinfo", type=int, default=1200, help="userinfo requests per provider (default 1200)")
    parser.add_argument("--introspections", type=int, default=1200,
                        help="token introspections per provider (default 1200)")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes, both sides (default 2)")
    parser.add_argument("--oidc-provider-storage", choices=("postgres", "memory", "both"), default="both",
                        help="postgres: a Node cluster of --workers processes sharing PostgreSQL;"
                             " memory: oidc-provider's in-memory adapter, one process; both (default): postgres,"
                             " plus the in-memory one as a reference run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="the providers take turns in this many rounds of each phase (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs) afterwards")
    args = parser.parse_args()
    for name in ("flows", "exchanges", "userinfo", "introspections", "concurrency", "workers", "rounds"):
        if not 1 <= getattr(args, name) <= 100_000:
            parser.error(f"--{name} must be between 1 and 100000")

    def terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    ensure_node_modules()
    argon2_params = argon2_settings()
    emails = [f"bench{i + 1}@example.org" for i in range(max(args.concurrency, 2))]

    base = Path(tempfile.mkdtemp(prefix="vault-oidc-bench-"))
    base.chmod(0o755)  # PostgreSQL may run as another account (when this runs as root)
    postgres = None
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    try:
        print(f"starting PostgreSQL, Citizen Vault and oidc-provider (logs in {base})", flush=True)
        postgres = start_postgres(base / "postgres")
        popen = getattr(getattr(postgres, "_process", None), "_popen", None)
        pg_pgid = popen.pid if popen is not None else None
        targets = [start_citizen_vault(base, postgres.create_database("vault_bench"), args.workers, emails)]
        targets[0].cpu_groups.append(pg_pgid)
        storages = ["postgres", "memory"] if args.oidc_provider_storage == "both" else [args.oidc_provider_storage]
        for n, storage in enumerate(storages):
            name = "oidc-provider" if n == 0 else f"oidc-provider ({storage})"
            if storage == "postgres":
                target = start_oidc_provider(base, postgres.create_database("oidc_provider_bench"), args.workers,
                                             storage, emails, argon2_params, name)
                target.cpu_groups.append(pg_pgid)
            else:
                target = start_oidc_provider(base, "", 1, storage, emails, argon2_params, name)
            targets.append(target)
        py_argon2_ms = python_argon2_verify_ms(argon2_params)
        results = measure_all(targets, args.flows, args.exchanges, args.userinfo, args.introspections,
                              args.concurrency, args.rounds)
        args.load_average = load_start
        report(args, targets, results, argon2_params, py_argon2_ms)
        print(f"\n(total run time {time.monotonic() - started:.0f} s)")
    except KeyboardInterrupt:
        stopping.set()
        print("\ninterrupted: stopping the servers", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        stopping.set()
        for server in reversed(SERVERS):
            server.stop()
        if postgres is not None:
            postgres.stop()
        if args.keep:
            print(f"logs kept in {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
