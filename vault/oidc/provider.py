"""The OpenID Connect provider on authlib's server classes (docs/architecture.md, "Login"). Speaks OAuth, not HTTP:
the Starlette glue lives in ``vault/auth/adapter.py``.

authlib leaves gaps that are ours to close, each marked ``GAP`` below: atomic single-use codes
and revocation on replay (authlib #757), ``redirect_uri`` mandatory (OIDC Core §3.1.2.1), PKCE
``S256`` only, ``state`` mandatory (FranceConnect), per-client ``nonce`` requirement, refresh
rotation with reuse detection (RFC 9700 §4.14.2), unknown scopes ignored rather than refused
(OIDC Core §3.1.2.1), and the ID token's claims (pairwise ``sub``, ``acr``, ``amr``, ``sid``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    BaseGrant,
    ClientMixin,
    OAuth2Request,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.util import create_half_hash
from joserfc import jwk
from sqlalchemy import BindParameter, ColumnElement, Table, bindparam, delete, insert, inspect, update
from sqlalchemy import select as core_select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from vault import metrics
from vault.auth.models import Citizen
from vault.crypto.tokens import token_hash
from vault.db import utcnow
from vault.oidc.adapter import OAuthHeaders, OAuthResponse, VaultOAuth2Request, WrittenToken
from vault.oidc.claims import CLAIM_SOURCE_FIELDS, SCOPES_SUPPORTED, WRITE_SCOPES, scopes_supported
from vault.oidc.delegation import DELEGATION_AMR
from vault.oidc.keys import KeyStore
from vault.oidc.models import AuthorizationCode, ClientAssertion, OAuthClient, OAuthToken
from vault.oidc.profiles import Profile, franceconnect_acr, profile_of
from vault.settings import Settings

if TYPE_CHECKING:
    from joserfc.jwk import KeySetSerialization

logger = logging.getLogger(__name__)

CODE_LIFETIME = timedelta(seconds=60)
ID_TOKEN_LIFETIME = 600
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
ACR_REACHED = "eidas1"  # self-declared identity, password (+ TOTP): eIDAS "low", never more
_RESPONSE_TYPE = re.compile(r"[A-Za-z0-9_]+( [A-Za-z0-9_]+)*")  # RFC 6749 §3.1.1 and Appendix A.3


class LoginLog(Protocol):
    """Where each login to an app is kept for good (codes live 60 seconds and are purged): the
    audit log, a floor above, supplied by the composition root. The city's statistics count them."""

    def app_login(self, db: Session, *, client_id: str, citizen_id: uuid.UUID) -> None: ...


def revoke_tokens(db: Session, *conditions: ColumnElement[bool]) -> int:
    """Revoke the live tokens (access and refresh) that match; how many. The one way tokens die:
    a replayed code, a revocation, a withdrawn consent, a disabled app, an erasure."""
    return db.exec(update(OAuthToken).where(*conditions, col(OAuthToken.revoked_at).is_(None))
                   .values(revoked_at=utcnow())).rowcount


# The statements of the endpoints apps call most, built once: building a statement (and its cache
# key) per request cost as much CPU as running it (``Session.get`` builds one at each call).
_TOKEN = select(OAuthToken).where((col(OAuthToken.access_token_hash) == bindparam("p_digest"))
                                  | (col(OAuthToken.refresh_token_hash) == bindparam("p_digest")))
# The token endpoint's statements are SQLAlchemy Core on the tables, run on the unit of work's
# connection: the ORM's execution and loading cost more CPU than PostgreSQL's work on these
# statements (decision record 0014). The code is consumed and read back, with what the ID token
# needs of its citizen, in one statement; the token is written by one INSERT.
_CODES, _TOKENS, _CITIZENS = (cast(Table, inspect(model).local_table) for model in (AuthorizationCode, OAuthToken, Citizen))
_CLIENTS = cast(Table, inspect(OAuthClient).local_table)
_CLIENT = core_select(_CLIENTS).where(_CLIENTS.c.client_id == bindparam("p_client"))
# The code is spent only if its app's row still has the version the request was authenticated
# with (an app kept between requests, ``AppCache``, may have changed since on any replica).
_CONSUME_CODE = (
    update(_CODES)
    .where(_CODES.c.id == bindparam("p_code"), _CODES.c.client_id == bindparam("p_client"),
           _CODES.c.used_at.is_(None),
           core_select(_CLIENTS.c.version).where(_CLIENTS.c.client_id == _CODES.c.client_id)
           .scalar_subquery() == bindparam("p_version"))
    .values(used_at=bindparam("p_now"))
    .returning(*_CODES.c, core_select(_CITIZENS.c.identity_certified_at.is_not(None))
               .where(_CITIZENS.c.id == _CODES.c.citizen_id).scalar_subquery().label("identity_certified"))
)
_INSERT_TOKEN = insert(_TOKENS)
# On PostgreSQL, the code is spent and its token written by one statement: the token's own values
# (its secrets, its row's id, its expiry) are made before the code is read, the rest of its row is
# the code's. The token is written only if the code is spent by it and has not expired; a check that
# fails afterwards (the redirect URI, PKCE) deletes it again (``CodeGrant.validate_token_request``):
# its values were never sent. SQLite, which has no statement of that kind, spends the code, then
# writes the token (``Provider.save_token``).
_SPENT = _CONSUME_CODE.cte("spent")


def _token_value(name: str, column: str) -> BindParameter[Any]:
    return bindparam(name, type_=_TOKENS.c[column].type)


_SPEND_CODE_AND_WRITE_TOKEN = core_select(*_SPENT.c).add_cte(insert(_TOKENS).from_select(
    ["id", "grant_id", "client_id", "citizen_id", "access_token_hash", "refresh_token_hash", "scope", "code_id",
     "sid", "auth_time", "acr", "amr", "issued_at", "access_expires_at", "refresh_expires_at",
     "authorization_details", "act"],
    core_select(_token_value("t_id", "id"), _token_value("t_grant", "grant_id"), _SPENT.c.client_id,
                _SPENT.c.citizen_id, _token_value("t_access", "access_token_hash"),
                _token_value("t_refresh", "refresh_token_hash"), _SPENT.c.scope, _SPENT.c.id, _SPENT.c.sid,
                _SPENT.c.auth_time, _SPENT.c.acr, _SPENT.c.amr, _token_value("p_now", "issued_at"),
                _token_value("t_access_expires", "access_expires_at"),
                _token_value("t_refresh_expires", "refresh_expires_at"), _SPENT.c.authorization_details,
                _SPENT.c.act)
    .where(_SPENT.c.expires_at > bindparam("p_now")),
).cte("written"))
_DELETE_TOKEN = delete(_TOKENS).where(_TOKENS.c.id == bindparam("t_id"))
_NO_REFRESH = (update(_TOKENS).where(_TOKENS.c.id == bindparam("t_id"))
               .values(refresh_token_hash=None, refresh_expires_at=None))


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """An ``oauth_client`` row as the endpoints apps call read it (``load_client``): read-only, so
    SQLAlchemy Core reads it without the ORM's loading (decision record 0014)."""

    client_id: str
    name: str
    secret_hash: str | None
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    scope: str
    auth_method: str
    sector: str
    id_token_alg: str
    userinfo_signed: bool
    require_nonce: bool
    allow_refresh: bool
    jwks: dict[str, Any] | None
    profile: str
    accept_delegation: bool
    created_at: datetime
    disabled_at: datetime | None
    version: int


App = OAuthClient | ClientRecord  # an app, as the ORM or ``load_client`` gives it


@dataclass(frozen=True, slots=True)
class CitizenClaims:
    """A citizen as the endpoints apps call with a token read it (``load_bearer``): its id and the
    fields its claims are made of (``vault.oidc.claims.ClaimSource``), nothing else."""

    id: uuid.UUID
    given_name: str
    family_name: str
    birthdate: date
    gender: str
    birthplace: str
    birthcountry: str
    preferred_username: str | None
    email: str | None


@dataclass(frozen=True, slots=True)
class Bearer:
    """An access token as userinfo and the document API read it, with its app and its citizen: one
    statement (``_BEARER``) instead of one per row."""

    scope: str
    amr: str
    act: dict[str, str] | None
    authorization_details: list[dict[str, Any]] | None
    revoked_at: datetime | None
    access_expires_at: datetime
    app: ClientRecord
    citizen: CitizenClaims


_BEARER_TOKEN = ("scope", "amr", "act", "authorization_details", "revoked_at", "access_expires_at")
_BEARER = (
    core_select(*(_TOKENS.c[name] for name in _BEARER_TOKEN),
                *(column.label(f"app_{column.name}") for column in _CLIENTS.c),
                _CITIZENS.c.id.label("citizen_id"),
                *(_CITIZENS.c[name].label(f"citizen_{name}") for name in CLAIM_SOURCE_FIELDS))
    .join_from(_TOKENS, _CLIENTS, _CLIENTS.c.client_id == _TOKENS.c.client_id)
    .join(_CITIZENS, _CITIZENS.c.id == _TOKENS.c.citizen_id)
    .where(_TOKENS.c.access_token_hash == bindparam("p_digest"))
)
_BEARER_APP = tuple((f"app_{column.name}", column.name) for column in _CLIENTS.c)
_BEARER_CITIZEN = (("citizen_id", "id"), *((f"citizen_{name}", name) for name in CLAIM_SOURCE_FIELDS))


def load_bearer(db: Session, access_token: str) -> Bearer | None:
    """The token whose access value is ``access_token``, with its app and its citizen (live or not:
    the caller checks), or None."""
    found = db.connection().execute(_BEARER, {"p_digest": token_hash(access_token)}).first()
    if found is None:
        return None
    row = found._mapping
    return Bearer(**{name: row[name] for name in _BEARER_TOKEN},
                  app=ClientRecord(**{field: row[label] for label, field in _BEARER_APP}),
                  citizen=CitizenClaims(**{field: row[label] for label, field in _BEARER_CITIZEN}))


class AppCache:
    """Apps' records kept between requests for the code-for-token exchange (the request an app makes
    most), so that an exchange reads no app: it is authenticated with the kept record, and its code
    is spent only if the app's row still has the record's version (``_CONSUME_CODE``). A change made
    to an app on any replica (a new secret, a new redirect URI, the app disabled) raises its version:
    the next exchange with the old record spends nothing and fails, the record is read again and the
    exchange is answered from it (``refresh``). An exchange refused for what the kept record says (a
    wrong secret, another profile's endpoint) is checked the same way before it is answered.

    Not kept: apps authenticating with ``private_key_jwt`` (their assertion is spent before the code,
    so an exchange could not be answered again from a fresh record)."""

    MAX_APPS = 1024  # registered apps are few: past this, the records are dropped and read again

    def __init__(self) -> None:
        self._records: dict[str, ClientRecord] = {}

    def use(self, db: Session) -> None:
        """Let this unit of work's ``load_client`` take apps from here."""
        db.info[_APP_CACHE] = self

    def kept(self, client_id: str) -> ClientRecord | None:
        return self._records.get(client_id)

    def keep(self, record: ClientRecord) -> None:
        if record.auth_method == "private_key_jwt":
            self._records.pop(record.client_id, None)
            return
        if len(self._records) >= self.MAX_APPS:
            self._records.clear()
        self._records[record.client_id] = record

    def refresh(self, db: Session) -> bool:
        """After a refused exchange: read again the apps this unit of work took from here without
        their version being checked; whether any changed (then the caller answers again, with
        ``load_client`` reading apps from the database: this cache is no longer used by ``db``)."""
        unchecked: set[str] = db.info.pop(_UNCHECKED, set())
        db.info.pop(_APP_CACHE, None)
        changed = False
        for client_id in unchecked:
            fresh = _read_client(db, client_id)
            if fresh != self._records.get(client_id):
                changed = True
                self._records.pop(client_id, None)
                if fresh is not None:
                    self.keep(fresh)
        if changed:
            db.info.pop(_REQUEST_APPS, None)
        return changed


_APP_CACHE, _UNCHECKED, _REQUEST_APPS = "oidc_app_cache", "oidc_apps_unchecked", "oidc_clients"


def _read_client(db: Session, client_id: str) -> ClientRecord | None:
    """The app's row, read now."""
    found = db.connection().execute(_CLIENT, {"p_client": client_id}).first()
    return None if found is None else ClientRecord(**found._asdict())


def load_client(db: Session, client_id: str) -> ClientRecord | None:
    """The app ``client_id``, kept for the rest of the request's unit of work (one step of a request
    looks it up, the next needs it again: its profile, its authentication, the token's app). Where
    the unit of work uses an ``AppCache``, a record kept there is taken without reading the app (its
    version is checked when the code is spent)."""
    kept: dict[str, ClientRecord] = db.info.setdefault(_REQUEST_APPS, {})
    if (row := kept.get(client_id)) is None:
        shared: AppCache | None = db.info.get(_APP_CACHE)
        if shared is not None and (row := shared.kept(client_id)) is not None:
            db.info.setdefault(_UNCHECKED, set()).add(client_id)
        else:
            row = _read_client(db, client_id)
            if row is not None and shared is not None:
                shared.keep(row)
        if row is not None:
            kept[client_id] = row
    return row


def _app_checked(db: Session, client_id: str) -> None:
    """The app's version was checked by a statement that needed it: its record is current."""
    unchecked: set[str] | None = db.info.get(_UNCHECKED)
    if unchecked:
        unchecked.discard(client_id)


def scope_list(scope: str | None) -> list[str]:
    return [s for s in (scope or "").split() if s]


def _ours(request: OAuth2Request) -> VaultOAuth2Request:
    """authlib hands its hooks the request it was given: always one of ours (vault.oidc.adapter)."""
    assert isinstance(request, VaultOAuth2Request)
    return request


def _client(request: OAuth2Request) -> RegisteredClient:
    """The request's authenticated app (authlib sets it from our query_client before the hooks run)."""
    assert isinstance(request.client, RegisteredClient)
    return request.client


def _could_be_client_id(value: object) -> bool:
    """Whether ``value`` can be looked up as a client_id (registered ones are printable ASCII, at most
    64 characters): never a database error for what a request made up."""
    return isinstance(value, str) and 0 < len(value) <= 64 and value.isascii() and value.isprintable()


class _Unsupported(OAuth2Error):
    """An OIDC error code authlib has no class for (``request_not_supported``...), redirected with
    ``state`` (without ``redirect_uri``: not redirected, the person is shown the error)."""

    def __init__(self, error: str, description: str, redirect_uri: str | None, state: str | None) -> None:
        super().__init__(description=description, redirect_uri=redirect_uri, state=state, error=error)


# ---- authlib's model interfaces over our rows --------------------------------------------------------


class RegisteredClient(ClientMixin):
    """An app, as authlib sees it."""

    def __init__(self, row: App) -> None:
        self.row = row
        self.client_id = row.client_id

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> None:  # type: ignore[override]  # authlib takes None: no default
        return None  # GAP: OIDC requires redirect_uri in every request; never fall back

    def get_allowed_scope(self, scope: Collection[str] | str | None) -> str:
        # GAP: unknown or unallowed scopes are ignored, not refused (OIDC Core §3.1.2.1). authlib
        # passes the request's scope string (None when it was left out).
        allowed = set(self.row.scope.split())
        requested = scope_list(scope) if scope is None or isinstance(scope, str) else list(scope)
        return " ".join(s for s in dict.fromkeys(requested) if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.row.redirect_uris  # exact match, no prefix, no pattern

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.row.secret_hash:
            return False
        return hmac.compare_digest(token_hash(client_secret), self.row.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        registered = self.row.auth_method
        if registered == "private_key_jwt":
            return method in ("private_key_jwt", PrivateKeyJWT.CLIENT_AUTH_METHOD)
        return method == registered

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"  # authorization code flow only

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code" or (grant_type == "refresh_token" and self.row.allow_refresh)

    @property
    def is_public(self) -> bool:
        return self.row.auth_method == "none"

    @property
    def profile(self) -> Profile:
        return profile_of(self.row.profile)


class IssuedToken(TokenMixin):
    def __init__(self, row: OAuthToken, client: RegisteredClient | None = None) -> None:
        self.row = row
        self.client = client

    def check_client(self, client: ClientMixin) -> bool:
        return client.get_client_id() == self.row.client_id

    def get_scope(self) -> str:
        return self.row.scope

    def get_expires_in(self) -> int:
        return max(0, int((self.row.access_expires_at - self.row.issued_at).total_seconds()))

    def is_expired(self) -> bool:
        return self.row.access_expires_at <= utcnow()

    def is_revoked(self) -> bool:
        return self.row.revoked_at is not None


class RefreshTokenView(IssuedToken):
    """The refresh token of a row, for introspection: live until its own absolute expiry, spent once
    rotated (the row's access token may have expired long before)."""

    def is_expired(self) -> bool:
        return (self.row.refresh_expires_at is None or self.row.refresh_expires_at <= utcnow()
                or self.row.refresh_rotated_at is not None)


@dataclass(frozen=True, slots=True)
class CodeRecord:
    """An ``oauth_code`` row as the token endpoint reads it back (``_CONSUME_CODE``)."""

    id: str
    client_id: str
    citizen_id: uuid.UUID
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: datetime
    acr: str
    amr: str
    sid: str
    authorization_details: list[dict[str, Any]] | None
    act: dict[str, str] | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True, slots=True)
class CodeCitizen:
    """The citizen of a code, as far as the token endpoint needs one (``request.user``): its id
    (the token's owner, the pairwise ``sub``) and whether its identity came from FranceConnect."""

    id: uuid.UUID
    identity_certified: bool


class StoredCode:
    """authlib's AuthorizationCodeMixin (and the OIDC one) over an ``oauth_code`` row."""

    def __init__(self, row: CodeRecord, citizen: CodeCitizen | None) -> None:
        self.row = row
        self.citizen = citizen
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return int(self.row.auth_time.timestamp())

    def get_acr(self) -> str:
        return self.row.acr

    def get_amr(self) -> list[str]:
        return self.row.amr.split()


# ---- grants and extensions -------------------------------------------------------------------------


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012  (authlib prints it in invalid_client answers, as a list)
    AUTHORIZATION_CODE_LENGTH = 43
    server: Provider

    @staticmethod
    def validate_authorization_redirect_uri(request: OAuth2Request, client: ClientMixin) -> str:
        # GAP: mandatory and exact; an error here is never redirected (RFC 6749 §4.1.2.1).
        redirect_uri = _ours(request).payload.redirect_uri
        if not redirect_uri:
            raise InvalidRequestError("Missing 'redirect_uri' in request.")
        if not client.check_redirect_uri(redirect_uri):
            raise InvalidRequestError("The 'redirect_uri' is not registered for this client.")
        return redirect_uri

    def validate_authorization_request(self) -> str:
        redirect_uri = super().validate_authorization_request()
        request = _ours(self.request)
        data = request.payload.data
        if not data.get("state"):
            raise InvalidRequestError("Missing 'state' in request.", redirect_uri=redirect_uri)
        if "openid" not in scope_list(request.scope):
            raise InvalidScopeError("The 'openid' scope is required.", redirect_uri=redirect_uri,
                                    state=data.get("state"))
        for name in ("nonce", "prompt", "max_age", "login_hint", "acr_values", "id_token_hint"):
            if len(request.payload.datalist.get(name, [])) > 1:
                raise InvalidRequestError(f"Multiple '{name}' in request.", redirect_uri=redirect_uri)
        # OIDC Core §6.1/6.2: request objects are not supported (discovery says so): refused, never
        # silently ignored (their parameters would differ from the ones acted upon).
        state = data.get("state")
        if "request" in data:
            raise _Unsupported("request_not_supported", "Request objects are not supported.", redirect_uri, state)
        if "request_uri" in data:
            raise _Unsupported("request_uri_not_supported", "'request_uri' is not supported.", redirect_uri, state)
        if data.get("response_mode", "query") != "query":
            raise InvalidRequestError("Only response_mode=query is supported.", redirect_uri=redirect_uri, state=state)
        client = _client(request)
        if client.profile.franceconnect:
            self._franceconnect_rules(client, request, redirect_uri, state)
        return redirect_uri

    @staticmethod
    def _franceconnect_rules(client: RegisteredClient, request: VaultOAuth2Request, redirect_uri: str,
                             state: str | None) -> None:
        """What FranceConnect refuses where the standard profile is lenient: a level it cannot reach
        (``invalid_acr``, never a lower ``acr`` silently), and a scope it knows that the app is not
        registered for (``invalid_scope``). Scopes it does not know are ignored, as there."""
        acr = franceconnect_acr(request.payload.data.get("acr_values"))
        if not acr.ok:
            raise _Unsupported("invalid_acr", acr.description, redirect_uri, state)
        known = set(scopes_supported(client.profile))
        registered = set(client.row.scope.split())
        if any(s in known and s not in registered for s in scope_list(request.payload.data.get("scope"))):
            raise InvalidScopeError("requested scope is not allowed", redirect_uri=redirect_uri, state=state)

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        request = _ours(request)
        login, citizen, delegation = request.login, request.user, request.delegation
        assert citizen is not None  # set by authlib from the authorization route's grant_user
        scope = request.scope
        if delegation is not None:  # an agent for the citizen: the agent's login, none of the citizen's factors
            auth_time, amr, sid = delegation.auth_time, DELEGATION_AMR, delegation.sid
            scope = " ".join(s for s in scope_list(scope) if s not in WRITE_SCOPES)  # it reads, never writes
        else:
            assert login is not None  # set by the authorization route
            auth_time, amr, sid = login.auth_time, login.amr, login.sid
        data = request.payload.data
        self.server.db.add(AuthorizationCode(
            id=token_hash(code),
            client_id=_client(request).get_client_id(),
            citizen_id=citizen.id,
            redirect_uri=request.payload.redirect_uri,
            scope=scope,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method") if data.get("code_challenge") else None,
            auth_time=auth_time,
            acr=ACR_REACHED,
            amr=amr,
            sid=sid,
            authorization_details=request.authorization_details,
            act=request.act,
            expires_at=utcnow() + CODE_LIFETIME,
        ))
        self.server.logins.app_login(self.server.db, client_id=_client(request).get_client_id(), citizen_id=citizen.id)

    def query_authorization_code(self, code: str, client: ClientMixin) -> StoredCode | None:
        """GAP: consume the code atomically here (not after the token is saved); a replay fails
        with invalid_grant and revokes every token issued from it (RFC 6749 §4.1.2). One statement
        when the code is good: it is marked used and read back at once (``UPDATE … RETURNING``)."""
        db: Session = self.server.db
        if not code:
            return None
        assert isinstance(client, RegisteredClient)
        digest, now, connection = token_hash(code), utcnow(), db.connection()
        spend: dict[str, Any] = {"p_code": digest, "p_client": client.client_id, "p_now": now,
                                 "p_version": client.row.version}
        written = None
        if connection.dialect.name == "postgresql":  # the token is written by the same statement
            token: dict[str, Any] = self.server.generate_token(grant_type=self.GRANT_TYPE, client=client,
                                               include_refresh_token=client.check_grant_type("refresh_token"))
            written = WrittenToken(uuid.uuid4(), token)
            refresh = token.get("refresh_token")
            spend |= {"t_id": written.id, "t_grant": uuid.uuid4(), "t_access": token_hash(token["access_token"]),
                      "t_refresh": token_hash(refresh) if refresh else None,
                      "t_access_expires": now + timedelta(seconds=token["expires_in"]),
                      "t_refresh_expires": now + timedelta(days=self.server.settings.refresh_token_days)
                      if refresh else None}
        found = connection.execute(_SPEND_CODE_AND_WRITE_TOKEN if written else _CONSUME_CODE, spend).first()
        if found is None:
            # Unknown, another app's (left untouched), not spent because the app changed since its
            # record was read (left untouched: see AppCache), or used already: a replay.
            used = db.get(AuthorizationCode, digest)
            if used is None or used.client_id != client.client_id or used.used_at is None:
                return None
            # Every token of the grant, refreshed ones included (they carry the grant, not the code).
            revoked = self.server.revoke_where(col(OAuthToken.grant_id).in_(
                select(OAuthToken.grant_id).where(OAuthToken.code_id == used.id)))
            logger.warning("authorization code replayed", extra={"client_id": used.client_id, "revoked": revoked})
            return None
        _app_checked(db, client.client_id)
        fields = found._asdict()
        certified = fields.pop("identity_certified")
        row = CodeRecord(**fields)
        if row.expires_at <= now:
            return None  # no token was written either (the statement's own condition)
        _ours(self.request).written_token = written
        # No citizen (certified is NULL) cannot happen while the code exists (its foreign key
        # cascades an erasure), but then no token either.
        return StoredCode(row, None if certified is None else CodeCitizen(row.citizen_id, bool(certified)))

    def delete_authorization_code(self, authorization_code: StoredCode) -> None:
        pass  # already consumed in query_authorization_code

    def validate_token_request(self) -> None:
        """authlib's checks; a token written with its code (PostgreSQL) is deleted if one fails after
        the code was spent (the redirect URI, PKCE): nobody ever had its values."""
        try:
            super().validate_token_request()
        except OAuth2Error:
            request = _ours(self.request)
            if request.written_token is not None:
                self.server.db.connection().execute(_DELETE_TOKEN, {"t_id": request.written_token.id})
                request.written_token = None
            raise

    def generate_token(self, user: Any = None, scope: str | None = None, grant_type: str | None = None,
                       expires_in: int | None = None, include_refresh_token: bool = True) -> dict[str, Any]:
        """The token written with its code (PostgreSQL), or a new one (written by ``save_token``)."""
        written = _ours(self.request).written_token
        if written is None:
            return super().generate_token(user=user, scope=scope, grant_type=grant_type, expires_in=expires_in,
                                          include_refresh_token=include_refresh_token)
        written.token["scope"] = scope or ""
        return written.token

    def authenticate_user(self, authorization_code: StoredCode) -> CodeCitizen | None:
        return authorization_code.citizen  # read with the code (``_CONSUME_CODE``)


class S256CodeChallenge(CodeChallenge):
    """GAP: only S256 (no ``plain``), and required for public clients at the authorization step."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012  (authlib's attribute, a list it reads only)

    def validate_code_challenge(self, grant: BaseGrant, redirect_uri: str) -> None:
        data = _ours(grant.request).payload.data
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only 'code_challenge_method=S256' is supported.", redirect_uri=redirect_uri)
        if _client(grant.request).is_public and not data.get("code_challenge"):
            raise InvalidRequestError("PKCE (S256) is required for public clients.", redirect_uri=redirect_uri)
        super().validate_code_challenge(grant, redirect_uri)


class VaultOpenIDCode(OpenIDCode):
    """ID tokens with pairwise ``sub``, ``acr``, ``amr``, ``sid``; nonce required per client."""

    def __call__(self, grant: BaseGrant) -> None:
        # Prompt handling is the authorization route's (authlib only knows login_required).
        # The stub wants hooks returning None; process_token returns the token, as authlib's own does.
        grant.register_hook("after_create_token_response", self.process_token)  # type: ignore[arg-type]  # result unused
        grant.register_hook("after_validate_authorization_request_payload", self.validate_openid_authorization_request)

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return False  # replay of a nonce is the client's check (OIDC Core §3.1.3.7)

    def validate_openid_authorization_request(self, grant: BaseGrant, redirect_uri: str) -> None:
        nonce = _ours(grant.request).payload.data.get("nonce")
        if not nonce and _client(grant.request).row.require_nonce:
            raise InvalidRequestError("Missing 'nonce' in request.", redirect_uri=redirect_uri)
        if nonce and len(nonce) > 512:
            raise InvalidRequestError("The 'nonce' is too long.", redirect_uri=redirect_uri)

    def process_token(self, grant: BaseGrant, response: OAuthResponse) -> dict[str, Any]:
        token: dict[str, Any] = response[1]  # the token endpoint's JSON answer
        if "openid" in scope_list(token.get("scope")):
            token["id_token"] = grant.server.id_token(grant.request, token)
        return token


class RefreshGrant(grants.RefreshTokenGrant):
    """GAP: rotation on every use; a spent refresh token used again revokes the whole grant. A token
    is spent only by a request that may have it: authlib finds it before checking the client and the
    scope; here it is spent after both, so another app presenting it (or asking for more) gets
    invalid_grant and leaves it intact."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012  (authlib prints it in invalid_client answers, as a list)
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: Provider

    def authenticate_refresh_token(self, refresh_token: str) -> IssuedToken | None:  # type: ignore[override]  # None: refused
        """The row behind the value (found, not spent: see ``validate_token_request``)."""
        row = self.server.db.exec(select(OAuthToken).where(
            OAuthToken.refresh_token_hash == token_hash(refresh_token))).first()
        if row is None or row.revoked_at is not None:
            return None
        return IssuedToken(row)

    def validate_token_request(self) -> None:
        """authlib's checks (RFC 6749 §6), in an order that spends the token last."""
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'")
        self.request.client = client
        value = self.request.form.get("refresh_token")
        if value is None:
            raise InvalidRequestError("Missing 'refresh_token' in request.")
        token = self.authenticate_refresh_token(value)
        if token is None or not token.check_client(client):
            raise InvalidGrantError()  # another app's token: refused, left as it was
        requested = scope_list(_ours(self.request).payload.scope)
        if requested and not set(requested) <= set(scope_list(token.get_scope())):
            raise InvalidScopeError()
        self._spend(token)
        self.request.refresh_token = token

    def _spend(self, token: IssuedToken) -> None:
        """Mark the token rotated, atomically; a replay of a spent one revokes its whole grant."""
        db: Session = self.server.db
        row = token.row
        if row.refresh_expires_at is None or row.refresh_expires_at <= utcnow():
            raise InvalidGrantError()
        rotated = db.exec(
            update(OAuthToken)
            .where(col(OAuthToken.id) == row.id, col(OAuthToken.refresh_rotated_at).is_(None))
            .values(refresh_rotated_at=utcnow())
        ).rowcount
        if rotated != 1:
            revoked = self.server.revoke_where(col(OAuthToken.grant_id) == row.grant_id)
            logger.warning("refresh token reused: grant revoked", extra={"client_id": row.client_id, "revoked": revoked})
            raise InvalidGrantError()

    def authenticate_user(self, refresh_token: IssuedToken) -> Citizen | None:
        return self.server.db.get(Citizen, refresh_token.row.citizen_id)

    def revoke_old_credential(self, refresh_token: TokenMixin) -> None:
        pass  # marked rotated atomically in _spend


class PrivateKeyJWT(JWTBearerClientAssertion):
    """``private_key_jwt`` client authentication (OIDC Core §9, RFC 7523). Each assertion is good
    once (RFC 7523 §3, item 7): its ``jti`` is kept, per app, in the database (shared by replicas)
    until the assertion expires; a second use is ``invalid_client``."""

    CLIENT_AUTH_METHOD = "private_key_jwt"  # type: ignore[misc]  # Final in the stub; authlib reads ours
    MAX_LIFETIME = 300  # seconds: an assertion must not live long (and its jti is kept that long)

    def __init__(self, server: Provider) -> None:
        super().__init__(validate_jti=False)  # checked in verify_claims, once the lifetime is known good
        self.server = server

    def get_audiences(self) -> list[str]:
        issuer = self.server.settings.issuer
        return [f"{issuer}/token", issuer]

    def verify_claims(self, claims: dict[str, Any]) -> None:
        super().verify_claims(claims)
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or not math.isfinite(exp) or exp - time.time() > self.MAX_LIFETIME:
            raise InvalidClientError(description=f"The client assertion must expire within {self.MAX_LIFETIME} seconds.")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise InvalidClientError(description="Missing JWT ID.")
        self._use_once(claims["sub"], jti, expires=exp)

    def _use_once(self, client_id: str, jti: str, *, expires: float) -> None:
        """Remember the assertion's jti (a SHA-256: any text, any length) until it expires, with the
        leeway its ``exp`` is read with; refuse one already used, atomically across replicas."""
        db = self.server.db
        digest = hashlib.sha256(jti.encode("utf-8", "surrogatepass")).hexdigest()
        until = datetime.fromtimestamp(expires + self.leeway, UTC)
        insert = postgresql_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
        stored = db.exec(insert(ClientAssertion).values(client_id=client_id, jti_hash=digest, expires_at=until)
                         .on_conflict_do_nothing().returning(col(ClientAssertion.jti_hash))).first()
        if stored is None:
            logger.warning("client assertion replayed", extra={"client_id": client_id})
            raise InvalidClientError(description="This client assertion was already used (jti).")

    def resolve_client_public_key(self, client: RegisteredClient) -> jwk.KeySet:
        # A JWK Set: vault.oidc.clients imports it as one before storing it.
        return jwk.KeySet.import_key_set(cast("KeySetSerialization", client.row.jwks or {"keys": []}))


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012  (authlib prints it in invalid_client answers, as a list)
    server: Provider

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        return self.server.find_token(token_string)

    def revoke_token(self, token: IssuedToken, request: OAuth2Request) -> None:
        # Revoking either token of a grant ends the grant (RFC 7009 §2.1 allows it; it is the safe way).
        self.server.revoke_where(col(OAuthToken.grant_id) == token.row.grant_id)


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012  (authlib prints it in invalid_client answers, as a list)
    server: Provider

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        token = self.server.find_token(token_string)
        if token is not None and token.row.access_token_hash != token_hash(token_string or ""):
            return RefreshTokenView(token.row)  # the value is the row's refresh token
        return token

    def check_permission(self, token: IssuedToken, client: RegisteredClient, request: OAuth2Request) -> bool:
        return token.check_client(client)  # an app may only introspect its own tokens

    def authenticate_token(self, request: OAuth2Request, client: RegisteredClient) -> IssuedToken | None:
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        if token and self.check_permission(token, client, request):
            return token
        return None

    def introspect_token(self, token: IssuedToken) -> dict[str, Any]:
        row = token.row
        client = load_client(self.server.db, row.client_id)
        assert client is not None  # the token's app (the foreign key cascades)
        refresh = isinstance(token, RefreshTokenView)
        expires = row.refresh_expires_at if refresh and row.refresh_expires_at else row.access_expires_at
        payload = {
            "active": True,
            "client_id": row.client_id,
            "scope": row.scope,
            "sub": self.server.subject(client, row.citizen_id),
            "iss": self.server.settings.issuer,
            "aud": row.client_id,
            "iat": int(row.issued_at.timestamp()),
            "exp": int(expires.timestamp()),
            "acr": row.acr,
        }
        if row.authorization_details is not None:
            payload["authorization_details"] = row.authorization_details  # RFC 9396 §9.2
        if row.act is not None:
            payload["act"] = row.act  # RFC 8693 §2.2: a counter agent logged in for the citizen
        if not refresh:
            payload["token_type"] = "Bearer"  # noqa: S105  (RFC 6749's token type, not a secret)
        return payload


# ---- the server ----------------------------------------------------------------------------------


class Provider(AuthorizationServer):
    """One per request: bound to that request's database session (the unit of work commits)."""

    def __init__(self, *, db: Session, settings: Settings, keystore: KeyStore, logins: LoginLog) -> None:
        super().__init__(scopes_supported=SCOPES_SUPPORTED)
        self.db = db
        self.settings = settings
        self.keystore = keystore
        self.logins = logins
        # authlib calls any function here; its stub names only its own BearerTokenGenerator class.
        self.register_token_generator("default", self._generate_token)  # type: ignore[arg-type]  # a plain function
        self.register_client_auth_method(PrivateKeyJWT.CLIENT_AUTH_METHOD, PrivateKeyJWT(self))
        self.register_grant(CodeGrant, [VaultOpenIDCode(), S256CodeChallenge(required=True)])
        self.register_grant(RefreshGrant)
        self.register_endpoint(Revocation(self))
        self.register_endpoint(Introspection(self))

    # -- authlib hooks
    def query_client(self, client_id: str) -> RegisteredClient | None:  # type: ignore[override]  # None: unknown
        # A client assertion's ``sub`` is any JSON string (a lone surrogate, a NUL): no app has such an id.
        row = load_client(self.db, client_id) if _could_be_client_id(client_id) else None
        if row is None or row.disabled_at is not None:
            return None
        return RegisteredClient(row)

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request  # already built by vault.oidc.adapter

    def get_authorization_grant(self, request: OAuth2Request) -> BaseGrant:
        # GAP: for a response_type it does not know, authlib puts the raw value in its error's
        # description, which refuses (ValueError) anything but printable ASCII. One that is not even
        # RFC 6749 §3.1.1's syntax is answered here, the app told when its redirect_uri is known.
        payload = _ours(request).payload
        response_type = payload.response_type
        if response_type and not _RESPONSE_TYPE.fullmatch(response_type):
            client = self.query_client(payload.client_id or "")
            redirect_uri = payload.redirect_uri
            known = client is not None and bool(redirect_uri) and client.check_redirect_uri(redirect_uri)
            raise _Unsupported("unsupported_response_type", "The response_type is malformed.",
                               redirect_uri if known else None, payload.state)
        return super().get_authorization_grant(request)

    def validate_requested_scope(self, scope: str) -> None:
        pass  # GAP: unknown scopes are ignored (see RegisteredClient.get_allowed_scope)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        if name == "after_revoke_token":
            logger.info("token revoked", extra={"client_id": kwargs["client"].get_client_id()})

    def handle_response(self, status: int, body: Any, headers: OAuthHeaders) -> OAuthResponse:
        return status, body, headers  # the adapter turns it into an HTTP response

    def _generate_token(self, *, grant_type: str, client: RegisteredClient, user: Citizen | None = None,
                        scope: str | None = None, expires_in: int | None = None,
                        include_refresh_token: bool = True) -> dict[str, Any]:
        token = {"token_type": "Bearer", "access_token": secrets.token_urlsafe(32),
                 "expires_in": expires_in or self.settings.access_token_seconds, "scope": scope or ""}
        if include_refresh_token and client.check_grant_type("refresh_token"):
            token["refresh_token"] = secrets.token_urlsafe(32)
        return token

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        now = utcnow()
        request = _ours(request)
        origin = request.authorization_code or request.refresh_token
        assert isinstance(origin, StoredCode | IssuedToken)  # what the grant was given, found by our hooks
        assert request.user is not None  # the grant's citizen, found by our authenticate_user
        source = origin.row
        written = request.written_token if request.written_token and request.written_token.token is token else None
        if source.act is not None and token.pop("refresh_token", None) and written is not None:
            # A login made at the counter for a citizen gets no refresh token: the grant ends with its
            # access token, never outliving the assisted session or the mandate (and the citizen, who
            # gave no consent of their own, has nothing to withdraw in "Mes applications").
            self.db.connection().execute(_NO_REFRESH, {"t_id": written.id})
        if written is None:
            self._write_token(token, request, origin, now)
        if source.authorization_details is not None:
            token["authorization_details"] = source.authorization_details  # RFC 9396 §7
        metrics.tokens_issued.labels(
            grant_type="refresh_token" if isinstance(origin, IssuedToken) else "authorization_code").inc()

    def _write_token(self, token: dict[str, Any], request: VaultOAuth2Request, origin: StoredCode | IssuedToken,
                     now: datetime) -> None:
        """The token's row, for a refreshed token and on SQLite (on PostgreSQL a code's token is
        written with the code spent: ``_SPEND_CODE_AND_WRITE_TOKEN``)."""
        assert request.user is not None
        source = origin.row
        refresh_expires = None
        if token.get("refresh_token"):
            if isinstance(origin, IssuedToken):  # rotation: same grant, same absolute end
                refresh_expires = origin.row.refresh_expires_at
            else:
                refresh_expires = now + timedelta(days=self.settings.refresh_token_days)
        self.db.connection().execute(_INSERT_TOKEN, {
            "id": uuid.uuid4(),
            "grant_id": origin.row.grant_id if isinstance(origin, IssuedToken) else uuid.uuid4(),
            "client_id": _client(request).get_client_id(),
            "citizen_id": request.user.id,
            "access_token_hash": token_hash(token["access_token"]),
            "refresh_token_hash": token_hash(token["refresh_token"]) if token.get("refresh_token") else None,
            "scope": token["scope"],
            "code_id": origin.row.id if isinstance(origin, StoredCode) else None,
            "sid": source.sid, "auth_time": source.auth_time, "acr": source.acr, "amr": source.amr,
            "issued_at": now,
            "access_expires_at": now + timedelta(seconds=token["expires_in"]),
            "refresh_expires_at": refresh_expires,
            "refresh_rotated_at": None,
            "revoked_at": None,
            "authorization_details": source.authorization_details,
            "act": source.act,  # RFC 8693: the actor, for introspection and signed userinfo
        })

    # -- our helpers
    def find_token(self, value: str) -> IssuedToken | None:
        row = self.db.scalars(_TOKEN, {"p_digest": token_hash(value or "")}).first()
        return IssuedToken(row) if row else None

    def revoke_where(self, condition: ColumnElement[bool]) -> int:
        return revoke_tokens(self.db, condition)

    def subject(self, client: App, citizen_id: uuid.UUID) -> str:
        return self.keystore.pairwise_sub(self.db, sector=client.sector, citizen_id=str(citizen_id))

    def id_token(self, request: OAuth2Request, token: dict[str, Any]) -> str:
        """OIDC Core §2 ID token: iss, sub (pairwise), aud, exp, iat, auth_time, nonce, acr, amr, sid, at_hash."""
        code = request.authorization_code
        assert isinstance(code, StoredCode)  # ID tokens come with the code grant only
        registered = _client(request)
        client, profile = registered.row, registered.profile
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": profile.issuer(self.settings.issuer),
            "sub": self.subject(client, code.row.citizen_id),
            "aud": client.client_id,
            "iat": now,
            "exp": now + ID_TOKEN_LIFETIME,
            "auth_time": code.get_auth_time(),
            "acr": code.get_acr(),
            "amr": code.get_amr(),
        }
        # Documented extension: the identity came from FranceConnect (certified), not self-declared.
        claims["identity_certified"] = bool(code.citizen and code.citizen.identity_certified)
        if not profile.franceconnect:  # FranceConnect's ID tokens carry no sid
            claims["sid"] = self.keystore.pairwise_sid(self.db, sector=client.sector, sid=code.row.sid)
        if code.row.act is not None:
            claims["act"] = code.row.act  # RFC 8693 §4.1: who acted for the citizen (vault.oidc.delegation)
        if nonce := code.get_nonce():
            claims["nonce"] = nonce
        if at_hash := create_half_hash(token["access_token"], client.id_token_alg):
            claims["at_hash"] = at_hash.decode()
        return self.keystore.sign(self.db, claims, alg=client.id_token_alg)
