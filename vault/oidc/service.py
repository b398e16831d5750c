"""The OpenID Connect flows around authlib's server: the authorization decision (login, prompt,
max_age, id_token_hint, consent), userinfo, RP-initiated logout, discovery, the citizen's apps.

No HTTP here: routes turn the outcomes into pages and redirects.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlencode

from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidRequestError,
    OAuth2Error,
)
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from vault.alerts.service import AlertService
from vault.auth.models import Citizen
from vault.auth.service import AccountService, CurrentLogin
from vault.crypto.tokens import token_hash
from vault.db import utcnow
from vault.oidc.adapter import OAuthResponse, VaultOAuth2Request
from vault.oidc.claims import (
    SCOPES_SUPPORTED,
    WRITE_SCOPES,
    claims_for_scope,
    describe_scope,
    scopes_supported,
    user_claims,
)
from vault.oidc.delegation import Delegation, DelegationEnded, Delegations
from vault.oidc.documents import TYPE as DOCUMENTS_TYPE
from vault.oidc.documents import (
    DocumentCatalog,
    DocumentChoice,
    DocumentRequest,
    InvalidAuthorizationDetails,
    granted_documents,
    parse,
    without_document,
)
from vault.oidc.exceptions import BearerError, InvalidDocumentChoice, LogoutError, PendingExpired, UntrustedHint
from vault.oidc.keys import InvalidSignature, KeyStore
from vault.oidc.models import (
    AuthorizationCode,
    ClientAssertion,
    Consent,
    OAuthClient,
    OAuthToken,
    PendingAuthorization,
)
from vault.oidc.profiles import OIDC, Profile, profile_of
from vault.oidc.provider import (
    ACR_REACHED,
    AUTH_METHODS,
    App,
    AppCache,
    Bearer,
    LoginLog,
    Provider,
    RegisteredClient,
    load_bearer,
    load_client,
    revoke_tokens,
    scope_list,
)
from vault.settings import Settings

logger = logging.getLogger(__name__)

PENDING_LIFETIME = timedelta(minutes=10)


# ---- outcomes of the authorization endpoint -----------------------------------------------------------


@dataclass(frozen=True)
class ToClient:
    """Answer the app: authlib's (status, body, headers), a redirect with a code or an error, and
    the ``iss`` that goes with it (RFC 9207; None for the apps whose profile sends none)."""

    result: OAuthResponse
    iss: str | None


@dataclass(frozen=True)
class NeedLogin:
    pending_id: str
    login_hint: str | None
    lang: str | None
    client_name: str


@dataclass(frozen=True)
class DocumentQuestion:
    """One request for documents on the consent page: its types, why, and the citizen's candidates."""

    labels: list[str]  # the requested types' French names
    purpose: str | None
    max_documents: int | None
    choices: list[DocumentChoice]
    missing: list[str] = field(default_factory=list)  # the names of requested types the citizen has none of


@dataclass(frozen=True)
class NeedConsent:
    pending_id: str
    client_name: str
    lines: list[str]
    documents: list[DocumentQuestion] = field(default_factory=list)
    acting_for: str | None = None  # a counter agent consents for this citizen (vault.oidc.delegation)


@dataclass(frozen=True)
class DelegationRefused:
    """An app that does not accept delegated logins: the agent is told, the app gets nothing."""

    client_name: str


@dataclass(frozen=True)
class BadRequest:
    """An error that must not be redirected (unknown client, unregistered redirect_uri...)."""

    description: str


Outcome = ToClient | NeedLogin | NeedConsent | BadRequest | DelegationRefused


class _HintNotSatisfied(Exception):
    """A login made during the request does not match the app's id_token_hint."""


@dataclass(frozen=True)
class LogoutResult:
    redirect_to: str | None  # the registered post_logout_redirect_uri (with state), or None
    ended: bool


class OpenIDService:
    def __init__(self, *, settings: Settings, keystore: KeyStore, accounts: AccountService,
                 documents: DocumentCatalog, alerts: AlertService, logins: LoginLog) -> None:
        self.settings = settings
        self.keystore = keystore
        self.logins = logins  # every code issued is a login to an app, kept in the audit log
        self.accounts = accounts  # the citizens' login sessions end through it (logout)
        self.documents = documents  # the citizen's documents, offered on the consent page
        self.alerts = alerts  # "this app may now read…" mails
        # The counter's assisted sessions (a floor above, set by the composition root); None: no counter.
        self.delegations: Delegations | None = None
        self.apps = AppCache()  # apps kept between code-for-token exchanges (checked at each: see there)

    def delegation(self, db: Session, token: str | None, staff_token: str | None = None) -> Delegation | None:
        """The live delegation behind an ``assisted`` cookie, or None; ``DelegationEnded`` when it is
        over or ``staff_token`` is another staff session's (see ``Delegations.resolve``)."""
        if self.delegations is None or not token:
            return None
        return self.delegations.resolve(db, token, staff_token)

    def provider(self, db: Session) -> Provider:
        return Provider(db=db, settings=self.settings, keystore=self.keystore, logins=self.logins)

    # ---- authorization ------------------------------------------------------------------------------

    def endpoint_mismatch(self, *, db: Session, client_id: str | None, endpoint: Profile) -> str | None:
        """Why an app may not use this family of endpoints (an fc-v2 app calls /api/v2/…, a standard
        app the root ones), or None. An unknown app is left to the endpoint's own answer."""
        row = load_client(db, client_id) if client_id and len(client_id) <= 64 else None
        if row is None:
            return None
        profile = profile_of(row.profile)
        if profile == endpoint:
            return None
        return (f"This app is registered with the '{profile.name}' profile: its endpoints are "
                f"{profile.endpoint(self.settings.issuer, '…')}, not {endpoint.endpoint(self.settings.issuer, '…')}.")

    def authorize(self, *, db: Session, request: VaultOAuth2Request, current: CurrentLogin | None,
                  endpoint: Profile = OIDC, delegation: Delegation | None = None) -> Outcome:
        """Validate an authorization request (authlib + our rules), remember it, then decide."""
        if mismatch := self.endpoint_mismatch(db=db, client_id=request.payload.data.get("client_id"),
                                              endpoint=endpoint):
            return BadRequest(mismatch)
        provider = self.provider(db)
        try:
            provider.get_consent_grant(request, end_user=current.citizen if current else None)
            max_age = request.payload.data.get("max_age")
            if max_age is not None and not (max_age.isdigit() and len(max_age) < 10):
                raise InvalidRequestError("'max_age' must be a non-negative integer.",
                                          redirect_uri=request.payload.redirect_uri, state=request.payload.state)
            self._document_requests(request.payload.data, client=request.client)
        except OAuth2Error as error:
            if error.redirect_uri:
                error.state = request.payload.state
                return self._to_client(error(), request.client)
            return BadRequest(error.description or error.error or "invalid_request")
        pending_id = secrets.token_urlsafe(24)
        db.add(PendingAuthorization(id=token_hash(pending_id), client_id=request.payload.client_id,
                                    params=dict(request.payload.data), expires_at=utcnow() + PENDING_LIFETIME))
        return self._decide(db=db, provider=provider, pending_id=pending_id, params=dict(request.payload.data),
                            started=utcnow(), current=current, decision=None, delegation=delegation)

    def resume(self, *, db: Session, pending_id: str, current: CurrentLogin | None,
               decision: str | None = None, chosen: Sequence[str] = (),
               delegation: Delegation | None = None) -> Outcome:
        """Back from the login page or the consent page (``chosen``: the ids of the documents the
        citizen ticked)."""
        row = db.get(PendingAuthorization, token_hash(pending_id)) if pending_id and len(pending_id) < 100 else None
        if row is None or row.expires_at <= utcnow():
            raise PendingExpired()
        return self._decide(db=db, provider=self.provider(db), pending_id=pending_id, params=row.params,
                            started=row.created_at, current=current, decision=decision, chosen=chosen,
                            delegation=delegation)

    def _document_requests(self, params: Mapping[str, str], *, client: object) -> list[DocumentRequest]:
        """What the app asks of the vault: its ``authorization_details``, or every type for the
        scope ``documents:read`` alone. Only an app registered for document access may ask."""
        known = self.documents.document_types
        raw = params.get("authorization_details")
        registered = isinstance(client, RegisteredClient) and "documents:read" in scope_list(client.row.scope)
        redirect_uri, state = params.get("redirect_uri"), params.get("state")
        try:
            requests = parse(raw, known_types=known)
        except InvalidAuthorizationDetails as error:
            error.redirect_uri, error.state = redirect_uri, state
            raise
        if requests and not registered:
            raise InvalidAuthorizationDetails("This app is not registered for document access.",
                                              redirect_uri=redirect_uri, state=state)
        if not requests and registered and "documents:read" in scope_list(params.get("scope")):
            requests = [DocumentRequest(document_types=tuple(known))]
        return requests

    def _document_questions(self, db: Session, citizen_id: uuid.UUID,
                            requests: list[DocumentRequest]) -> list[DocumentQuestion]:
        known = self.documents.document_types
        questions = []
        for r in requests:
            choices = self.documents.consent_choices(db, citizen_id=citizen_id, types=r.document_types)
            held = {c.type for c in choices}
            questions.append(DocumentQuestion(
                labels=[known[t] for t in r.document_types], purpose=r.purpose, max_documents=r.max_documents,
                choices=choices, missing=[known[t] for t in r.document_types if t not in held]))
        return questions

    def _granted_details(self, questions: list[DocumentQuestion], requests: list[DocumentRequest],
                         chosen: Sequence[str]) -> list[dict[str, Any]]:
        """The details as granted: each request with the ticked documents it offered. A choice that
        was not offered (another citizen's document, another type) refuses the whole consent."""
        picked = set(chosen)
        offered = {str(c.id) for q in questions for c in q.choices}
        if picked - offered:
            raise InvalidDocumentChoice()
        granted = []
        for request, question in zip(requests, questions, strict=True):
            ids = [c.id for c in question.choices if str(c.id) in picked]
            if request.max_documents is not None and len(ids) > request.max_documents:
                raise InvalidDocumentChoice(max_documents=request.max_documents)
            granted.append(request.detail(ids))
        return granted

    def pending_client_name(self, *, db: Session, pending_id: str) -> str | None:
        row = db.get(PendingAuthorization, token_hash(pending_id)) if pending_id and len(pending_id) < 100 else None
        client = db.get(OAuthClient, row.client_id) if row else None
        return client.name if client else None

    def _decide(self, *, db: Session, provider: Provider, pending_id: str, params: dict[str, str],
                started: datetime, current: CurrentLogin | None, decision: str | None,
                chosen: Sequence[str] = (), delegation: Delegation | None = None) -> Outcome:
        request = VaultOAuth2Request(method="POST", uri=f"{self.settings.issuer}/authorize", headers={}, query=[],
                                     form=list(params.items()))
        citizen = current.citizen if current else None
        if delegation is not None:  # an assisted session takes precedence over any citizen session
            citizen = db.get(Citizen, delegation.citizen_id)
        try:
            grant = provider.get_consent_grant(request, end_user=citizen)
        except OAuth2Error as error:  # the app was disabled meanwhile, for example
            self._forget(db, pending_id)
            return (self._to_client(error(), request.client) if error.redirect_uri
                    else BadRequest(error.description or error.error or "invalid_request"))
        assert isinstance(request.client, RegisteredClient)  # the grant's app, found by Provider.query_client
        client = request.client.row
        redirect_uri, state = params["redirect_uri"], params.get("state")
        prompts = set(params.get("prompt", "").split())

        def to_client_error(error: OAuth2Error) -> ToClient:
            self._forget(db, pending_id)
            return self._to_client(error(), request.client)

        if "none" in prompts and len(prompts) > 1:
            return to_client_error(InvalidRequestError("'prompt=none' cannot be combined.", redirect_uri=redirect_uri,
                                                        state=state))
        if delegation is not None and citizen is not None:
            return self._delegated(db=db, provider=provider, grant=grant, request=request, pending_id=pending_id,
                                   delegation=delegation, citizen=citizen, decision=decision, prompts=prompts,
                                   to_client_error=to_client_error)
        try:
            must_login = current is None or self._must_reauthenticate(db, params, client, current, started, prompts)
        except _HintNotSatisfied:
            # A login made during this very request still does not match the app's id_token_hint
            # (someone else logged in, or the hint is unreadable): the app is told, no login loop.
            return to_client_error(LoginRequiredError(redirect_uri=redirect_uri, state=state))
        if must_login:
            if "none" in prompts:
                return to_client_error(LoginRequiredError(redirect_uri=redirect_uri, state=state))
            lang = next((tag[:2] for tag in params.get("ui_locales", "").split() if tag[:2] in ("fr", "en")), None)
            return NeedLogin(pending_id=pending_id, login_hint=params.get("login_hint"), lang=lang,
                             client_name=client.name)
        assert current is not None  # must_login otherwise
        citizen = current.citizen

        scope = request.scope
        consent = db.get(Consent, (citizen.id, client.client_id))
        covered = consent is not None and set(scope_list(scope)) <= set(scope_list(consent.scope))
        try:  # checked again: the app's registration may have changed while the request waited
            requests = self._document_requests(params, client=request.client)
        except InvalidAuthorizationDetails as error:
            return to_client_error(error)
        questions = self._document_questions(db, citizen.id, requests) if requests else []
        if decision == "deny":
            logger.info("consent refused", extra={"client_id": client.client_id, "citizen_id": str(citizen.id)})
            return to_client_error(AccessDeniedError(redirect_uri=redirect_uri, state=state))
        # Documents are chosen at every authorization: a remembered consent covers claims, never a choice.
        if decision != "allow" and (not covered or "consent" in prompts or requests):
            if "none" in prompts:
                return to_client_error(ConsentRequiredError(redirect_uri=redirect_uri, state=state))
            return NeedConsent(pending_id=pending_id, client_name=client.name,
                               lines=describe_scope(scope, request.client.profile),
                               documents=questions)
        if requests:
            request.authorization_details = self._granted_details(questions, requests, chosen)
        if decision == "allow":
            if consent is None:
                try:
                    with db.begin_nested():  # a savepoint: the insert alone is undone if it loses a race
                        db.add(Consent(citizen_id=citizen.id, client_id=client.client_id,
                                       scope=" ".join(sorted(scope_list(scope)))))
                except IntegrityError:  # allowed at the same moment in another tab: add to what it wrote
                    consent = db.get(Consent, (citizen.id, client.client_id), populate_existing=True)
            if consent is not None:
                granted = set(scope_list(scope)) | set(scope_list(consent.scope))
                consent.scope, consent.granted_at = " ".join(sorted(granted)), utcnow()
            logger.info("consent given", extra={"client_id": client.client_id, "citizen_id": str(citizen.id)})

        request.login = current.login_session
        self._forget(db, pending_id)
        result = provider.create_authorization_response(request, grant_user=citizen, grant=grant)
        logger.info("authorization code issued", extra={"client_id": client.client_id})
        if requests:  # the citizen chose documents just now (a choice is never remembered)
            picked = set(chosen)
            titles = [c.title for q in questions for c in q.choices if str(c.id) in picked]
            self.alerts.documents_granted(db, citizen_id=citizen.id, app_name=client.name,
                                          titles=list(dict.fromkeys(titles)))
        return self._to_client(cast("OAuthResponse", result), request.client)  # what Provider.handle_response returned

    def _delegated(self, *, db: Session, provider: Provider, grant: Any, request: VaultOAuth2Request,
                   pending_id: str, delegation: Delegation, citizen: Citizen, decision: str | None,
                   prompts: set[str], to_client_error: Callable[[OAuth2Error], ToClient]) -> Outcome:
        """A counter agent logging in for a citizen (vault.oidc.delegation). Only an app registered
        for it (``accept_delegation``, never a FranceConnect profile) gets a code; the agent consents
        for this login only (no consent is remembered for the citizen); documents are never offered
        (choosing them is the citizen's own act). ``prompt``, ``max_age`` and ``id_token_hint`` ask
        for the citizen's own login, which cannot happen here: apart from ``prompt=none``
        (``consent_required``), they do not change the answer."""
        assert isinstance(request.client, RegisteredClient)
        registered = request.client
        client = registered.row
        redirect_uri, state = request.payload.data["redirect_uri"], request.payload.data.get("state")
        assert self.delegations is not None  # a delegation comes from them
        # The agent decides only where the staff session is shown (the consent page's own form,
        # same-origin: its SameSite=Strict cookie is sent); a copied ``assisted`` cookie alone never does.
        if decision is not None and not delegation.confirmed:
            raise DelegationEnded()
        # A delegated login reads, never writes: no deposit (or other write) scope, whatever the app asks
        # (the consent page does not name them; the code is saved without them, see Provider).
        request.scope = " ".join(s for s in scope_list(request.scope) if s not in WRITE_SCOPES)
        if not client.accept_delegation or registered.profile.franceconnect:
            self._forget(db, pending_id)
            self.delegations.app_refused(db, delegation, client_id=client.client_id, client_name=client.name)
            logger.info("delegated login refused by the app", extra={"client_id": client.client_id})
            return DelegationRefused(client_name=client.name)
        if decision == "deny":
            return to_client_error(AccessDeniedError(redirect_uri=redirect_uri, state=state))
        if decision != "allow":
            if "none" in prompts:
                return to_client_error(ConsentRequiredError(redirect_uri=redirect_uri, state=state))
            return NeedConsent(pending_id=pending_id, client_name=client.name,
                               lines=describe_scope(request.scope, registered.profile),
                               acting_for=delegation.citizen_name)
        request.delegation = delegation
        request.act = {"sub": self.keystore.pairwise_actor(db, sector=client.sector, staff_id=str(delegation.agent_id)),
                       "service": delegation.service}
        self._forget(db, pending_id)
        result = provider.create_authorization_response(request, grant_user=citizen, grant=grant)
        self.delegations.app_login(db, delegation, client_id=client.client_id, client_name=client.name)
        logger.info("authorization code issued under a mandate", extra={"client_id": client.client_id})
        return self._to_client(cast("OAuthResponse", result), registered)

    def _to_client(self, result: OAuthResponse, client: object) -> ToClient:
        """The answer to the app, with the ``iss`` its profile sends (fc-v1: none, as FranceConnect v1)."""
        profile = client.profile if isinstance(client, RegisteredClient) else OIDC
        return ToClient(result, profile.issuer(self.settings.issuer) if profile.iss_in_authorization_response else None)

    def _must_reauthenticate(self, db: Session, params: dict[str, str], client: App,
                             current: CurrentLogin, started: datetime, prompts: set[str]) -> bool:
        auth_time = current.login_session.auth_time
        if "login" in prompts and auth_time < started:
            return True  # prompt=login: a login that happened after this request started
        max_age = params.get("max_age")
        if max_age is not None and auth_time < started and (utcnow() - auth_time).total_seconds() > int(max_age):
            return True  # too old a login; one made during this request counts, however slow (max_age=0 too)
        if hint := params.get("id_token_hint"):
            _, claims = self.id_token_hint(db, hint) or (None, {})
            if claims.get("sub") != self.keystore.pairwise_sub(db, sector=client.sector,
                                                                citizen_id=str(current.citizen.id)):
                if auth_time >= started:
                    raise _HintNotSatisfied
                return True  # the app expects another person than the one logged in here
        return False

    def id_token_hint(self, db: Session, hint: str) -> tuple[OAuthClient, dict[str, Any]] | None:
        """The app and claims of an ``id_token_hint`` that is an ID token this provider issued (expired
        or not: OIDC RP-Initiated Logout §2), or None. Other JWTs it signs with the same keys (signed
        userinfo, erasure certificates…) are not ID tokens: only an ID token carries the ``typ`` JWT
        with an ``aud`` naming one app, that app's issuer, ``auth_time`` and ``at_hash`` (OIDC Core
        §2, §3.1.3.6: every ID token here comes with an access token)."""
        try:
            header, claims = self.keystore.verify(db, hint)
        except InvalidSignature:
            return None
        audience = claims.get("aud")
        if header.get("typ", "JWT") != "JWT" or not isinstance(audience, str) or not 0 < len(audience) <= 64:
            return None
        if not (isinstance(claims.get("sub"), str) and isinstance(claims.get("at_hash"), str)
                and isinstance(claims.get("auth_time"), int) and not isinstance(claims.get("auth_time"), bool)):
            return None
        client = db.get(OAuthClient, audience)
        if client is None or claims.get("iss") != profile_of(client.profile).issuer(self.settings.issuer):
            return None
        return client, claims

    def _forget(self, db: Session, pending_id: str) -> None:
        db.exec(delete(PendingAuthorization).where(col(PendingAuthorization.id) == token_hash(pending_id)))

    # ---- userinfo (OIDC Core §5.3) ----------------------------------------------------------------------

    def bearer(self, *, db: Session, access_token: str | None) -> Bearer:
        """The live access token behind a bearer value (RFC 6750), with its app and its citizen."""
        if not access_token:  # RFC 6750 §3.1: no credentials → 401 and a bare challenge, no error code
            raise BearerError("", "Missing access token.", 401)
        token = load_bearer(db, access_token)
        if (token is None or token.revoked_at is not None or token.access_expires_at <= utcnow()
                or token.app.disabled_at is not None):
            raise BearerError("invalid_token", "The access token is invalid, expired or revoked.", 401)
        return token

    def userinfo(self, *, db: Session, access_token: str | None) -> tuple[dict[str, Any] | str, App]:
        """Claims for the token's scope; a signed JWT (str) for apps registered for it."""
        token = self.bearer(db=db, access_token=access_token)
        client, citizen = token.app, token.citizen
        if "openid" not in scope_list(token.scope):
            raise BearerError("insufficient_scope", "The access token lacks the 'openid' scope.", 403)
        provider = self.provider(db)
        profile = profile_of(client.profile)
        claims: dict[str, Any] = {"sub": provider.subject(client, citizen.id),
                                  **user_claims(citizen, token.scope, profile, amr=token.amr.split())}
        signed = client.userinfo_signed if profile.userinfo == "per-app" else profile.userinfo == "jwt"
        if signed:
            now = int(time.time())
            signed_claims = {**claims, "iss": profile.issuer(self.settings.issuer), "aud": client.client_id,
                             "iat": now, "exp": now + 600}
            if token.act is not None:
                signed_claims["act"] = token.act  # RFC 8693: signed, it says who acted for the citizen
            return self.keystore.sign(db, signed_claims, alg=client.id_token_alg), client
        return claims, client

    # ---- RP-initiated logout (OIDC RP-Initiated Logout 1.0) -------------------------------------------------

    def logout(self, *, db: Session, params: dict[str, str], current: CurrentLogin | None) -> LogoutResult:
        """End the citizen's session here. The post-logout redirect is honoured only if it is registered
        for the app named by a valid ``id_token_hint`` (or ``client_id``): never an open redirect."""
        hint = params.get("id_token_hint")
        redirect_uri = params.get("post_logout_redirect_uri")
        client: OAuthClient | None = None
        claims: dict[str, Any] = {}
        if hint:
            if (found := self.id_token_hint(db, hint)) is None:
                raise UntrustedHint("The id_token_hint is not an ID token issued by this provider.")
            client, claims = found
        if params.get("client_id"):
            named = db.get(OAuthClient, params["client_id"])
            if named is None or (client is not None and named.client_id != client.client_id):
                raise LogoutError("The client_id does not match the id_token_hint.")
            client = named
        if redirect_uri and (client is None or redirect_uri not in client.post_logout_redirect_uris):
            raise LogoutError("The post_logout_redirect_uri is not registered for this client.")

        ended = False  # this browser's session
        sid = claims.get("sid")
        if isinstance(sid, str) and client is not None:
            # The app holds its sector's pairwise sid; an ID token issued before sids were pairwise
            # holds the session's own (a signed hint either way).
            sid = self.keystore.login_sid(db, sector=client.sector, pairwise=sid) or sid
        if current is not None and (not claims or sid == current.login_session.sid or (
                client is not None and claims.get("sub") == self.keystore.pairwise_sub(
                    db, sector=client.sector, citizen_id=str(current.citizen.id)))):
            # No hint (the citizen confirmed here), or a hint about the person logged in here,
            # whichever of their logins the app knows (they may have logged in again since).
            self.accounts.end_session(db=db, login_session=current.login_session)
            ended = True
        others = 0
        if sid and (current is None or sid != current.login_session.sid):
            # The session the app knows about: on another device, or an earlier login here.
            others = self.accounts.end_sessions_by_sid(db=db, sid=sid)
        if ended or others:
            logger.info("logout", extra={"client_id": client.client_id if client else None})
        target = None
        if redirect_uri:
            state = params.get("state")
            target = redirect_uri + (("&" if "?" in redirect_uri else "?") + urlencode({"state": state}) if state else "")
        return LogoutResult(redirect_to=target, ended=ended)

    # ---- the citizen's apps ------------------------------------------------------------------------------

    def apps_of(self, *, db: Session, citizen_id: uuid.UUID) -> list[tuple[OAuthClient, Consent, list[str]]]:
        rows = db.exec(select(Consent, OAuthClient).join(OAuthClient, col(OAuthClient.client_id) == Consent.client_id)
                       .where(Consent.citizen_id == citizen_id)
                       .order_by(col(Consent.granted_at).desc())).all()
        return [(client, consent, describe_scope(consent.scope)) for consent, client in rows]

    def _live_tokens(self, db: Session, citizen_id: uuid.UUID, client_id: str) -> list[OAuthToken]:
        now = utcnow()
        return list(db.exec(select(OAuthToken).where(
            OAuthToken.citizen_id == citizen_id, OAuthToken.client_id == client_id, col(OAuthToken.revoked_at).is_(None),
            or_(col(OAuthToken.access_expires_at) > now, col(OAuthToken.refresh_expires_at) > now))))

    def document_access(self, *, db: Session, citizen_id: uuid.UUID,
                        client_id: str) -> tuple[list[tuple[DocumentChoice, datetime]], list[DocumentChoice]]:
        """What "Mes applications" shows of an app and the vault: the documents its live tokens may
        read (with the date they were first granted) and the documents it deposited."""
        since: dict[uuid.UUID, datetime] = {}
        for token in self._live_tokens(db, citizen_id, client_id):
            for document_id in granted_documents(token.authorization_details):
                since[document_id] = min(since.get(document_id, token.issued_at), token.issued_at)
        readable = self.documents.choices_by_id(db, citizen_id=citizen_id, ids=list(since))
        return ([(choice, since[choice.id]) for choice in readable],
                self.documents.deposited_by(db, citizen_id=citizen_id, client_id=client_id))

    def withdraw_document(self, *, db: Session, citizen_id: uuid.UUID, client_id: str,
                          document_id: uuid.UUID) -> bool:
        """Take one document back from an app, at once: its live tokens no longer open it."""
        withdrawn = False
        for token in self._live_tokens(db, citizen_id, client_id):
            if document_id in granted_documents(token.authorization_details):
                token.authorization_details = without_document(token.authorization_details or [], document_id)
                withdrawn = True
        if withdrawn:
            logger.info("document access withdrawn", extra={"client_id": client_id, "citizen_id": str(citizen_id)})
        return withdrawn

    def revoke_app(self, *, db: Session, citizen_id: uuid.UUID, client_id: str) -> bool:
        """Withdraw consent: the app's tokens for this citizen die with it."""
        removed = db.exec(delete(Consent).where(col(Consent.citizen_id) == citizen_id,
                                                col(Consent.client_id) == client_id)).rowcount
        revoke_tokens(db, col(OAuthToken.citizen_id) == citizen_id, col(OAuthToken.client_id) == client_id)
        if removed:
            logger.info("app access withdrawn", extra={"client_id": client_id, "citizen_id": str(citizen_id)})
        return bool(removed)

    def revoke_delegated(self, *, db: Session, citizen_id: uuid.UUID, sids: Sequence[str]) -> int:
        """The logins a counter agent made for the citizen in the assisted sessions ``sids`` (their
        ``sid``, see ``Delegation.sid``) end now: their access tokens revoked, their codes not yet
        exchanged expired. How many tokens."""
        if not sids:
            return 0
        now = utcnow()
        codes = db.exec(select(AuthorizationCode).where(
            AuthorizationCode.citizen_id == citizen_id, col(AuthorizationCode.sid).in_(list(sids)),
            col(AuthorizationCode.used_at).is_(None), col(AuthorizationCode.expires_at) > now)).all()
        for code in codes:
            if code.act is not None:
                code.expires_at = now
        tokens = db.exec(select(OAuthToken).where(
            OAuthToken.citizen_id == citizen_id, col(OAuthToken.sid).in_(list(sids)),
            col(OAuthToken.revoked_at).is_(None))).all()
        revoked = [token for token in tokens if token.act is not None]
        for token in revoked:
            token.revoked_at = now
        if revoked:
            logger.info("delegated tokens revoked", extra={"citizen_id": str(citizen_id), "count": len(revoked)})
        return len(revoked)

    def end_grants(self, *, db: Session, citizen_id: uuid.UUID) -> int:
        """A password reset or "log out everywhere" (``AccountService.logout_everywhere``): every
        access and refresh token of the citizen revoked, every code not yet exchanged expired; the
        consents stay (an app gets nothing without a new login). How many tokens."""
        now = utcnow()
        db.exec(update(AuthorizationCode).where(col(AuthorizationCode.citizen_id) == citizen_id,
                                                col(AuthorizationCode.used_at).is_(None),
                                                col(AuthorizationCode.expires_at) > now).values(expires_at=now))
        revoked = revoke_tokens(db, col(OAuthToken.citizen_id) == citizen_id)
        if revoked:
            logger.info("app tokens revoked", extra={"citizen_id": str(citizen_id), "count": revoked})
        return revoked

    # ---- erasure and retention (driven by vault.gdpr) -------------------------------------------------

    def revoke_all(self, *, db: Session, citizen_id: uuid.UUID) -> int:
        """Erasure's first stage: every live token of the citizen revoked; how many."""
        return revoke_tokens(db, col(OAuthToken.citizen_id) == citizen_id)

    def recipients(self, *, db: Session, citizen_id: uuid.UUID) -> list[dict[str, str]]:
        """The apps that received the citizen's data (a consent or a token), for GDPR Art. 19."""
        rows = db.exec(select(OAuthClient).where(or_(
            col(OAuthClient.client_id).in_(select(Consent.client_id).where(Consent.citizen_id == citizen_id)),
            col(OAuthClient.client_id).in_(select(OAuthToken.client_id).where(OAuthToken.citizen_id == citizen_id)),
        )))
        return sorted(({"client_id": c.client_id, "name": c.name} for c in rows), key=lambda r: r["client_id"])

    def forget(self, *, db: Session, citizen: Citizen) -> int:
        """Erasure: the citizen's tokens, codes and consents deleted, and the authorization requests
        still waiting that name them (an app's ``login_hint`` with their address or login identifier,
        an ``id_token_hint`` about them); returns the consents' count."""
        consents = db.exec(delete(Consent).where(col(Consent.citizen_id) == citizen.id)).rowcount
        for table in (OAuthToken, AuthorizationCode):
            db.exec(delete(table).where(col(table.citizen_id) == citizen.id))
        names = [n.casefold() for n in (citizen.email, citizen.login_id, (citizen.login_id or "").replace("-", ""))
                 if n]
        mentioning = []
        for pending in db.exec(select(PendingAuthorization)).all():
            values = [str(v).casefold() for v in pending.params.values()]
            if any(name in value for name in names for value in values) or self._hints_at(db, pending, citizen):
                mentioning.append(pending.id)
        if mentioning:
            db.exec(delete(PendingAuthorization).where(col(PendingAuthorization.id).in_(mentioning)))
        return consents

    def _hints_at(self, db: Session, pending: PendingAuthorization, citizen: Citizen) -> bool:
        """Whether a waiting request's ``id_token_hint`` is an ID token about ``citizen``."""
        hint = pending.params.get("id_token_hint")
        found = self.id_token_hint(db, hint) if isinstance(hint, str) and hint else None
        return found is not None and found[1].get("sub") == self.keystore.pairwise_sub(
            db, sector=found[0].sector, citizen_id=str(citizen.id))

    def purge_expired(self, *, db: Session, now: datetime) -> dict[str, int]:
        """Retention housekeeping: authorization requests past their time, codes and tokens dead
        for a day (a refresh token still valid keeps its row), used client assertions expired (their
        ``exp`` refuses them from then on)."""
        day_ago = now - timedelta(days=1)
        return {
            "client_assertions": db.exec(delete(ClientAssertion)
                                         .where(col(ClientAssertion.expires_at) < now)).rowcount,
            "pending_authorizations": db.exec(delete(PendingAuthorization)
                                              .where(col(PendingAuthorization.expires_at) < now)).rowcount,
            "codes": db.exec(delete(AuthorizationCode).where(col(AuthorizationCode.expires_at) < day_ago)).rowcount,
            "tokens": db.exec(delete(OAuthToken).where(
                col(OAuthToken.access_expires_at) < day_ago,
                or_(col(OAuthToken.refresh_expires_at).is_(None), col(OAuthToken.refresh_expires_at) < now))).rowcount,
        }

    # ---- discovery (OIDC Discovery 1.0 §3) ---------------------------------------------------------------

    def discovery(self, profile: Profile = OIDC) -> dict[str, Any]:
        """The provider's metadata as the apps of ``profile`` see it (fc-v2: FranceConnect v2's
        endpoints under /api/v2 and its issuer; FranceConnect's unsafe choices are not copied: no
        HS256, and PKCE is accepted where it is advertised)."""
        if profile.franceconnect:
            return self._franceconnect_discovery(profile)
        issuer = self.settings.issuer
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "userinfo_endpoint": f"{issuer}/userinfo",
            "jwks_uri": f"{issuer}/jwks",
            "end_session_endpoint": f"{issuer}/logout",
            "revocation_endpoint": f"{issuer}/revoke",
            "introspection_endpoint": f"{issuer}/introspect",
            "scopes_supported": SCOPES_SUPPORTED,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "authorization_details_types_supported": [DOCUMENTS_TYPE],  # RFC 9396 §10
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["ES256", "RS256"],
            "userinfo_signing_alg_values_supported": ["ES256", "RS256"],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256"],
            "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "auth_time", "acr", "amr", "sid", "given_name", "family_name",
                                 "birthdate", "gender", "birthplace", "birthcountry", "preferred_username", "email",
                                 "act"],  # act: logins made at the counter (vault.oidc.delegation)
            "acr_values_supported": [ACR_REACHED],
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "authorization_response_iss_parameter_supported": True,
            "ui_locales_supported": ["fr", "en"],
            "claims_locales_supported": ["fr"],
            "frontchannel_logout_supported": False,
            "backchannel_logout_supported": False,
        }

    def _franceconnect_discovery(self, profile: Profile) -> dict[str, Any]:
        base = self.settings.issuer
        return {
            "issuer": profile.issuer(base),
            "authorization_endpoint": profile.endpoint(base, "authorize"),
            "token_endpoint": profile.endpoint(base, "token"),
            "userinfo_endpoint": profile.endpoint(base, "userinfo"),
            "jwks_uri": profile.endpoint(base, "jwks"),
            "end_session_endpoint": base + profile.logout_path,
            "scopes_supported": scopes_supported(profile),
            "claims_supported": ["sub", "iss", "auth_time", "acr", "amr", *claims_for_scope(" ".join(profile.scopes or {}),
                                                                                          profile)],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["pairwise"],
            "acr_values_supported": [ACR_REACHED],
            "id_token_signing_alg_values_supported": ["ES256", "RS256"],  # never HS256 (FranceConnect still offers it)
            "userinfo_signing_alg_values_supported": ["ES256", "RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256"],
            "code_challenge_methods_supported": ["S256"],
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "authorization_response_iss_parameter_supported": profile.iss_in_authorization_response,
            "ui_locales_supported": ["fr", "en"],
        }
