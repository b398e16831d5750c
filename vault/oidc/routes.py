"""OpenID Connect endpoints (the README's "Registering an app") and the citizen's "Mes applications" page.

Thin: the adapter builds authlib's request, ``vault.oidc.service`` decides, these shape the answer.
"""

from __future__ import annotations

import base64
import hmac
import uuid
from typing import Annotated
from urllib.parse import unquote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from sqlmodel import Session
from starlette.responses import Response

from vault.auth.dependencies import SESSION_COOKIE, LoggedIn, OptionalLogin, require_login
from vault.auth.franceconnect import FranceConnectLogin
from vault.auth.service import CurrentLogin
from vault.db import in_unit_of_work
from vault.oidc import api_docs as docs
from vault.oidc.adapter import oauth_request, read_form_items, to_response
from vault.oidc.delegation import ASSISTED_COOKIE, STAFF_COOKIE, Delegation, DelegationEnded
from vault.oidc.exceptions import BearerError, LogoutError, UntrustedHint
from vault.oidc.keys import JWKS_MAX_AGE
from vault.oidc.profiles import endpoint_profile
from vault.oidc.service import (
    BadRequest,
    DelegationRefused,
    NeedConsent,
    NeedLogin,
    OpenIDService,
    Outcome,
    ToClient,
)
from vault.translation import N_
from vault.web.dependencies import Db, FormFields, redirect
from vault.web.pages import (
    PageError,
    clear_cookie,
    flash_notice,
    form_values,
    get_cookie,
    notice_key,
    render,
    rotate_csrf,
)
from vault.web.state import app_service, app_settings

router = APIRouter(tags=["openid-connect"])

OAuthForm = Annotated[list[tuple[str, str]], Depends(read_form_items)]

INVALID_APP_REQUEST = N_(
    "L'application qui vous a envoyé ici a fait une demande de connexion incorrecte. "
    "Retournez sur son site et réessayez ; si cela recommence, prévenez le service concerné."
)
DELEGATION_REFUSED = N_("Cette application n'accepte pas les connexions faites au guichet pour une autre personne.")
DELEGATION_REFUSED_HINT = N_("Rien ne lui a été transmis. La personne peut s'y connecter elle-même, avec son "
                             "compte ; vous pouvez aussi l'aider sur un autre service de la liste.")
ASSISTED_SESSION_OVER = N_(
    "La session assistée est terminée : elle dure 30 minutes au plus et s'arrête avec le mandat ou à votre "
    "déconnexion. Rien n'a été transmis à l'application. Pour continuer, rouvrez le dossier de la personne "
    "et commencez une nouvelle session assistée."
)
INVALID_LOGOUT_REQUEST = N_(
    "L'application qui vous a envoyé ici a fait une demande de déconnexion incorrecte : rien n'a été fait. "
    "Pour vous déconnecter de l'espace citoyen, utilisez « Se déconnecter » en haut de la page ; si cela "
    "recommence, prévenez le service concerné."
)


async def oidc(request: Request) -> OpenIDService:  # async: no I/O, no thread hop
    return app_service(request, "oidc", OpenIDService)


OIDC = Annotated[OpenIDService, Depends(oidc)]


def _issuer(request: Request) -> str:
    return app_settings(request).issuer


# ---- discovery and keys -------------------------------------------------------------------------------


@router.get("/.well-known/openid-configuration", summary="OpenID Provider metadata",
            responses={200: {"model": docs.ProviderMetadata, "description": "The provider's metadata"}})
@router.get("/api/v2/.well-known/openid-configuration", include_in_schema=False)  # fc-v2 apps (FranceConnect v2)
def discovery(request: Request, service: OIDC) -> JSONResponse:
    return JSONResponse(service.discovery(endpoint_profile(request.url.path)),
                        headers={"Cache-Control": "public, max-age=300"})


@router.get("/jwks", summary="Public keys that verify ID tokens and signed userinfo",
            responses={200: {"model": docs.Jwks, "description": "The public keys"}})
@router.get("/api/v2/jwks", include_in_schema=False)
def jwks(db: Db, service: OIDC) -> JSONResponse:
    # A new key is published PUBLISH_AHEAD before it signs, longer than this lifetime (oidc/keys.py).
    return JSONResponse(service.keystore.jwks(db), headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"})


# ---- authorization ------------------------------------------------------------------------------------


def _answer(request: Request, outcome: Outcome) -> Response:
    if isinstance(outcome, ToClient):
        return to_response(outcome.result, issuer=outcome.iss)
    if isinstance(outcome, NeedLogin):
        query = {"next": f"/authorize/continue/{outcome.pending_id}"}
        if outcome.login_hint:
            query["login_hint"] = outcome.login_hint[:254]
        if outcome.lang:
            query["lang"] = outcome.lang
        return redirect("/login?" + urlencode(query))
    if isinstance(outcome, NeedConsent):
        return render(request, "consent.html", {"title": N_("Autoriser l'accès à vos informations"),
                                                "client_name": outcome.client_name, "lines": outcome.lines,
                                                "documents": outcome.documents, "pending_id": outcome.pending_id,
                                                "acting_for": outcome.acting_for})
    if isinstance(outcome, DelegationRefused):
        # A plain page, and nothing for the app: an access_denied redirect would have the app say
        # "you refused", which is neither what happened nor something the agent can act upon.
        return render(request, "message.html", {
            "title": N_("Connexion au guichet refusée"), "message": DELEGATION_REFUSED, "detail": DELEGATION_REFUSED_HINT,
            "link": ("/agent/", N_("Retour au guichet"))}, status=403)
    assert isinstance(outcome, BadRequest)
    return render(request, "message.html", {"title": N_("Demande de connexion incorrecte"), "message": INVALID_APP_REQUEST,
                                            "technical": outcome.description}, status=400)


class _SessionOver(Exception):
    """The browser's ``assisted`` cookie names an assisted session that is over."""


def _delegation(request: Request, db: Db, service: OpenIDService) -> Delegation | None:
    """A counter agent acting for a citizen in this browser (the ``assisted`` cookie): it takes
    precedence over any citizen session here. The staff session's cookie, when the browser sends it,
    must be the one that opened it (a city app's cross-site redirection here does not carry that
    SameSite=Strict cookie; the consent page's form, same-origin, always does)."""
    try:
        return service.delegation(db, get_cookie(request, ASSISTED_COOKIE), get_cookie(request, STAFF_COOKIE))
    except DelegationEnded:
        raise _SessionOver() from None


def _session_over(request: Request) -> Response:
    """The agent's assisted session ended: say so (not a citizen login form), forget the cookie."""
    response = render(request, "message.html", {"title": N_("Session assistée terminée"),
                                                    "message": ASSISTED_SESSION_OVER,
                                                    "link": ("/agent/", N_("Retour au guichet"))}, status=403)
    clear_cookie(response, app_settings(request), ASSISTED_COOKIE)
    return response


@router.get("/authorize", operation_id="authorize_get", summary="Authorization endpoint (code flow)",
            response_class=HTMLResponse, responses=docs.AUTHORIZE_RESPONSES, openapi_extra=docs.AUTHORIZE_GET)
@router.post("/authorize", operation_id="authorize_post", summary="Authorization endpoint (code flow), by POST",
             response_class=HTMLResponse, responses=docs.AUTHORIZE_RESPONSES, openapi_extra=docs.AUTHORIZE_POST)
@router.get("/api/v1/authorize", include_in_schema=False)  # fc-v1 apps (FranceConnect v1)
@router.get("/api/v2/authorize", include_in_schema=False)  # fc-v2 apps (FranceConnect v2)
@router.post("/api/v2/authorize", include_in_schema=False)
def authorize(request: Request, form: OAuthForm, db: Db, service: OIDC, current: OptionalLogin) -> Response:
    try:
        delegation = _delegation(request, db, service)
    except _SessionOver:
        return _session_over(request)
    return _answer(request, service.authorize(db=db, request=oauth_request(request, _issuer(request), form),
                                              current=current, endpoint=endpoint_profile(request.url.path),
                                              delegation=delegation))


@router.get("/authorize/continue/{pending_id}", include_in_schema=False)
def authorize_continue(request: Request, pending_id: str, db: Db, service: OIDC, current: OptionalLogin) -> Response:
    try:
        delegation = _delegation(request, db, service)
    except _SessionOver:
        return _session_over(request)
    return _answer(request, service.resume(db=db, pending_id=pending_id, current=current, delegation=delegation))


@router.post("/authorize/continue/{pending_id}", include_in_schema=False)
def authorize_decide(request: Request, pending_id: str, form: FormFields, db: Db, service: OIDC,
                     current: OptionalLogin) -> Response:
    try:
        delegation = _delegation(request, db, service)
    except _SessionOver:
        return _session_over(request)
    if delegation is None:
        current = require_login(request, current)
    decision = form.get("decision")
    if decision not in ("allow", "deny"):
        raise PageError(400, "Choisissez « Autoriser » ou « Refuser ».")
    try:  # an agent's decision needs their staff session too, not the ``assisted`` cookie alone
        outcome = service.resume(db=db, pending_id=pending_id, current=current, decision=decision,
                                 chosen=form_values(request, "document"), delegation=delegation)
    except DelegationEnded:
        return _session_over(request)
    return _answer(request, outcome)


# ---- token, revocation, introspection -----------------------------------------------------------------------
# The endpoints apps call (token, revocation, introspection, userinfo) run their whole database work in
# one worker thread (``in_unit_of_work``): no thread hop for a ``Db`` dependency's exit.


def _client_id_of(request: Request, form: list[tuple[str, str]]) -> str | None:
    """The app a token request names (its form, or its Basic credentials), before authlib reads it."""
    if named := dict(form).get("client_id"):
        return named
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return None
    try:
        return unquote(base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").split(":", 1)[0])
    except (ValueError, UnicodeDecodeError):
        return None  # authlib answers invalid_client


@router.post("/token", summary="Token endpoint (authorization_code, refresh_token)",
             responses=docs.TOKEN_RESPONSES, openapi_extra=docs.TOKEN)
@router.post("/api/v1/token", include_in_schema=False)
@router.post("/api/v2/token", include_in_schema=False)
async def token(request: Request, form: OAuthForm, service: OIDC) -> Response:
    oauth_request(request, _issuer(request), form, query=[])  # first: unreadable Basic credentials are refused
    client_id, endpoint = _client_id_of(request, form), endpoint_profile(request.url.path)

    def answer(db: Session) -> Response:
        if mismatch := service.endpoint_mismatch(db=db, client_id=client_id, endpoint=endpoint):
            return JSONResponse({"error": "unauthorized_client", "error_description": mismatch}, status_code=400,
                                headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
        return to_response(service.provider(db).create_token_response(
            oauth_request(request, _issuer(request), form, query=[])))

    def work(db: Session) -> Response:
        if dict(form).get("grant_type") != "authorization_code":
            return answer(db)
        service.apps.use(db)  # the app as kept from an earlier exchange, its version checked with the code
        response = answer(db)
        if response.status_code >= 400 and service.apps.refresh(db):
            response = answer(db)  # refused by a record that was out of date: answered from the app's row
        return response

    return await in_unit_of_work(request, work)


@router.post("/revoke", summary="Token revocation (RFC 7009)", responses=docs.REVOKE_RESPONSES,
             openapi_extra=docs.REVOKE)
async def revoke(request: Request, form: OAuthForm, service: OIDC) -> Response:
    oauth = oauth_request(request, _issuer(request), form, query=[])
    return await in_unit_of_work(request, lambda db: to_response(
        service.provider(db).create_endpoint_response("revocation", oauth)))


@router.post("/introspect", summary="Token introspection (RFC 7662)", responses=docs.INTROSPECT_RESPONSES,
             openapi_extra=docs.INTROSPECT)
async def introspect(request: Request, form: OAuthForm, service: OIDC) -> Response:
    oauth = oauth_request(request, _issuer(request), form, query=[])
    return await in_unit_of_work(request, lambda db: to_response(
        service.provider(db).create_endpoint_response("introspection", oauth)))


# ---- userinfo ---------------------------------------------------------------------------------------------


async def userinfo_form(request: Request) -> list[tuple[str, str]]:
    """A POST to userinfo may carry the token in a form body (RFC 6750 §2.2) or have no body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method == "POST" and content_type == "application/x-www-form-urlencoded":
        return await read_form_items(request)
    return []


@router.get("/userinfo", operation_id="userinfo_get", summary="UserInfo endpoint (JSON, or a signed JWT)",
            responses=docs.USERINFO_RESPONSES, openapi_extra=docs.USERINFO_GET)
@router.post("/userinfo", operation_id="userinfo_post", summary="UserInfo endpoint, by POST",
             responses=docs.USERINFO_POST_RESPONSES, openapi_extra=docs.USERINFO_POST)
@router.get("/api/v1/userinfo", include_in_schema=False)
@router.get("/api/v2/userinfo", include_in_schema=False)
async def userinfo(request: Request, form: Annotated[list[tuple[str, str]], Depends(userinfo_form)],
                   service: OIDC) -> Response:
    header = request.headers.get("authorization", "")
    from_header = header[7:].strip() if header[:7].lower() == "bearer " else None
    from_body = dict(form).get("access_token")
    if from_header and from_body:
        raise BearerError("invalid_request", "Send the access token in one place only.", 400)
    body, _client = await in_unit_of_work(  # BearerError: RFC 6750
        request, lambda db: service.userinfo(db=db, access_token=from_header or from_body))
    if isinstance(body, str):
        return Response(body, media_type="application/jwt")
    return JSONResponse(body)


# ---- logout --------------------------------------------------------------------------------------------------


def _csrf_ok(request: Request, sent: str | None) -> bool:
    cookie = get_cookie(request, "csrf") or ""
    return bool(cookie and sent and hmac.compare_digest(cookie.encode(), sent.encode()))


@router.get("/logout", operation_id="logout_get", summary="Log out (RP-initiated logout)",
            response_class=HTMLResponse, responses=docs.LOGOUT_RESPONSES, openapi_extra=docs.LOGOUT_GET)
@router.post("/logout", operation_id="logout_post", summary="Log out (RP-initiated logout and the site's button)",
             response_class=HTMLResponse, responses=docs.LOGOUT_POST_RESPONSES, openapi_extra=docs.LOGOUT_POST)
@router.get("/api/v1/logout", include_in_schema=False)  # FranceConnect v1's logout
@router.get("/api/v2/session/end", include_in_schema=False)  # FranceConnect v2's
def logout(request: Request, form: OAuthForm, db: Db, service: OIDC, current: OptionalLogin) -> Response:
    params = dict(form) if request.method == "POST" else dict(request.query_params)
    endpoint = endpoint_profile(request.url.path)
    if endpoint.franceconnect:
        return _franceconnect_logout(request, params, db, service, current)
    confirmed = request.method == "POST" and _csrf_ok(request, params.pop("csrf_token", None))
    from_app = any(k in params for k in ("id_token_hint", "post_logout_redirect_uri", "client_id"))
    if not from_app and request.method == "POST" and not confirmed:
        raise PageError(403, "Ce formulaire a expiré ou ne vient pas de ce site. Rechargez la page, puis recommencez.",
                        title="Formulaire expiré")
    if current is not None and not confirmed and not params.get("id_token_hint"):
        # Without proof that the app knows this session, ask (OIDC RP-Initiated Logout §2).
        return render(request, "logout_confirm.html", {"title": N_("Se déconnecter ?"), "params": params})
    try:
        try:
            result = service.logout(db=db, params=params, current=current)
        except UntrustedHint:
            # As if there were no hint: the citizen is asked, and no redirect is honoured (nothing
            # proves the request comes from the app it names).
            params = {k: v for k, v in params.items()
                      if k not in ("id_token_hint", "post_logout_redirect_uri", "client_id", "state")}
            if current is not None and not confirmed:
                return render(request, "logout_confirm.html", {"title": N_("Se déconnecter ?"), "params": params})
            result = service.logout(db=db, params=params, current=current)
    except LogoutError as exc:
        return render(request, "message.html", {"title": N_("Déconnexion impossible"), "message": INVALID_LOGOUT_REQUEST,
                                                "technical": exc.description}, status=400)
    target = result.redirect_to or "/?notice=logged_out"
    if result.ended and current is not None:  # logged in through FranceConnect: out there too, then on
        target = _franceconnect_logout_url(request, db, current, then=target) or target
    response: Response = RedirectResponse(target, status_code=303)
    flash_notice(response, target)  # "Vous êtes déconnecté(e)", once
    if result.ended or current is None:
        clear_cookie(response, app_settings(request), SESSION_COOKIE)
        rotate_csrf(request, response)
    return response


def _franceconnect_logout_url(request: Request, db: Db, current: CurrentLogin, *, then: str) -> str | None:
    """A session opened through FranceConnect ends there too: the URL of its logout (which comes
    back, then goes on to ``then``), or None."""
    return app_service(request, "franceconnect", FranceConnectLogin).logout_url(db, current.login_session, then=then)


def _franceconnect_logout(request: Request, params: dict[str, str], db: Db, service: OIDC,
                          current: OptionalLogin) -> Response:
    """FranceConnect's logout (v1 ``/api/v1/logout``, v2 ``/api/v2/session/end``): ``id_token_hint``
    is required; back to the registered ``post_logout_redirect_uri`` with ``state``, or a page
    saying the citizen is logged out."""
    if not params.get("id_token_hint"):
        return render(request, "message.html", {"title": N_("Déconnexion impossible"), "message": INVALID_LOGOUT_REQUEST,
                                                "technical": "id_token_hint is required."}, status=400)
    try:
        result = service.logout(db=db, params=params, current=current)
    except LogoutError as exc:
        return render(request, "message.html", {"title": N_("Déconnexion impossible"), "message": INVALID_LOGOUT_REQUEST,
                                                "technical": exc.description}, status=400)
    response: Response
    target = result.redirect_to
    if result.ended and current is not None:
        target = _franceconnect_logout_url(request, db, current, then=target or "/?notice=logged_out") or target
    if target:
        response = RedirectResponse(target, status_code=303)
        flash_notice(response, target)
    else:
        response = render(request, "message.html", {
            "title": N_("Vous êtes déconnecté(e)"),
            "message": N_("Vous êtes bien déconnecté(e) de l'espace citoyen. Vous pouvez fermer votre navigateur.")})
    if result.ended or current is None:
        clear_cookie(response, app_settings(request), SESSION_COOKIE)
        rotate_csrf(request, response)
    return response


# ---- "Mes applications" ----------------------------------------------------------------------------------------


APP_NOTICES = {
    "revoked": N_("L'accès de cette application a été retiré."),
    "document_withdrawn": N_("Ce justificatif n'est plus accessible à cette application."),
}


@router.get("/account/apps", include_in_schema=False)
def my_apps(request: Request, db: Db, service: OIDC, current: LoggedIn) -> Response:
    citizen_id = current.citizen.id
    apps = [(client, consent, lines, *service.document_access(db=db, citizen_id=citizen_id, client_id=client.client_id))
            for client, consent, lines in service.apps_of(db=db, citizen_id=citizen_id)]
    return render(request, "apps.html", {"title": N_("Mes applications"), "apps": apps,
                                         "notice": APP_NOTICES.get(notice_key(request))})


@router.post("/account/apps/withdraw-document", include_in_schema=False)
def withdraw_document(request: Request, form: FormFields, db: Db, service: OIDC, current: LoggedIn) -> Response:
    try:
        document_id = uuid.UUID(form.get("document_id", ""))
    except ValueError:
        raise PageError(400, N_("Ce justificatif n'existe pas.")) from None
    if not service.withdraw_document(db=db, citizen_id=current.citizen.id, client_id=form.get("client_id", ""),
                                     document_id=document_id):
        raise PageError(404, N_("Cette application n'a pas accès à ce justificatif."))
    return redirect("/account/apps?notice=document_withdrawn")


@router.post("/account/apps/revoke", include_in_schema=False)
def revoke_app(request: Request, form: FormFields, db: Db, service: OIDC, current: LoggedIn) -> Response:
    if not service.revoke_app(db=db, citizen_id=current.citizen.id, client_id=form.get("client_id", "")):
        raise PageError(404, "Cette application n'a pas accès à votre compte.")
    return redirect("/account/apps?notice=revoked")
