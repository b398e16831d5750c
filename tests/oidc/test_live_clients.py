"""Independent clients against a running server (`vault serve`, PostgreSQL): authlib's OAuth
client completes the flow, and the /demo app (a real relying party over HTTP) works end to end."""

from __future__ import annotations

import html
import json
import re
import secrets
from urllib.parse import urljoin

import httpx
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwk, jwt

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def citizen_browser(base: str, start_url: str, email: str, password: str) -> tuple[httpx.Client, str]:
    """Follow an authorization URL as a citizen would: login form, consent button. Returns the
    browser and the URL the provider finally sends the browser to (the app's callback)."""
    browser = httpx.Client(base_url=base, follow_redirects=False, timeout=20)
    response = browser.get(start_url)
    for _ in range(8):
        location = response.headers.get("location")
        if location and not location.startswith("/"):
            return browser, location
        if location:
            response = browser.get(location)
            continue
        page = response.text
        token = html.unescape(CSRF.search(page).group(1))
        if 'name="password"' in page:
            next_path = html.unescape(re.search(r'name="next" value="([^"]*)"', page).group(1))
            response = browser.post("/login", data={"email": email, "password": password, "csrf_token": token,
                                                    "next": next_path})
        elif 'name="decision"' in page:
            action = re.search(r'<form method="post" action="(/authorize/continue/[^"]+)"', page).group(1)
            response = browser.post(action, data={"decision": "allow", "csrf_token": token})
        else:
            raise AssertionError(f"unexpected page {response.status_code}: {page[:500]}")
    raise AssertionError("too many steps")


def test_authlib_oauth_client_completes_the_flow(live_server) -> None:
    base = live_server.url
    app = json.loads(live_server.vault("client", "create", "--name", "authlib client", "--redirect-uri",
                                       "http://127.0.0.1:9/cb", "--scope", "openid profile birth email",
                                       "--auth-method", "client_secret_basic", "--refresh-tokens", "--json").stdout)
    live_server.vault("citizen", "create", "--email", "authlib@example.org", "--given-name", "Paul", "--family-name",
                      "Client", "--birthdate", "1970-01-02", "--gender", "male", "--birthcountry", "99134",
                      "--password-stdin", "--verified", "--json", stdin="une phrase pour authlib\n")
    meta = httpx.get(f"{base}/.well-known/openid-configuration").json()
    client = OAuth2Client(app["client_id"], app["client_secret"], scope="openid profile birth email",
                          redirect_uri="http://127.0.0.1:9/cb", code_challenge_method="S256",
                          token_endpoint_auth_method="client_secret_basic")
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(12)
    url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)

    _, callback = citizen_browser(base, url.removeprefix(base), "authlib@example.org", "une phrase pour authlib")
    token = client.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier,
                               state=state)
    keys = jwk.KeySet.import_key_set(httpx.get(meta["jwks_uri"]).json())
    decoded = jwt.decode(token["id_token"], keys, algorithms=meta["id_token_signing_alg_values_supported"])
    claims = CodeIDToken(decoded.claims, decoded.header, options={"iss": {"value": meta["issuer"]}},
                         params={"nonce": nonce, "client_id": app["client_id"], "access_token": token["access_token"]})
    claims.validate(leeway=5)

    info = client.get(meta["userinfo_endpoint"]).json()
    assert info["sub"] == claims["sub"] and info["family_name"] == "Client" and info["birthplace"] == ""
    assert info["birthcountry"] == "99134"
    refreshed = client.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"]
    assert client.get(meta["userinfo_endpoint"]).status_code == 200
    revoked = client.revoke_token(meta["revocation_endpoint"], token=refreshed["refresh_token"])
    assert revoked.status_code == 200
    assert client.get(meta["userinfo_endpoint"]).status_code == 401


def test_demo_app_plays_the_whole_flow(live_server) -> None:
    base = live_server.url
    credentials = json.loads(live_server.vault("demo", "seed", "--json").stdout)
    browser = httpx.Client(base_url=base, follow_redirects=False, timeout=20)
    start = browser.get("/demo")
    assert start.status_code == 200 and 'href="/demo/login"' in start.text
    # The demo's login button, then the citizen's steps on the provider's pages.
    to_provider = browser.get("/demo/login")
    browser_after, callback = citizen_browser(base, to_provider.headers["location"].removeprefix(base),
                                              credentials["email"], credentials["password"])
    browser_after.cookies.update(browser.cookies)
    assert callback.startswith(f"{base}/demo/callback?")
    page = browser_after.get(callback.removeprefix(base))
    assert page.status_code == 200, page.text[:1000]
    text = html.unescape(page.text)
    assert "Connexion réussie" in text and "Marie Claire" in text and "eidas1" in text and "99100" in text
    out = browser_after.get("/demo/logout")
    logout = browser_after.get(out.headers["location"].removeprefix(base))
    assert logout.status_code == 303 and logout.headers["location"].startswith(f"{base}/demo?state=")
    assert browser_after.get("/account").status_code == 303
    assert "déconnecté" in html.unescape(browser_after.get(urljoin(base, logout.headers["location"])).text)
