"""Helpers to drive the provider as an app and a citizen's browser would."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwk, jwt

from tests.support import PASSWORD, RP_CALLBACK, App, Browser, query_of


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class Flow:
    """One authorization request and what came back."""

    app: App
    params: dict[str, str]
    response: httpx.Response | None = None
    steps: list[str] = field(default_factory=list)

    @property
    def location(self) -> str:
        assert self.response is not None and self.response.status_code in (302, 303), (
            self.response.status_code if self.response else None, self.response.text[:800] if self.response else "")
        return self.response.headers["location"]

    @property
    def result(self) -> dict[str, str]:
        assert self.location.startswith(self.params["redirect_uri"]), self.location
        return query_of(self.location)


def auth_params(app: App, **overrides: str | None) -> dict[str, str]:
    params = {"response_type": "code", "client_id": app.client_id, "redirect_uri": RP_CALLBACK,
              "scope": "openid profile", "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8)}
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def authorize(browser: Browser, app: App, *, email: str | None = None, password: str = PASSWORD,
              consent: str | None = "allow", method: str = "GET", otp: str | None = None,
              documents: tuple[str, ...] = (), path: str = "/authorize", **overrides: str | None) -> Flow:
    """Run /authorize, logging in (if ``email`` and asked) and consenting (if asked), until the
    provider answers the app (a redirect to its redirect_uri) or shows something else; ``documents``:
    the ids ticked on the consent page."""
    flow = Flow(app=app, params=auth_params(app, **overrides))
    response = (browser.get(f"{path}?" + urlencode(flow.params)) if method == "GET"
                else browser.post(path, data=flow.params))
    for _ in range(6):
        location = response.headers.get("location", "")
        if response.status_code == 303 and location.startswith("/login"):
            flow.steps.append("login")
            if email is None:
                break
            data = {"email": email, "password": password, "next": query_of(location)["next"]}
            if otp:
                data["otp"] = otp
            response = browser.submit(location, data, action="/login")
            continue
        if response.status_code == 303 and location.startswith("/authorize/continue/"):
            response = browser.get(location)
            continue
        if response.status_code == 200 and 'name="decision"' in response.text:
            flow.steps.append("consent")
            if consent is None:
                break
            action = response.text.split('action="/authorize/continue/')[1].split('"')[0]
            response = browser.post(f"/authorize/continue/{action}",
                                    data={"decision": consent, "csrf_token": browser.form_token("/login"),
                                          "document": list(documents)})
            continue
        break
    flow.response = response
    return flow


def token_request(browser: Browser, app: App, path: str = "/token", **data: str) -> httpx.Response:
    body = {"client_id": app.client_id, **data}
    if app.secret:
        body["client_secret"] = app.secret
    return browser.post(path, data=body)


def exchange(browser: Browser, flow: Flow, path: str = "/token", **extra: str) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": flow.result["code"],
            "redirect_uri": flow.params["redirect_uri"], **extra}
    return token_request(browser, flow.app, path, **data)


def verify_id_token(browser: Browser, id_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = jwk.KeySet.import_key_set(browser.get("/jwks").json())
    token = jwt.decode(id_token, keys, algorithms=["ES256", "RS256"])
    return dict(token.header), dict(token.claims)
