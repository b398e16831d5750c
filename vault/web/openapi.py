"""The OpenAPI document (``/openapi.json``, browsable at ``/api/docs``) says what the service
answers, not what FastAPI guesses: the routes declare their bodies and every status they can answer
with the helpers here, and ``install_openapi`` adds the security schemes.

What it covers: the JSON API under ``/api/v1/`` (documents, the citizen's account), the OpenID
Connect endpoints an app calls (discovery, keys, authorization, token, userinfo, revocation,
introspection, logout; the FranceConnect-compatible aliases under ``/api/v1`` and ``/api/v2`` are
the same operations and stay out) and the operations probes. The HTML pages are left out.

The error shapes (``vault.web.errors`` makes them):

- ``ApiError`` — ``{"error", "detail", "fields"?}``, every error under ``/api/`` and the probes,
  validation errors (422) included;
- ``OAuthErrorBody`` — ``{"error", "error_description"}`` (RFC 6749 §5.2, RFC 6750 §3.1) on
  ``/token``, ``/revoke``, ``/introspect``, ``/userinfo``;
- an HTML message page on ``/authorize`` and ``/logout``, which a person's browser reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from vault.settings import Settings


class ApiError(BaseModel):
    """Every error of the JSON API (``vault.web.errors.api_error``)."""

    error: str = Field(description="A stable code: invalid_request, unauthenticated, invalid_token, insufficient_scope, "
                                   "csrf, step_up_required, forbidden, not_found, legal_hold, too_large, quota_exceeded, "
                                   "unsupported_type, empty_file, infected, invalid_input, damaged, content_missing, "
                                   "unavailable…")
    detail: str = Field(description="What went wrong, for a person (French for the citizen's own errors)")
    fields: dict[str, str] = Field(default_factory=dict,
                                   description="Per-field messages, when the error is about the request's fields")
    location: str | SkipJsonSchema[None] = Field(
        default=None, description="step_up_required: the page where the citizen confirms it is them (the password, "
                                  "a code or a passkey), which then comes back to the page of the action")


class OAuthErrorBody(BaseModel):
    """An error of the OAuth endpoints (RFC 6749 §5.2: ``error_description`` is optional, and
    authlib leaves it out for some errors; RFC 6750 §3.1 leaves ``error`` out when the request
    carried no credentials)."""

    error: str | SkipJsonSchema[None] = Field(default=None, description="invalid_request, invalid_client, invalid_grant, "
                                                         "unauthorized_client, unsupported_grant_type, invalid_scope, "
                                                         "invalid_token, insufficient_scope…")
    error_description: str | SkipJsonSchema[None] = Field(default=None,
                                                          description="What went wrong, for the app's developer")


STATUS_TEXT = {
    400: "Malformed request (a NUL character, an unreadable field)",
    401: "No credentials, or credentials that are not (or no longer) valid",
    403: "Authenticated, but not allowed (a missing scope, the CSRF header, not the depositing app; with the "
         "session cookie, an action that needs a recent proof of identity: step_up_required)",
    404: "No such document (or not visible to the caller)",
    409: "The document is kept under a legal hold",
    413: "The document is too large, or the citizen's quota is reached",
    415: "The content is not a document type the vault accepts",
    416: "The Range is not satisfiable",
    422: "Invalid fields (the ``fields`` member names them), an empty or infected file",
    500: "The document's stored object is missing or damaged (the operator is told by the log)",
    503: "A dependency (database, object store, antivirus) does not answer; nothing was kept",
}


def api_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a JSON API route: each status with the ``ApiError`` body."""
    return {status: {"model": ApiError, "description": STATUS_TEXT[status]} for status in statuses}


def oauth_errors(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for an OAuth endpoint: each status with RFC 6749's error body."""
    return {status: {"model": OAuthErrorBody, "description": text} for status, text in descriptions.items()}


HTML = {"text/html": {"schema": {"type": "string"}}}


def html_page(description: str) -> dict[str, Any]:
    """A response that is a page for the person's browser."""
    return {"description": description, "content": HTML}


def redirect(description: str) -> dict[str, Any]:
    return {"description": description,
            "headers": {"Location": {"schema": {"type": "string"}, "description": "Where the browser goes next"}}}


# ---- security schemes -------------------------------------------------------------------------------------

BEARER = "appToken"
CITIZEN_SESSION = "citizenSession"
CSRF_COOKIE = "csrfCookie"
CSRF_HEADER = "csrfHeader"
CLIENT_BASIC = "clientBasic"
CITY_APPS = "cityApps"

READ: list[dict[str, list[str]]] = [{BEARER: [], CITY_APPS: ["documents:read"]},
                                    {BEARER: [], CITY_APPS: ["documents:deposit"]}, {CITIZEN_SESSION: []}]
"""A reading API route: an app's access token with one of the scopes (or an RFC 9396 grant of chosen
documents), or the citizen's session."""
WRITE: list[dict[str, list[str]]] = [{BEARER: [], CITY_APPS: ["documents:deposit"]},
                                     {CITIZEN_SESSION: [], CSRF_COOKIE: [], CSRF_HEADER: []}]
"""A changing API route: an app's token with documents:deposit, or the session with the CSRF cookie
echoed in the header."""
SESSION: list[dict[str, list[str]]] = [{CITIZEN_SESSION: []}]


def security_schemes(settings: Settings, scopes: dict[str, str]) -> dict[str, Any]:
    prefix = "__Host-" if settings.https else ""  # vault.web.pages.cookie_name
    issuer = settings.issuer
    return {
        CITY_APPS: {"type": "oauth2", "description": "How an app gets its access token (the code flow; the "
                                                     "token is then sent as `appToken`), and its scopes.",
                    "flows": {"authorizationCode": {"authorizationUrl": f"{issuer}/authorize",
                                                    "tokenUrl": f"{issuer}/token", "refreshUrl": f"{issuer}/token",
                                                    "scopes": scopes}}},
        BEARER: {"type": "http", "scheme": "bearer",
                    "description": "An access token this provider issued to an app (`/token`). The document API "
                                   "needs `documents:read` (or an RFC 9396 grant of chosen documents) to read and "
                                   "`documents:deposit` to deposit and change what the app deposited."},
        CITIZEN_SESSION: {"type": "apiKey", "in": "cookie", "name": f"{prefix}session",
                          "description": "The citizen's login session (the vault's own pages)."},
        CSRF_COOKIE: {"type": "apiKey", "in": "cookie", "name": f"{prefix}csrf",
                      "description": "The CSRF cookie the pages set; with a session, unsafe methods echo it in "
                                     "`X-CSRF-Token`."},
        CSRF_HEADER: {"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
                      "description": "The `csrf` cookie's value (double submit), required with a session on "
                                     "POST, PATCH and DELETE."},
        CLIENT_BASIC: {"type": "http", "scheme": "basic",
                       "description": "An app's `client_id:client_secret` (client_secret_basic); apps registered "
                                      "with client_secret_post send them in the form, private_key_jwt apps send "
                                      "`client_assertion`."},
    }


def install_openapi(app: FastAPI, settings: Settings, *, scopes: dict[str, str]) -> None:
    """The document FastAPI builds from the routes, plus the security schemes (their cookie names
    and URLs depend on the issuer; ``scopes``: every scope an app may ask for, described)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            document.setdefault("components", {})["securitySchemes"] = security_schemes(settings, scopes)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
