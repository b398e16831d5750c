"""``/demo``: the service plays one of the city's apps, so a newcomer sees the whole flow in a
browser: login button → (login) → consent → the ID token's claims and userinfo → logout.

It is a real relying party: it talks to this provider over HTTP, like any app (discovery is
skipped: the endpoints are the issuer's), checks ``state``, ``iss`` and the ID token (signature,
``aud``, ``nonce``), and uses PKCE. It exists only where ``vault demo seed`` registered the
``demo-app`` client (development).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Request
from joserfc import jwk, jwt
from joserfc.errors import JoseError
from sqlmodel import Session
from starlette.responses import RedirectResponse, Response

from vault.oidc.models import OAuthClient
from vault.settings import Settings
from vault.web.dependencies import Db
from vault.web.pages import PageError, render
from vault.web.state import app_settings

router = APIRouter(include_in_schema=False)
CLIENT_ID = "demo-app"
COOKIE = "demo_rp"
SCOPE = "openid profile birth email"


def install_demo_app(db: Session, *, issuer: str) -> None:
    """Register (or refresh) the demo app served at /demo: a public client (PKCE) whose URIs follow
    the issuer. ``vault demo seed`` calls it; development only."""
    client = db.get(OAuthClient, CLIENT_ID) or OAuthClient(
        client_id=CLIENT_ID, name="Démonstration (application de la ville)", auth_method="none",
        scope=SCOPE, sector=CLIENT_ID, redirect_uris=[], allow_refresh=True)
    client.redirect_uris = [f"{issuer}/demo/callback"]
    client.post_logout_redirect_uris = [f"{issuer}/demo"]
    client.disabled_at = None
    db.add(client)


def _settings(request: Request) -> Settings:
    return app_settings(request)


def _installed(db: Db) -> bool:
    client = db.get(OAuthClient, CLIENT_ID)
    return client is not None and client.disabled_at is None


def _load(request: Request) -> dict[str, str]:
    """What the demo keeps in its cookie: the request's state, nonce and verifier, then the ID token."""
    try:
        saved = json.loads(request.cookies.get(COOKIE, "") or "{}")
    except ValueError:
        return {}
    return saved if isinstance(saved, dict) else {}  # a cookie changed into other JSON is no cookie


def _store(response: Response, request: Request, value: dict[str, str]) -> None:
    response.set_cookie(COOKIE, json.dumps(value, separators=(",", ":")), path="/demo", httponly=True,
                        samesite="lax", secure=_settings(request).https, max_age=600)


@router.get("/demo")
def demo_home(request: Request, db: Db) -> Response:
    if not _installed(db):
        raise PageError(404, "La démonstration n'est pas installée ici (commande : vault demo seed).",
                        title="Démonstration indisponible")
    return render(request, "demo.html", {"title": "Démonstration", "step": "start",
                                         "logged_out": request.query_params.get("state") is not None})


@router.get("/demo/login")
def demo_login(request: Request, db: Db) -> Response:
    if not _installed(db):
        raise PageError(404, "La démonstration n'est pas installée ici.", title="Démonstration indisponible")
    issuer = _settings(request).issuer
    state, nonce, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(16), secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": f"{issuer}/demo/callback",
             "scope": SCOPE, "state": state, "nonce": nonce, "code_challenge": challenge,
             "code_challenge_method": "S256", "prompt": request.query_params.get("prompt", "") or None}
    response = RedirectResponse(f"{issuer}/authorize?" + urlencode({k: v for k, v in query.items() if v}),
                                status_code=303)
    _store(response, request, {"state": state, "nonce": nonce, "verifier": verifier})
    return response


def _fail(request: Request, message: str) -> Response:
    return render(request, "demo.html", {"title": "Démonstration", "step": "error", "message": message}, status=400)


@router.get("/demo/callback")
def demo_callback(request: Request, db: Db) -> Response:
    issuer = _settings(request).issuer
    saved, params = _load(request), request.query_params
    if not saved.get("state") or params.get("state") != saved["state"]:
        return _fail(request, "La réponse ne correspond pas à une demande de cette démonstration (state).")
    if params.get("iss") != issuer:
        return _fail(request, "La réponse ne vient pas du fournisseur attendu (iss).")
    if params.get("error"):
        return _fail(request, f"Le fournisseur a répondu : {params['error']}.")
    try:
        with httpx.Client(base_url=issuer, timeout=10) as http:
            token = http.post("/token", data={"grant_type": "authorization_code", "code": params.get("code", ""),
                                              "redirect_uri": f"{issuer}/demo/callback", "client_id": CLIENT_ID,
                                              "code_verifier": saved["verifier"]})
            if token.status_code != 200:
                return _fail(request, f"L'échange du code a échoué : {token.json().get('error')}.")
            body = token.json()
            keys = jwk.KeySet.import_key_set(http.get("/jwks").json())
            userinfo = http.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    except (httpx.HTTPError, ValueError, KeyError):
        return _fail(request, "Le fournisseur n'a pas répondu comme prévu.")
    try:
        decoded = jwt.decode(body["id_token"], keys, algorithms=["ES256", "RS256"])
    except (JoseError, ValueError):
        return _fail(request, "La signature de l'ID token n'est pas valide.")
    claims = dict(decoded.claims)
    if claims.get("aud") != CLIENT_ID or claims.get("iss") != issuer or claims.get("nonce") != saved["nonce"] \
            or claims.get("exp", 0) < time.time():
        return _fail(request, "L'ID token ne correspond pas à cette demande (iss, aud, nonce ou expiration).")
    response = render(request, "demo.html", {"title": "Démonstration", "step": "done", "claims": claims,
                                             "header": dict(decoded.header), "userinfo": userinfo})
    _store(response, request, {"id_token": body["id_token"]})
    return response


@router.get("/demo/logout")
def demo_logout(request: Request) -> Response:
    issuer = _settings(request).issuer
    saved = _load(request)
    query = {"post_logout_redirect_uri": f"{issuer}/demo", "state": secrets.token_urlsafe(8)}
    if saved.get("id_token"):
        query["id_token_hint"] = saved["id_token"]
    else:
        query["client_id"] = CLIENT_ID
    response = RedirectResponse(f"{issuer}/logout?" + urlencode(query), status_code=303)
    response.delete_cookie(COOKIE, path="/demo")
    return response
