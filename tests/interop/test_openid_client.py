"""Interoperability: Node's `openid-client` (v6, by panva) completes the whole flow against a running server.

Discovery, authorization code + PKCE (S256), token, ID token validation, userinfo, refresh, revocation and
RP-initiated logout, as `openid_client_flow.mjs` plays them (see that script). The npm dependencies are pinned
in package.json/package-lock.json next to this file; scripts/test.sh installs them (`npm ci`), and this test
does it too when node_modules is missing. No Node, no npm: the test fails, it does not skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "openid_client_flow.mjs"
STEPS = ("discovery", "authorize", "login", "consent", "token", "id_token", "userinfo", "refresh", "revocation",
         "end_session")
PASSWORD = "une phrase de passe pour node"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"`{name}` is not on PATH: the openid-client interoperability test needs Node.js 20+ and npm"
    return path


def ensure_node_modules() -> None:
    if (HERE / "node_modules" / "openid-client" / "package.json").is_file():
        return
    installed = subprocess.run([tool("npm"), "ci", "--no-audit", "--no-fund", "--silent"], cwd=HERE,
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, f"npm ci failed in {HERE}:\n{installed.stdout}\n{installed.stderr}"


def run_flow(node: str, flow_input: dict) -> tuple[dict, str]:
    """Play openid_client_flow.mjs; its one-line JSON summary (which must say ok) and, for failure
    messages, everything it printed."""
    run = subprocess.run([node, str(SCRIPT)], input=json.dumps(flow_input), capture_output=True, text=True,
                         cwd=HERE, timeout=120)
    report = f"exit {run.returncode}\n--- stdout ---\n{run.stdout}\n--- stderr ---\n{run.stderr}"
    assert run.returncode == 0, report
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1, report
    summary = json.loads(lines[0])
    assert summary.get("ok") is True, report
    return summary, report


def test_node_openid_client_completes_the_whole_flow(live_server) -> None:
    node = tool("node")
    ensure_node_modules()
    app = json.loads(live_server.vault(
        "client", "create", "--name", "Node openid-client", "--redirect-uri", "http://127.0.0.1:9/cb",
        "--post-logout-redirect-uri", "http://127.0.0.1:9/bye", "--scope", "openid profile birth email",
        "--auth-method", "client_secret_basic", "--refresh-tokens", "--json").stdout)
    citizen = json.loads(live_server.vault(
        "citizen", "create", "--email", "node@example.org", "--given-name", "Anne Marie", "--family-name", "Node",
        "--birthdate", "1988-03-04", "--gender", "female", "--birthplace", "31555", "--birthcountry", "99100",
        "--password-stdin", "--verified", "--json", stdin=f"{PASSWORD}\n").stdout)

    flow_input = {"issuer": live_server.url, "client_id": app["client_id"], "client_secret": app["client_secret"],
                  "redirect_uri": "http://127.0.0.1:9/cb", "post_logout_redirect_uri": "http://127.0.0.1:9/bye",
                  "email": citizen["email"], "password": PASSWORD}
    summary, report = run_flow(node, flow_input)
    assert {step: summary.get(step) for step in STEPS} == dict.fromkeys(STEPS, True), report
    assert summary["sub"] and summary["acr"] == "eidas1", report
    assert summary["userinfo_claims"] == {
        "given_name": "Anne Marie", "family_name": "Node", "birthdate": "1988-03-04", "gender": "female",
        "birthplace": "31555", "birthcountry": "99100", "email": "node@example.org"}, report


def _citizen_with_documents(live_server, email: str) -> dict[str, str]:
    """A citizen of the running server with a proof of address and a tax notice, added through the
    API as their browser does (session cookie, CSRF header); their ids by type."""
    import re

    import httpx

    live_server.vault("citizen", "create", "--email", email, "--given-name", "Anne", "--family-name", "Node",
                      "--birthdate", "1988-03-04", "--gender", "female", "--birthplace", "31555",
                      "--password-stdin", "--verified", "--json", stdin=f"{PASSWORD}\n")
    ids = {}
    with httpx.Client(base_url=live_server.url) as browser:
        token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text).group(1)
        assert browser.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token}).status_code == 303
        for kind in ("proof_of_address", "tax_notice"):
            added = browser.post("/api/v1/documents", data={"type": kind},
                                 files={"file": (f"{kind}.pdf", b"%PDF-1.7\n" + kind.encode() + b"\n%%EOF", "application/pdf")},
                                 headers={"X-CSRF-Token": browser.cookies["csrf"]})
            assert added.status_code == 201, added.text
            ids[kind] = added.json()["id"]
    return ids


def test_node_openid_client_obtains_one_chosen_document_and_reads_only_it(live_server) -> None:
    """An independent relying party asks for proofs of address (RFC 9396), the citizen ticks one,
    and the app's token lists that document and nothing else."""
    node = tool("node")
    ensure_node_modules()
    app = json.loads(live_server.vault(
        "client", "create", "--name", "Node cantine", "--redirect-uri", "http://127.0.0.1:9/cb",
        "--post-logout-redirect-uri", "http://127.0.0.1:9/bye", "--scope", "openid profile birth email documents:read",
        "--auth-method", "client_secret_basic", "--refresh-tokens", "--json").stdout)
    ids = _citizen_with_documents(live_server, "node-docs@example.org")
    details = [{"type": "citizen_documents", "document_types": ["proof_of_address"], "actions": ["read"],
                "purpose": "Inscription à la cantine"}]
    flow_input = {"issuer": live_server.url, "client_id": app["client_id"], "client_secret": app["client_secret"],
                  "redirect_uri": "http://127.0.0.1:9/cb", "post_logout_redirect_uri": "http://127.0.0.1:9/bye",
                  "email": "node-docs@example.org", "password": PASSWORD, "authorization_details": details,
                  "choose_document": ids["proof_of_address"]}
    summary, report = run_flow(node, flow_input)
    assert summary["documents_offered"] == [ids["proof_of_address"]], report
    assert summary["authorization_details"] == [{**details[0], "documents": [ids["proof_of_address"]]}], report
    assert summary["documents_listed"] == [ids["proof_of_address"]], report
