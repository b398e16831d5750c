"""Interoperability: Apache's mod_auth_openidc (Debian's ``libapache2-mod-auth-openidc``, unmodified) protects a
page with a standard (``oidc`` profile) app of the running server.

A private Apache (``apache2 -X`` on a free loopback port, its own config, logs and pid file in a temporary folder)
discovers the provider, sends the citizen to /authorize with PKCE (S256), takes the code back at its redirect URI,
authenticates with ``client_secret_basic`` at /token, validates the ID token, reads /userinfo (JSON, or a signed
JWT it verifies with /jwks when the app was created with ``--userinfo-signed``) and hands the claims to a CGI
script; then its RP-initiated logout goes through our /logout with ``id_token_hint`` and back to its page. httpx
plays the browser. scripts/test.sh installs Debian's ``apache2`` and ``libapache2-mod-auth-openidc``; without them
the test is skipped (and says so).
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from tests.services import free_port
from tests.support import PASSWORD

APACHE = Path("/usr/sbin/apache2")
MODULES = Path("/usr/lib/apache2/modules")
pytestmark = pytest.mark.skipif(
    not APACHE.is_file() or not (MODULES / "mod_auth_openidc.so").is_file(),
    reason="Debian's apache2 and libapache2-mod-auth-openidc are not installed (scripts/test.sh installs them)")

CLAIMS_CGI = """#!/bin/sh
printf 'Content-Type: text/plain\\n\\n'
env | grep -E '^(OIDC_CLAIM_|OIDC_userinfo_jwt=|REMOTE_USER=)' | sort
"""


@dataclass
class Apache:
    url: str
    folder: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        """The end of Apache's error log (mod_auth_openidc writes its reasons there) and of its own output."""
        parts = []
        for name in ("error.log", "stdout.log"):
            path = self.folder / name
            if path.is_file() and (text := path.read_text(errors="replace").strip()):
                parts.append(f"--- apache {name} ---\n{text[-6000:]}")
        return "\n".join(parts) or "(Apache logged nothing)"

    def explain(self, response: httpx.Response) -> str:
        return (f"{response.request.method} {response.request.url} → {response.status_code} "
                f"{response.headers.get('location', '')}\n{response.text[:800]}\n{self.log()}")


def write_config(folder: Path, *, port: int, issuer: str, client_id: str, client_secret: str,
                 signed_userinfo: bool) -> Path:
    public = folder / "public"
    (public / "cgi").mkdir(parents=True)
    (public / "loggedout.html").write_text("<!doctype html><title>Déconnecté</title><p>Vous êtes déconnecté.</p>\n")
    cgi = public / "cgi" / "claims.sh"
    cgi.write_text(CLAIMS_CGI)
    cgi.chmod(0o755)
    # As root Apache serves as a system user (below): it must read the public files, never the config (secrets).
    for path in (folder, public, public / "cgi"):
        path.chmod(0o755 if path != folder else 0o711)
    user = ""
    if os.geteuid() == 0:
        account = next(name for name in ("www-data", "nobody") if _exists(name))
        user = f"User {account}\nGroup #{pwd.getpwnam(account).pw_gid}\n"
    base = f"http://127.0.0.1:{port}"
    modules = ["mpm_prefork", "authn_core", "authz_core", "authz_user", "alias", "mime", "cgi", "auth_openidc"]
    loads = "".join(f"LoadModule {name}_module {MODULES}/mod_{name}.so\n" for name in modules)
    signed = "OIDCUserInfoSignedResponseAlg ES256\n" if signed_userinfo else ""
    (folder / "mime.types").write_text("text/html html\n")
    conf = folder / "httpd.conf"
    conf.write_text(f"""{loads}
ServerRoot "{folder}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{folder}/httpd.pid"
DefaultRuntimeDir "{folder}"
ErrorLog "{folder}/error.log"
LogLevel warn auth_openidc:debug
{user}
DocumentRoot "{public}"
TypesConfig "{folder}/mime.types"
ScriptAlias /protected/claims "{public}/cgi/claims.sh"

OIDCProviderMetadataURL {issuer}/.well-known/openid-configuration
OIDCClientID {client_id}
OIDCClientSecret {client_secret}
OIDCProviderTokenEndpointAuth client_secret_basic
OIDCRedirectURI {base}/protected/redirect_uri
OIDCCryptoPassphrase {base64.b64encode(os.urandom(24)).decode()}
OIDCScope "openid profile email"
OIDCPKCEMethod S256
OIDCPassClaimsAs environment
OIDCPassUserInfoAs claims{" jwt" if signed_userinfo else ""}
{signed}
<Location /protected>
    AuthType openid-connect
    Require valid-user
</Location>
""")
    conf.chmod(0o600)
    return conf


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


@pytest.fixture
def start_apache() -> Iterator:
    """Starts Apache with write_config's configuration; stops it after the test, passed or failed."""
    started: list[Apache] = []
    folders: list[tempfile.TemporaryDirectory[str]] = []

    def start(**config) -> Apache:
        # Not pytest's tmp_path: its parents are private to root, and Apache's user must reach the CGI script.
        folder = tempfile.TemporaryDirectory(prefix="vault-apache-")
        folders.append(folder)
        path = Path(folder.name)
        port = config["port"]
        conf = write_config(path, **config)
        with open(path / "stdout.log", "wb") as out:  # one process, in the foreground: -X
            process = subprocess.Popen([str(APACHE), "-X", "-d", str(path), "-f", str(conf)], stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        apache = Apache(url=f"http://127.0.0.1:{port}", folder=path, process=process)
        started.append(apache)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return apache
            except OSError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, f"Apache did not start\n{apache.log()}"
            time.sleep(0.05)

    yield start
    for apache in started:
        apache.process.terminate()
        try:
            apache.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            apache.process.kill()
            apache.process.wait()
    for folder in folders:
        folder.cleanup()


def claims_of(page: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in page.splitlines() if "=" in line)


@pytest.mark.parametrize("signed_userinfo", [False, True], ids=["userinfo-json", "userinfo-signed"])
def test_mod_auth_openidc_logs_in_shows_the_claims_and_logs_out(live_server, start_apache,
                                                                 signed_userinfo: bool) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    redirect_uri, logged_out = f"{base}/protected/redirect_uri", f"{base}/loggedout.html"
    email = f"apache-{'jwt' if signed_userinfo else 'json'}@example.org"
    with ThreadPoolExecutor(2) as pool:  # two `vault` commands at once: each spends seconds starting Python
        created = pool.submit(
            live_server.vault, "client", "create", "--name", "Apache", "--redirect-uri", redirect_uri,
            "--post-logout-redirect-uri", logged_out, "--scope", "openid profile email", "--auth-method",
            "client_secret_basic", *(["--userinfo-signed"] if signed_userinfo else []), "--json")
        pool.submit(live_server.vault, "citizen", "create", "--email", email, "--given-name", "Paul Émile",
                    "--family-name", "Apache", "--birthdate", "1975-02-14", "--gender", "male", "--birthplace",
                    "13055", "--birthcountry", "99100", "--password-stdin", "--verified", "--json",
                    stdin=f"{PASSWORD}\n").result()
        app = json.loads(created.result().stdout)
    apache = start_apache(port=port, issuer=live_server.url, client_id=app["client_id"],
                          client_secret=app["client_secret"], signed_userinfo=signed_userinfo)
    assert apache.url == base

    with httpx.Client(follow_redirects=False, timeout=10) as browser:  # one cookie jar for both hosts

        def go(response: httpx.Response) -> httpx.Response:
            return browser.get(urljoin(str(response.url), response.headers["location"]))

        # Apache sends the citizen to /authorize, with PKCE.
        answer = browser.get(f"{base}/protected/claims")
        assert answer.status_code == 302, apache.explain(answer)
        location = answer.headers["location"]
        assert location.startswith(f"{live_server.url}/authorize?"), apache.explain(answer)
        request = parse_qs(urlsplit(location).query)
        assert request["client_id"] == [app["client_id"]] and request["redirect_uri"] == [redirect_uri]
        assert request["code_challenge_method"] == ["S256"] and request["nonce"] and request["state"], request

        # Our login page, then consent.
        answer = go(answer)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), answer.text[:500]
        next_step = parse_qs(urlsplit(answer.headers["location"]).query)["next"][0]
        token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get(f"{live_server.url}/login").text)
        assert token, "no CSRF token on /login"
        answer = browser.post(f"{live_server.url}/login", data={
            "email": email, "password": PASSWORD, "csrf_token": token.group(1), "next": next_step})
        for _ in range(3):  # back to the request, then the consent page
            if answer.status_code == 303 and not answer.headers["location"].startswith(redirect_uri):
                answer = go(answer)
            elif answer.status_code == 200 and 'name="decision"' in answer.text:
                action = re.search(r'action="(/authorize/continue/[^"]+)"', answer.text)
                assert action, answer.text[:500]
                answer = browser.post(f"{live_server.url}{action.group(1)}",
                                      data={"decision": "allow", "csrf_token": browser.cookies["csrf"]})
        assert answer.status_code == 303 and answer.headers["location"].startswith(f"{redirect_uri}?"), \
            f"{answer.status_code} {answer.headers.get('location')} {answer.text[:500]}"
        callback = parse_qs(urlsplit(answer.headers["location"]).query)
        assert callback["state"] == request["state"] and callback["iss"] == [live_server.url] and callback["code"]

        # Apache takes the code: token, ID token, userinfo; then back to the page first asked for.
        answer = go(answer)
        assert answer.status_code == 302, apache.explain(answer)
        assert urljoin(str(answer.url), answer.headers["location"]) == f"{base}/protected/claims", \
            apache.explain(answer)
        answer = go(answer)
        assert answer.status_code == 200, apache.explain(answer)
        claims = claims_of(answer.text)
        assert claims.get("OIDC_CLAIM_given_name") == "Paul Émile", apache.explain(answer)
        assert claims.get("OIDC_CLAIM_family_name") == "Apache" and claims.get("OIDC_CLAIM_email") == email, \
            apache.explain(answer)
        sub = claims.get("OIDC_CLAIM_sub", "")
        assert re.fullmatch(r"[0-9a-f]{64}v1", sub), apache.explain(answer)
        assert claims.get("REMOTE_USER", "").startswith(sub), apache.explain(answer)
        if signed_userinfo:  # the userinfo Apache read, and verified with /jwks, was our signed JWT
            header = json.loads(base64.urlsafe_b64decode(claims["OIDC_userinfo_jwt"].split(".")[0] + "=="))
            assert header["alg"] == "ES256", header
        else:
            assert "OIDC_userinfo_jwt" not in claims, claims

        # RP-initiated logout through mod_auth_openidc: our /logout with the ID token as hint, back to Apache.
        answer = browser.get(f"{base}/protected/redirect_uri", params={"logout": logged_out})
        assert answer.status_code == 302, apache.explain(answer)
        location = answer.headers["location"]
        assert location.startswith(f"{live_server.url}/logout?"), apache.explain(answer)
        logout = parse_qs(urlsplit(location).query)
        assert logout["post_logout_redirect_uri"] == [logged_out] and logout["id_token_hint"], logout
        answer = go(answer)
        assert answer.status_code == 303, answer.text[:500]
        assert answer.headers["location"].split("?")[0] == logged_out, answer.headers["location"]
        answer = go(answer)
        assert answer.status_code == 200 and "Vous êtes déconnecté" in answer.text, apache.explain(answer)

        # Both sessions ended: ours asks for a login again, Apache sends the citizen back to /authorize.
        account = browser.get(f"{live_server.url}/account")
        assert account.status_code == 303 and account.headers["location"].startswith("/login"), account.text[:300]
        again = browser.get(f"{base}/protected/claims")
        assert again.status_code == 302 and again.headers["location"].startswith(f"{live_server.url}/authorize?"), \
            apache.explain(again)
