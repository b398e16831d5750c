"""A FranceConnect stand-in (Node oidc-provider configured like FranceConnect, tests/federation/
standin.mjs) started once for these tests, and the vault configured as its relying party."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from tests.services import free_port
from tests.support import Browser
from vault.app import create_app

HERE = Path(__file__).parent
VAULT = "http://127.0.0.1:8000"  # the test settings' VAULT_ISSUER
CALLBACK = f"{VAULT}/login/franceconnect/callback"
LOGGED_OUT = f"{VAULT}/logout/franceconnect/callback"
PIVOT = {"given_name": "Angela Claire Louise", "family_name": "DUBOIS", "birthdate": "1962-08-24",
         "gender": "female", "birthplace": "75107", "birthcountry": "99100", "email": "angela.dubois@example.org",
         "preferred_username": ""}
STAFF_CALLBACK = f"{VAULT}/dpo/login/proconnect/callback"
ACCOUNTS = {
    "angela": PIVOT,
    "paul": {**PIVOT, "given_name": "Paul", "family_name": "MARTIN", "gender": "male", "birthdate": "1980-02-01",
             "email": "paul.martin@example.org"},
    "born_abroad": {**PIVOT, "given_name": "Ana", "family_name": "SILVA", "birthplace": "", "birthcountry": "99139",
                    "email": "ana.silva@example.org"},
    # Agents at ProConnect: one whose login used a second factor, one whose did not, one unknown here.
    "agent_mfa": {**PIVOT, "given_name": "Camille", "email": "camille.dpo@ville.example.fr"},
    "agent_pwd": {**PIVOT, "given_name": "Dominique", "email": "dominique.dpo@ville.example.fr"},
    "agent_unknown": {**PIVOT, "given_name": "Inconnu", "email": "personne@ville.example.fr"},
}


@dataclass
class StandIn:
    issuer: str
    clients: dict[str, dict[str, str]]


@pytest.fixture(scope="session")
def franceconnect(services_dir: Path) -> Iterator[StandIn]:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "the FranceConnect stand-in needs Node.js 18+ and npm (make test installs them)"
    if not (HERE / "node_modules" / "oidc-provider" / "package.json").is_file():
        installed = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=HERE, capture_output=True,
                                   text=True, timeout=300)
        assert installed.returncode == 0, installed.stderr
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    clients = {
        "signed": {"client_id": "vault-signed", "client_secret": "s" * 40},
        "unsigned": {"client_id": "vault-unsigned", "client_secret": "u" * 40},
        "staff": {"client_id": "vault-staff", "client_secret": "p" * 40},
    }
    config = {"issuer": issuer, "port": port, "accounts": ACCOUNTS, "amr": ["fc", "pwd"],
              "amr_by_account": {"agent_mfa": ["pwd", "mfa"], "agent_pwd": ["pwd"]}, "clients": [
                  {**clients["signed"], "redirect_uris": [CALLBACK], "post_logout_redirect_uris": [LOGGED_OUT]},
                  {**clients["unsigned"], "redirect_uris": [CALLBACK], "userinfo_signed": False},
                  {**clients["staff"], "redirect_uris": [STAFF_CALLBACK]}]}
    path = services_dir / "franceconnect-standin.json"
    path.write_text(json.dumps(config))
    log = open(services_dir / "franceconnect-standin.log", "w")  # noqa: SIM115  (open while it runs)
    process = subprocess.Popen([node, str(HERE / "standin.mjs"), str(path)], stdout=subprocess.PIPE, stderr=log,
                               text=True, start_new_session=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert '"ready"' in line, (services_dir / "franceconnect-standin.log").read_text()[-2000:]
        yield StandIn(issuer=issuer, clients=clients)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def fc_settings(settings, standin: StandIn, client: str = "signed"):
    return settings.model_copy(update={
        "franceconnect_issuer": standin.issuer, "franceconnect_client_id": standin.clients[client]["client_id"],
        "franceconnect_client_secret": SecretStr(standin.clients[client]["client_secret"])})


def pc_settings(settings, standin: StandIn):
    """The stand-in plays ProConnect too (another client of it)."""
    return settings.model_copy(update={
        "proconnect_issuer": standin.issuer, "proconnect_client_id": standin.clients["staff"]["client_id"],
        "proconnect_client_secret": SecretStr(standin.clients["staff"]["client_secret"])})


@pytest.fixture
def fc_app(settings, engine, franceconnect: StandIn):
    return create_app(fc_settings(settings, franceconnect), engine=engine)


@pytest.fixture
def citizen_browser_fc(fc_app) -> Iterator[Browser]:
    with Browser(fc_app) as browser:
        yield browser


class FranceConnectUser:
    """The person at FranceConnect's pages (the stand-in's): picks an account or cancels."""

    def __init__(self) -> None:
        self.client = httpx.Client(timeout=10)

    def authorize(self, url: str, login: str | None) -> str:
        """Follow the vault's redirect to FranceConnect; return the URL FranceConnect sends back to."""
        answer = self.client.get(url)
        while answer.status_code in (302, 303) and not answer.headers["location"].startswith(VAULT):
            answer = self.client.get(urljoin(url, answer.headers["location"]))
        if answer.status_code in (302, 303):  # still logged in at FranceConnect: straight back (SSO)
            return answer.headers["location"]
        assert answer.status_code == 200 and "interaction" in answer.text, answer.text[:500]
        forms = re.findall(r'action="(/interaction/[^"]+/(login|abort))"', answer.text)
        actions = {kind: path for path, kind in forms}
        action = actions["login" if login else "abort"]
        answer = self.client.post(urljoin(url, action), data={"login": login} if login else {})
        while answer.status_code in (302, 303) and not answer.headers["location"].startswith(VAULT):
            answer = self.client.get(urljoin(url, answer.headers["location"]))
        assert answer.status_code in (302, 303), answer.text[:500]
        return answer.headers["location"]

    def end_session(self, url: str) -> str:
        """FranceConnect's logout page: confirm; return where it sends the browser back."""
        page = self.client.get(url)
        assert page.status_code == 200, page.text[:500]
        action = re.search(r'action="([^"]+)"', page.text).group(1)
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
        answer = self.client.post(urljoin(url, action), data={**fields, "logout": "yes"})
        assert answer.status_code in (302, 303), answer.text[:500]
        return answer.headers["location"]


def urljoin(base: str, location: str) -> str:
    from urllib.parse import urljoin as join

    return join(base, location)


def local(url: str) -> str:
    """A URL of the vault as the test browser asks for it (path and query)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
def fc_user() -> Iterator[FranceConnectUser]:
    user = FranceConnectUser()
    yield user
    user.client.close()
