"""Apps (OpenID Connect clients): registration, listing, secret rotation, disabling."""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from joserfc import jwk
from joserfc.errors import JoseError
from sqlmodel import Session, col, select

from vault.crypto.tokens import token_hash
from vault.db import utcnow
from vault.oidc.claims import scopes_supported
from vault.oidc.exceptions import ClientError, ClientNotFound
from vault.oidc.models import OAuthClient, OAuthToken
from vault.oidc.profiles import OIDC, PROFILES
from vault.oidc.provider import AUTH_METHODS, revoke_tokens

# FranceConnect's token endpoint offers these two (no client_secret_basic).
FC_AUTH_METHODS = ("client_secret_post", "private_key_jwt")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    client: OAuthClient
    secret: str | None  # shown once


def _check_uri(uri: str, *, production: bool) -> str | None:
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"{uri!r} is not an absolute http(s) URL"
    if parts.fragment:
        return f"{uri!r} must not have a fragment"
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme == "http" and production and not loopback:
        return f"{uri!r} must use https"
    return None


def client_public(client: OAuthClient) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "scope": client.scope,
        "auth_method": client.auth_method,
        "sector": client.sector,
        "id_token_signed_response_alg": client.id_token_alg,
        "userinfo_signed_response_alg": client.id_token_alg if client.userinfo_signed else None,
        "require_nonce": client.require_nonce,
        "refresh_tokens": client.allow_refresh,
        "profile": client.profile,
        "accept_delegation": client.accept_delegation,
        "created_at": client.created_at.isoformat(),
        "disabled": client.disabled_at is not None,
    }


def create_client(*, db: Session, name: str, redirect_uris: list[str], post_logout_redirect_uris: list[str],
                  scope: str, auth_method: str, sector: str | None, userinfo_signed: bool, id_token_alg: str,
                  require_nonce: bool, allow_refresh: bool, jwks_json: str | None, production: bool,
                  profile: str = "oidc", accept_delegation: bool = False) -> Registration:
    errors: dict[str, str] = {}
    behaviour = PROFILES.get(profile)
    if behaviour is None:
        errors["profile"] = f"one of {', '.join(PROFILES)}"
        behaviour = OIDC
    if not name.strip() or len(name) > 200:
        errors["name"] = "give the app's name (1 to 200 characters), shown to citizens on the consent page"
    if not redirect_uris:
        errors["redirect-uri"] = "at least one is required"
    for option, uris in (("redirect-uri", redirect_uris), ("post-logout-redirect-uri", post_logout_redirect_uris)):
        for uri in uris:
            if problem := _check_uri(uri, production=production):
                errors[option] = problem
    scopes = scope.split()
    supported = scopes_supported(behaviour)
    unknown = [s for s in scopes if s not in supported]
    if "openid" not in scopes:
        errors["scope"] = "must include openid"
    elif unknown:
        errors["scope"] = f"unknown scope(s) for {behaviour.name}: {', '.join(unknown)}; supported: {' '.join(supported)}"
    if auth_method not in AUTH_METHODS:
        errors["auth-method"] = f"one of {', '.join(AUTH_METHODS)}"
    elif behaviour.franceconnect and auth_method not in FC_AUTH_METHODS:
        errors["auth-method"] = f"a FranceConnect app authenticates with {' or '.join(FC_AUTH_METHODS)}, as at FranceConnect"
    if accept_delegation and behaviour.franceconnect:
        errors["accept-delegation"] = (f"a FranceConnect app ({behaviour.name}) never takes logins made at the counter "
                                       "for someone else (FranceConnect has no such login); register it with "
                                       "--profile oidc to accept them")
    if behaviour.userinfo == "json" and userinfo_signed:
        errors["userinfo-signed"] = "fc-v1 apps get userinfo as JSON, as FranceConnect v1 sends it"
    if id_token_alg not in ("ES256", "RS256"):
        errors["id-token-alg"] = "ES256 or RS256"
    if sector is not None and (not sector.strip() or len(sector) > 200):
        errors["sector"] = "1 to 200 characters"
    jwks = None
    if auth_method == "private_key_jwt":
        try:
            jwks = json.loads(jwks_json or "")
            keyset = jwk.KeySet.import_key_set(jwks)
            if not keyset.keys or any(key.is_private for key in keyset.keys):
                raise ValueError
        except (ValueError, TypeError, JoseError):
            errors["jwks"] = "private_key_jwt needs --jwks with the app's PUBLIC keys (a JWK Set, JSON)"
    if errors:
        raise ClientError(errors)

    # 64 hex digits, like FranceConnect's: never starts with '-' (an id like "-x…" reads as an
    # option on a command line), survives any URL, form, header or config file unquoted.
    client_id = secrets.token_hex(32)
    secret = None if auth_method in ("none", "private_key_jwt") else secrets.token_urlsafe(32)
    client = OAuthClient(
        client_id=client_id, name=name.strip(), secret_hash=token_hash(secret) if secret else None,
        redirect_uris=list(dict.fromkeys(redirect_uris)),
        post_logout_redirect_uris=list(dict.fromkeys(post_logout_redirect_uris)),
        scope=" ".join(dict.fromkeys(scopes)), auth_method=auth_method, sector=(sector or client_id).strip(),
        id_token_alg=id_token_alg, userinfo_signed=userinfo_signed, require_nonce=require_nonce,
        allow_refresh=allow_refresh, jwks=jwks, profile=behaviour.name, accept_delegation=accept_delegation,
    )
    db.add(client)
    db.flush()
    logger.info("app registered", extra={"client_id": client_id})
    return Registration(client=client, secret=secret)


def list_clients(*, db: Session) -> list[OAuthClient]:
    return list(db.exec(select(OAuthClient).order_by(col(OAuthClient.created_at))))


def _get(db: Session, client_id: str) -> OAuthClient:
    client = db.get(OAuthClient, client_id)
    if client is None:
        raise ClientNotFound(client_id)
    return client


def rotate_secret(*, db: Session, client_id: str) -> str:
    client = _get(db, client_id)
    if client.secret_hash is None:
        raise ClientError({"client": f"{client.auth_method} apps have no secret"})
    secret = secrets.token_urlsafe(32)
    client.secret_hash = token_hash(secret)
    logger.info("app secret rotated", extra={"client_id": client_id})
    return secret


def disable_client(*, db: Session, client_id: str) -> OAuthClient:
    """The app can no longer log anyone in, and every token it holds is revoked."""
    client = _get(db, client_id)
    client.disabled_at = client.disabled_at or utcnow()
    revoke_tokens(db, col(OAuthToken.client_id) == client_id)
    logger.info("app disabled", extra={"client_id": client_id})
    return client


