"""The Starlette glue for authlib's server (authlib ships none): requests in, responses out.

authlib's ``OAuth2Request`` is built from what the route already read (query and form), with the
*public* URL (the issuer's), so that a TLS-terminating proxy does not make every request look
insecure. The ``body=`` argument, deprecated in authlib, is not used: the payload carries the data.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, unquote, urlencode

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from vault.auth.models import Citizen, LoginSession
from vault.errors import OAuthError
from vault.oidc.delegation import Delegation
from vault.oidc.exceptions import BodyError
from vault.web.pages import BodyTooLarge, read_small_body

MAX_BODY = 64 * 1024

# authlib's answer: (status, body, headers). The body is a JSON object, or already a string; the
# headers are (name, value) pairs (its stub allows a mapping too).
OAuthHeaders: TypeAlias = Sequence[tuple[str, str]] | Mapping[str, str]
OAuthResponse: TypeAlias = tuple[int, Any, OAuthHeaders]


class VaultPayload(OAuth2Payload):
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in items:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


@dataclass
class WrittenToken:
    """A token written by the statement that spent its code (vault.oidc.provider, on PostgreSQL):
    its row, and the values the answer will carry."""

    id: uuid.UUID
    token: dict[str, Any]


class VaultOAuth2Request(OAuth2Request):
    """Every request the provider handles (authlib hands it back to our hooks as an OAuth2Request)."""

    payload: VaultPayload
    user: Citizen | None  # set by authlib: the citizen the grant is for
    login: LoginSession | None  # the citizen's login session, set by the authorization route
    authorization_details: list[dict[str, Any]] | None  # RFC 9396, as the citizen granted them
    act: dict[str, str] | None  # RFC 8693's actor: a counter agent logging in for the citizen
    delegation: Delegation | None  # the assisted session behind ``act``
    written_token: WrittenToken | None  # the token endpoint's token, written with its code spent

    def __init__(self, *, method: str, uri: str, headers: Mapping[str, str], query: list[tuple[str, str]],
                 form: list[tuple[str, str]]) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._args: dict[str, str | None] = dict(query)
        self._form = dict(form)
        # Authorization parameters come from the query (GET) or the form (POST), never mixed.
        self.payload = VaultPayload(form if method == "POST" else query)
        self.login = None
        self.authorization_details = None
        self.act = None
        self.delegation = None
        self.written_token = None

    @property
    def args(self) -> dict[str, str | None]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


async def read_form_items(request: Request) -> list[tuple[str, str]]:
    """The urlencoded body of a POST (OAuth endpoints take nothing else), bounded and strict."""
    if request.method != "POST":
        return []
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise BodyError(400, "The body must be application/x-www-form-urlencoded.")
    try:
        body = await read_small_body(request, MAX_BODY)
    except BodyTooLarge:
        raise BodyError(413, "The request body is too large.") from None
    try:
        items = parse_qsl(body.decode("utf-8"), keep_blank_values=False, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        raise BodyError(400, "The body is not valid UTF-8 form data.") from None
    if any("\x00" in key or "\x00" in value for key, value in items):
        raise BodyError(400, "The body contains a NUL character.")  # no field holds one, on any database
    return items


def check_basic_credentials(header: str) -> None:
    """An ``Authorization: Basic`` header must be readable (RFC 6749 §2.3.1: base64 of the
    percent-encoded ``client_id:client_secret``, in UTF-8, no control character) before authlib or
    the database see it; otherwise the client failed to authenticate: 401 ``invalid_client``."""
    if header[:6].lower() != "basic ":
        return
    try:
        decoded = base64.b64decode(header[6:].strip().encode("ascii"), validate=True).decode("utf-8")
        decoded += unquote(decoded, errors="strict")
    except (UnicodeError, binascii.Error):
        decoded = "\x00"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in decoded):
        raise OAuthError("The Basic credentials cannot be read.", status=401, code="invalid_client",
                         headers={"WWW-Authenticate": 'Basic realm="token"', "Cache-Control": "no-store"})


def oauth_request(request: Request, issuer: str, form: list[tuple[str, str]],
                  query: list[tuple[str, str]] | None = None) -> VaultOAuth2Request:
    """authlib's request for this one; raises 401 ``invalid_client`` for unreadable Basic credentials."""
    check_basic_credentials(request.headers.get("authorization", ""))
    query = query if query is not None else list(request.query_params.multi_items())
    uri = issuer + request.url.path + (f"?{urlencode(query)}" if query else "")
    # Starlette's headers stay case-insensitive (authlib reads "Authorization").
    return VaultOAuth2Request(method=request.method, uri=uri, headers=request.headers, query=query, form=form)


def to_response(result: OAuthResponse, *, issuer: str | None = None) -> Response:
    """authlib's (status, body, headers) as a Starlette response. With ``issuer``, a redirect to
    the client carries ``iss`` (RFC 9207 §2), errors included."""
    status, body, headers = result
    header_map = dict(headers or [])
    location = header_map.pop("Location", None)
    if location is not None:
        if issuer:
            separator = "&" if "?" in location else "?"
            location = f"{location}{separator}{urlencode({'iss': issuer})}"
        return RedirectResponse(location, status_code=303 if status == 302 else status, headers=header_map)
    header_map.pop("Content-Type", None)
    if isinstance(body, dict):
        response: Response = JSONResponse(body, status_code=status, headers=header_map)
    else:
        response = Response(body if isinstance(body, (str, bytes)) else json.dumps(body), status_code=status,
                            headers=header_map, media_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
