"""What the OpenID Connect endpoints take and answer, for the OpenAPI document. The routes read
their parameters themselves (authlib needs them raw: repeated, unknown, in the query or the form),
so the parameters are declared here (``openapi_extra``), not as FastAPI parameters that would
validate them first."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vault.oidc.claims import SCOPE_GROUPS, SCOPES_SUPPORTED
from vault.web.openapi import BEARER, CITIZEN_SESSION, CLIENT_BASIC, html_page, oauth_errors, redirect


def _param(name: str, where: str, description: str, *, required: bool = False, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "description": description,
            "schema": {"type": "string", **schema}}


def scope_descriptions() -> dict[str, str]:
    """Every scope an app may ask for, for the OpenAPI document's OAuth 2.0 scheme (developers read
    them in English; the citizen reads the consent page's French)."""
    claims = {scope: f"The claims {', '.join(claims)}" for scope, claims in SCOPE_GROUPS.items()}
    return {"openid": "An OpenID Connect login (an ID token, userinfo)", **claims,
            "documents:read": "Read the citizen's documents",
            "documents:deposit": "Deposit documents; read, change and delete those the app deposited",
            "documents:write": "The former name of documents:deposit"}


SCOPE = {"description": f"Space-separated scopes, `openid` first; supported: {', '.join(SCOPES_SUPPORTED)}"}

_AUTHORIZATION: list[tuple[str, str, bool, dict[str, Any]]] = [
    ("response_type", "`code` (the code flow)", True, {"enum": ["code"]}),
    ("client_id", "The app's client_id", True, {}),
    ("redirect_uri", "One of the app's registered redirect URIs, exactly", True, {}),
    ("scope", SCOPE["description"], True, {}),
    ("state", "Returned to the app as is", False, {}),
    ("nonce", "Copied into the ID token (required for apps registered so)", False, {}),
    ("prompt", "`none`, `login`, `consent` (space-separated)", False, {}),
    ("max_age", "Seconds since the citizen's last login beyond which they log in again", False,
     {"pattern": "^[0-9]{1,9}$"}),
    ("login_hint", "The citizen's email, prefilled on the login page", False, {}),
    ("ui_locales", "`fr` or `en`", False, {}),
    ("acr_values", "`eidas1`", False, {}),
    ("id_token_hint", "An ID token this provider issued to the app", False, {}),
    ("code_challenge", "PKCE (RFC 7636)", False, {}),
    ("code_challenge_method", "`S256`", False, {"enum": ["S256"]}),
    ("authorization_details", "RFC 9396 (JSON): chosen documents (`type: citizen_vault_documents`)", False, {}),
]

_CLIENT_CREDENTIALS = {
    "client_id": {"type": "string", "description": "client_secret_post (or private_key_jwt, none): the app"},
    "client_secret": {"type": "string", "description": "client_secret_post: the app's secret"},
    "client_assertion_type": {"type": "string",
                              "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]},
    "client_assertion": {"type": "string", "description": "private_key_jwt: a JWT signed with the app's key"},
}


def _form(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema}}}


def _pages(*statuses: int, post: bool = False) -> dict[int | str, dict[str, Any]]:
    text = {
        200: "A page for the citizen: the login, the consent, the logout confirmation, or a message",
        400: "A page saying the app's request is not valid (nothing is sent to an unverified redirect URI)",
        403: "A page: an expired form, a login at the counter the app does not accept, an assisted session over",
        413: "A page: the form is too large",
    }
    answers: dict[int | str, dict[str, Any]] = {status: html_page(text[status]) for status in statuses}
    if post:
        answers[413] = html_page(text[413])
    return answers


# ---- authorization ------------------------------------------------------------------------------------

AUTHORIZE_GET: dict[str, Any] = {
    "parameters": [_param(name, "query", text, required=required, **extra)
                   for name, text, required, extra in _AUTHORIZATION],
    "security": [{}, {CITIZEN_SESSION: []}],
}
AUTHORIZE_POST: dict[str, Any] = {
    "requestBody": _form({name: {"type": "string", "description": text, **extra}
                          for name, text, _, extra in _AUTHORIZATION},
                         [name for name, _, required, _ in _AUTHORIZATION if required]),
    "security": [{}, {CITIZEN_SESSION: []}],
}
AUTHORIZE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_pages(200, 400, 403, post=True),
    303: redirect("To the app's redirect URI (`code` or `error`, with `state` and `iss`), or to the login page"),
}

# ---- token, revocation, introspection -----------------------------------------------------------------


class TokenResponse(BaseModel):
    model_config = ConfigDict(extra="allow", title="TokenResponse")

    access_token: str
    token_type: str = Field(description="`Bearer`")
    expires_in: int
    scope: str | None = None
    id_token: str | None = Field(default=None, description="With the `openid` scope (authorization_code)")
    refresh_token: str | None = Field(default=None, description="For apps allowed refresh tokens")


class IntrospectionResponse(BaseModel):
    """RFC 7662 §2.2: ``{"active": false}`` alone for a token that is not active."""

    model_config = ConfigDict(extra="allow", title="IntrospectionResponse")

    active: bool
    scope: str | None = None
    client_id: str | None = None
    token_type: str | None = None
    exp: int | None = None
    iat: int | None = None
    sub: str | None = None
    aud: str | list[str] | None = None
    iss: str | None = None


CLIENT_AUTH: list[dict[str, list[str]]] = [{CLIENT_BASIC: []}, {}]  # Basic, or the credentials in the form
_OAUTH_STATUSES = {
    400: "OAuth error (invalid_request, invalid_grant, unsupported_grant_type, unauthorized_client…), or a body "
         "that is not urlencoded UTF-8",
    401: "invalid_client: the app could not be authenticated (`WWW-Authenticate: Basic` when it used Basic)",
    413: "The body is larger than 64 KiB",
}

TOKEN: dict[str, Any] = {
    "requestBody": _form({
        "grant_type": {"type": "string", "enum": ["authorization_code", "refresh_token"]},
        "code": {"type": "string", "description": "authorization_code: the code the app received"},
        "redirect_uri": {"type": "string", "description": "authorization_code: the same as in the authorization"},
        "code_verifier": {"type": "string", "description": "PKCE (RFC 7636)"},
        "refresh_token": {"type": "string", "description": "refresh_token: the last refresh token issued"},
        "scope": {"type": "string", "description": "refresh_token: fewer scopes than granted"},
        **_CLIENT_CREDENTIALS,
    }, ["grant_type"]),
    "security": CLIENT_AUTH,
}
TOKEN_RESPONSES = {200: {"model": TokenResponse, "description": "The tokens (never cached)"},
                   **oauth_errors(_OAUTH_STATUSES)}

_TOKEN_FORM = {
    "token": {"type": "string", "description": "An access or refresh token this provider issued to the app"},
    "token_type_hint": {"type": "string", "enum": ["access_token", "refresh_token"]},
    **_CLIENT_CREDENTIALS,
}
REVOKE: dict[str, Any] = {"requestBody": _form(_TOKEN_FORM, ["token"]), "security": CLIENT_AUTH}
REVOKE_RESPONSES = {200: {"description": "Revoked, or not a token of this app (RFC 7009 §2.2: the same answer)",
                          "content": {"application/json": {"schema": {"type": "object"}}}},
                    **oauth_errors(_OAUTH_STATUSES)}
INTROSPECT: dict[str, Any] = {"requestBody": _form(_TOKEN_FORM, ["token"]), "security": CLIENT_AUTH}
INTROSPECT_RESPONSES = {200: {"model": IntrospectionResponse, "description": "The token's state"},
                        **oauth_errors(_OAUTH_STATUSES)}

# ---- userinfo -------------------------------------------------------------------------------------------

_BEARER_STATUSES = {
    400: "invalid_request: the token sent twice, or a malformed request",
    401: "invalid_token (or no token: then no `error`); `WWW-Authenticate: Bearer`",
    403: "insufficient_scope: the token lacks `openid`",
}
USERINFO_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The claims the citizen consented to: JSON, or a signed JWT for apps registered so",
          "content": {"application/json": {"schema": {"type": "object", "properties": {"sub": {"type": "string"}},
                                                      "required": ["sub"]}},
                      "application/jwt": {"schema": {"type": "string"}}}},
    **oauth_errors(_BEARER_STATUSES),
}
USERINFO_GET: dict[str, Any] = {"security": [{BEARER: []}, {}]}
USERINFO_POST: dict[str, Any] = {
    "requestBody": {"required": False, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "properties": {"access_token": {"type": "string",
                                                          "description": "The token, when not in the header"}}}}}},
    "security": [{BEARER: []}, {}],
}
USERINFO_POST_RESPONSES = {**USERINFO_RESPONSES, **oauth_errors({413: _OAUTH_STATUSES[413]})}

# ---- logout ---------------------------------------------------------------------------------------------

_LOGOUT = [
    ("id_token_hint", "An ID token this provider issued to the app (then no confirmation is asked)"),
    ("post_logout_redirect_uri", "One of the app's registered logout URIs"),
    ("client_id", "The app, when there is no id_token_hint"),
    ("state", "Returned to the app as is"),
    ("ui_locales", "`fr` or `en`"),
]
LOGOUT_GET: dict[str, Any] = {
    "parameters": [_param(name, "query", text) for name, text in _LOGOUT],
    "security": [{}, {CITIZEN_SESSION: []}],
}
LOGOUT_POST: dict[str, Any] = {
    "requestBody": _form({**{name: {"type": "string", "description": text} for name, text in _LOGOUT},
                          "csrf_token": {"type": "string", "description": "The site's own logout button"}}),
    "security": [{}, {CITIZEN_SESSION: []}],
}
LOGOUT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_pages(200, 400),
    303: redirect("Logged out: to the app's post_logout_redirect_uri (with `state`), or to the home page"),
}
LOGOUT_POST_RESPONSES = {**LOGOUT_RESPONSES, **_pages(403, post=True)}

# ---- discovery and keys -------------------------------------------------------------------------------


class ProviderMetadata(BaseModel):
    """OpenID Connect Discovery 1.0 §3 (every member this provider publishes)."""

    model_config = ConfigDict(extra="allow", title="ProviderMetadata")

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    scopes_supported: list[str]
    response_types_supported: list[str]
    subject_types_supported: list[str]
    id_token_signing_alg_values_supported: list[str]


class Jwks(BaseModel):
    """RFC 7517 §5: the public keys (``kid``, ``kty``, ``use``, ``alg`` and the key's members)."""

    model_config = ConfigDict(title="JWKS")

    keys: list[dict[str, Any]]
