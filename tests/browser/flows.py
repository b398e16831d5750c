"""What the browser tests share: an app asking for documents (RFC 9396), its callback, its token."""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from tests.factories import make_oidc_app
from tests.support import RP_CALLBACK, App

DOCUMENTS_ASKED = [{"type": "citizen_documents", "document_types": ["proof_of_address", "identity"],
                    "actions": ["read"], "purpose": "Inscription à la cantine"}]


def documents_app(site: Any, name: str = "Cantine scolaire") -> App:
    return make_oidc_app(site.engine, scope="openid profile documents:read documents:deposit", name=name)


def authorization_url(app: App, *, scope: str = "openid profile") -> str:
    return "/authorize?" + urlencode({
        "response_type": "code", "client_id": app.client_id, "redirect_uri": RP_CALLBACK, "scope": scope,
        "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8),
        "authorization_details": json.dumps(DOCUMENTS_ASKED)})


def play_the_app(context: Any) -> None:
    """The app's callback answers in the browser (its host is not reachable from the tests)."""
    context.route(f"{RP_CALLBACK.split('/callback')[0]}/**", lambda route: route.fulfill(
        status=200, content_type="text/html", body="<!doctype html><html lang=fr><title>Cantine</title><p>Merci</p>"))


def code_from(url: str) -> str:
    assert url.startswith(RP_CALLBACK), url
    answer = dict(parse_qsl(urlsplit(url).query))
    assert "code" in answer, answer
    return answer["code"]


def exchange(site: Any, app: App, code: str) -> dict[str, Any]:
    tokens = httpx.post(f"{site.url}/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": RP_CALLBACK, "client_id": app.client_id,
        "client_secret": app.secret}, timeout=20)
    assert tokens.status_code == 200, tokens.text
    return tokens.json()
