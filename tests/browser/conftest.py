"""A real browser against the running service: Debian's chromium, driven by Playwright.

One server for each module's tests (the app under uvicorn on a free loopback port, on PostgreSQL,
SeaweedFS and clamd, as deployed) and one chromium for the folder; each test opens its own
contexts (fresh cookies), with or without JavaScript. axe-core (npm, pinned in package.json beside
this file, installed by scripts/test.sh) is added to every page of a JavaScript context before the
page's own scripts, by the browser's devtools protocol: the pages' Content-Security-Policy stays on.

The browser is the distribution's (`apt-get install chromium`), never one downloaded by Playwright:
no browser, no axe-core — the tests fail, they do not skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from tests.conftest import make_settings
from tests.factories import CitizenData, citizen_browser, make_citizen
from tests.services import ClamdService, PostgresService, S3Service, free_port
from vault.app import create_app
from vault.db import make_engine
from vault.migrations import upgrade

HERE = Path(__file__).resolve().parent
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
DESKTOP_WIDTH = 1280
PHONE_WIDTH = 320  # the narrowest phone the city supports


@dataclass
class Site:
    """The running service: its base URL, and the in-process app and engine the factories write through."""

    url: str
    app: Any
    engine: Any

    def citizen(self, **options: Any) -> CitizenData:
        return make_citizen(self.app, **options)

    def api(self, citizen: CitizenData) -> Any:
        """A (non-browser) client logged in as ``citizen``, for the factories that upload documents."""
        return citizen_browser(self.app, citizen)


def _serve(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, log_config=None,
                                           server_header=False))
    thread = threading.Thread(target=server.run, name="vault-browser-tests", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return server, thread
        except httpx.TransportError:
            pass
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start for the browser tests")
        time.sleep(0.05)


@contextmanager
def running_site(services_dir: Path, postgres: PostgresService, s3: S3Service, clamd: ClamdService, name: str, *,
                 host: str = "127.0.0.1") -> Iterator[Site]:
    """The service on PostgreSQL, SeaweedFS and clamd under uvicorn, at http://<host>:<free port>."""
    database_url = postgres.create_database(name)
    upgrade(database_url)
    port = free_port()
    settings = make_settings(
        services_dir / name, database_url, issuer=f"http://{host}:{port}", storage_backend="s3",
        s3_endpoint_url=s3.endpoint_url, s3_bucket=name.replace("_", "-"), s3_region=s3.region,
        s3_access_key_id=s3.access_key, s3_secret_access_key=SecretStr(s3.secret_key), antivirus="clamd",
        clamd_address=clamd.address, max_file_mb=8)
    engine = make_engine(database_url)
    app = create_app(settings, engine=engine)
    server, thread = _serve(app, port)
    try:
        yield Site(url=settings.issuer, app=app, engine=engine)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


@pytest.fixture(scope="module")
def site(services_dir: Path, postgres: PostgresService, s3: S3Service, clamd: ClamdService,
         request: pytest.FixtureRequest) -> Iterator[Site]:
    with running_site(services_dir, postgres, s3, clamd,
                      f"vault_browser_{request.module.__name__.rsplit('.', 1)[-1]}") as site:
        yield site


def chromium_path() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    assert path, "Debian's chromium is not installed (apt-get install chromium): the browser tests need it"
    return path


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    """One chromium for the browser tests. Package-scoped, not session-scoped: Playwright's sync API
    keeps an asyncio loop running in this thread while it is open, and the rest of the suite calls
    asyncio.run()."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path())
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.is_file():
        npm = shutil.which("npm")
        assert npm, "npm is needed to install axe-core for the browser tests"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=HERE, check=True, timeout=300)
    return AXE.read_text()


@pytest.fixture
def open_context(chromium: Any, axe_source: str, site: Site) -> Iterator[Any]:
    """``open_context(javascript=True)``: a fresh browser context (no cookies) on the site, French,
    closed after the test; with JavaScript, axe-core is present in each of its pages."""
    contexts = []

    def open_(javascript: bool = True) -> Any:
        context = chromium.new_context(base_url=site.url, java_script_enabled=javascript, locale="fr-FR",
                                       accept_downloads=True)
        context.set_default_timeout(15_000)
        if javascript:
            context.add_init_script(script=axe_source)
        contexts.append(context)
        return context

    yield open_
    for context in contexts:
        context.close()


def log_in(page: Any, citizen: CitizenData, *, start: str = "/login") -> None:
    """Open ``start`` (default /login; "" for the page already open, which asks to log in), fill the
    login form and send it, as a person does."""
    if start:
        page.goto(start)
    page.get_by_label("Adresse e-mail").fill(citizen.email)
    page.get_by_label("Mot de passe").fill(citizen.password)
    page.get_by_role("button", name="Se connecter", exact=True).click()  # not "… avec une clé d'accès"
    page.wait_for_load_state()
    assert "/login" not in page.url, page.content()[:1500]


def staff_log_in(page: Any, staff: Any) -> None:
    """Log a member of staff in on the staff login page (password and TOTP code), as they do; they
    land on their section (the counter's home for an agent, the statistics for an administrator, the
    register for the DPO)."""
    page.goto("/dpo/login")
    page.get_by_label("Adresse e-mail").fill(staff.email)
    page.get_by_label("Mot de passe").fill(staff.password)
    page.get_by_label("Code à 6 chiffres").fill(staff.totp.now())
    page.get_by_role("button", name="Se connecter").click()
    home = {"agent": r"/agent/$", "admin": r"/agent/stats$"}.get(staff.role, r"/dpo/$")
    page.wait_for_url(re.compile(home))


def axe_violations(page: Any) -> list[str]:
    """axe-core's WCAG 2.0/2.1 A and AA rules on the page as it is now: one line per violation and element."""
    result = page.evaluate("options => axe.run(document, options)",
                           {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]})
    return [f"{violation['id']} at {' '.join(map(str, node['target']))}: {violation['help']}"
            f" — {' / '.join(node.get('failureSummary', '').split(chr(10))[1:3]).strip()[:300]}"
            for violation in result["violations"] for node in violation["nodes"]]


def sideways_scroll(page: Any) -> str | None:
    """At the page's current viewport width, how far the page scrolls sideways and the innermost
    elements that stick out (None when it does not scroll sideways)."""
    scroll_width, inner_width, culprits = page.evaluate("""() => {
        const out = [...document.body.querySelectorAll('*')].filter(
            e => e.getBoundingClientRect().right > window.innerWidth + 0.5);
        const innermost = out.filter(e => !out.some(o => o !== e && e.contains(o)));
        const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
            (e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\\s+/).join('.') : '');
        return [document.documentElement.scrollWidth, window.innerWidth,
                innermost.slice(0, 5).map(e => `${name(e)} (right edge ${Math.round(e.getBoundingClientRect().right)} px)`)];
    }""")
    if scroll_width <= inner_width:
        return None
    return f"scrolls {scroll_width - inner_width} px sideways: {', '.join(culprits)}"


class Audit:
    """Collects axe's violations and the sideways scrolling of each page state, for one assertion at
    the end of a test (every state is reported, not only the first one that fails)."""

    def __init__(self) -> None:
        self.findings: dict[str, list[str]] = {}
        self.states: list[str] = []

    def __call__(self, page: Any, state: str) -> None:
        """axe-core's rules and the sideways scrolling at DESKTOP_WIDTH and PHONE_WIDTH (1280 and
        320 px wide); the page is left at the width it had."""
        page.wait_for_load_state()
        self.states.append(state)
        size = page.viewport_size
        try:
            for width in (DESKTOP_WIDTH, PHONE_WIDTH):
                page.set_viewport_size({"width": width, "height": 900 if width > 600 else 740})
                found = axe_violations(page)
                if overflow := sideways_scroll(page):
                    found.append(overflow)
                if found:
                    self.findings[f"{state} at {width} px ({page.url})"] = found
        finally:
            if size:
                page.set_viewport_size(size)

    def assert_clean(self) -> None:
        report = "\n".join(f"{state}:\n  " + "\n  ".join(lines) for state, lines in self.findings.items())
        assert not self.findings, f"accessibility problems in {len(self.findings)} page states:\n{report}"


@pytest.fixture
def audit() -> Audit:
    return Audit()

