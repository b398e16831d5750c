"""Passkey pages and the JSON exchanges of ``vault/web/static/passkeys.js``. Thin: parse, call
``PasskeyService``, shape the answer.

The browser's WebAuthn API needs JavaScript; each ceremony is two JSON requests (the options, then
the authenticator's answer), each carrying the CSRF token in an ``X-CSRF-Token`` header (checked
against the CSRF cookie, as forms are). Removing a passkey is a plain form.
"""

from __future__ import annotations

import hmac
import json
import uuid
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRouter
from starlette.responses import JSONResponse, Response

from vault.auth.dependencies import SESSION_COOKIE, Accounts, LoggedIn, accounts
from vault.auth.exceptions import AuthError, InvalidInput, TooManyLoginAttempts
from vault.auth.passkeys import PasskeyNotFound, PasskeyService
from vault.auth.routes import safe_next
from vault.auth.service import CurrentLogin
from vault.translation import N_
from vault.web.dependencies import Db, FormFields, redirect
from vault.web.i18n import translations
from vault.web.pages import (
    BodyTooLarge,
    PageError,
    client_address,
    flash_notice,
    get_cookie,
    language,
    read_small_body,
    render,
    rotate_csrf,
    set_cookie,
)
from vault.web.state import app_service, app_settings

router = APIRouter()

MAX_JSON_BYTES = 64 * 1024
NEEDS_JAVASCRIPT = N_("Les clés d'accès ont besoin de JavaScript, qui est désactivé ou bloqué dans votre navigateur. "
                      "Activez-le pour ajouter une clé d'accès ; votre mot de passe fonctionne toujours.")
NOT_AVAILABLE = N_("Les clés d'accès ne sont pas disponibles sur cette adresse du service.")


def passkey_service(request: Request) -> PasskeyService:
    return app_service(request, "passkeys", PasskeyService)


Passkeys = Annotated[PasskeyService, Depends(passkey_service)]


async def read_json(request: Request) -> dict[str, Any]:
    """A small JSON object posted by passkeys.js, with the page's CSRF token in ``X-CSRF-Token``."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise PageError(415, "Cette adresse attend du JSON.")
    cookie = get_cookie(request, "csrf") or ""
    sent = request.headers.get("x-csrf-token", "")
    if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise PageError(403, N_("Ce formulaire a expiré ou ne vient pas de ce site. Rechargez la page, puis recommencez."),
                        title=N_("Formulaire expiré"))
    try:
        body = json.loads(await read_small_body(request, MAX_JSON_BYTES))
    except BodyTooLarge:
        raise PageError(413, "Le formulaire envoyé est trop volumineux.") from None
    except (UnicodeDecodeError, ValueError):
        raise PageError(400, "Le formulaire envoyé est illisible. Rechargez la page et recommencez.") from None
    if not isinstance(body, dict):
        raise PageError(400, "Le formulaire envoyé est illisible. Rechargez la page et recommencez.")
    return body


JsonBody = Annotated[dict[str, Any], Depends(read_json)]


def _text(body: dict[str, Any], name: str, limit: int = 1000) -> str:
    value = body.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _refusal(request: Request, exc: AuthError) -> JSONResponse:
    """The error as passkeys.js shows it: the message (and each field's) in the page's language."""
    gettext = translations(language(request)).gettext
    answer: dict[str, Any] = {"error": gettext(exc.message)}
    if exc.fields:
        answer["fields"] = {name: gettext(text) for name, text in exc.fields.items()}
    response = JSONResponse(answer, status_code=exc.status)
    if isinstance(exc, TooManyLoginAttempts):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _options(options_json: str) -> Response:
    return Response(options_json, media_type="application/json")


def _usable(service: PasskeyService) -> None:
    if not service.rp.usable:
        raise PageError(404, NOT_AVAILABLE)


# ---- login -----------------------------------------------------------------------------------------


@router.post("/login/passkey/options", include_in_schema=False)
def login_options(request: Request, body: JsonBody, db: Db, service: Passkeys) -> Response:
    _usable(service)
    return _options(service.login_options(db=db))


@router.post("/login/passkey", include_in_schema=False)
def login_with_passkey(request: Request, body: JsonBody, db: Db, service: Passkeys, accounts: Accounts) -> Response:
    _usable(service)
    # The old session (if any) ends here: a login always opens a new session id.
    accounts.logout(db=db, token=get_cookie(request, SESSION_COOKIE))
    try:
        result = service.login(db=db, credential=body.get("credential"), email=_text(body, "email", 254),
                               address=client_address(request), user_agent=request.headers.get("user-agent", ""))
    except AuthError as exc:  # refused (logged and counted), locked, or email not confirmed
        return _refusal(request, exc)
    response = JSONResponse({"redirect": safe_next(_text(body, "next", 2000))})
    set_cookie(response, app_settings(request), SESSION_COOKIE, result.token)
    rotate_csrf(request, response)
    return response


# ---- Mon compte: adding and removing passkeys ------------------------------------------------------------


def _new_page(request: Request, current: CurrentLogin, *, failure: str | None = None,
              errors: dict[str, str] | None = None, values: dict[str, str] | None = None, status: int = 200) -> Response:
    return render(request, "passkey_new.html", {
        "title": N_("Ajouter une clé d'accès"), "failure": failure, "errors": errors or {}, "values": values or {},
        "totp": current.citizen.totp_enabled_at is not None,
        "needs_javascript": NEEDS_JAVASCRIPT}, status=status)


@router.get("/account/passkeys/new", include_in_schema=False)
def new_passkey_page(request: Request, current: LoggedIn, service: Passkeys) -> Response:
    _usable(service)
    return _new_page(request, current)


@router.post("/account/passkeys/new", include_in_schema=False)
def new_passkey_without_javascript(request: Request, form: FormFields, current: LoggedIn) -> Response:
    """The form sent without passkeys.js (JavaScript off): nothing can be created without it."""
    return _new_page(request, current, failure=NEEDS_JAVASCRIPT, values={"name": form.get("name", "")}, status=400)


@router.post("/account/passkeys/options", include_in_schema=False)
def registration_options(request: Request, body: JsonBody, db: Db, service: Passkeys, current: LoggedIn) -> Response:
    _usable(service)
    try:
        options = service.registration_options(
            db=db, citizen=current.citizen, login_session=current.login_session, name=_text(body, "name", 200),
            password=_text(body, "password"), otp=_text(body, "otp", 50), address=client_address(request))
    except AuthError as exc:  # a field to correct (failed proofs are counted), or locked
        return _refusal(request, exc)
    accounts(request).stepped_up(current)  # the password (and code), typed just now
    return _options(options)


@router.post("/account/passkeys", include_in_schema=False)
def add_passkey(request: Request, body: JsonBody, db: Db, service: Passkeys, current: LoggedIn) -> Response:
    _usable(service)
    try:
        service.register(db=db, citizen=current.citizen, login_session=current.login_session,
                         credential=body.get("credential"))
    except AuthError as exc:
        return _refusal(request, exc)
    response = JSONResponse({"redirect": "/account?notice=passkey_added"})
    flash_notice(response, "/account?notice=passkey_added")
    return response


def _remove_page(request: Request, current: CurrentLogin, passkey_name: str, passkey_id: uuid.UUID, *,
                 errors: dict[str, str] | None = None, failure: str | None = None, status: int = 200) -> Response:
    return render(request, "passkey_remove.html", {
        "title": N_("Supprimer une clé d'accès"), "passkey_name": passkey_name, "passkey_id": passkey_id,
        "totp": current.citizen.totp_enabled_at is not None, "errors": errors or {}, "failure": failure}, status=status)


def _find(db: Db, service: PasskeyService, current: CurrentLogin, passkey_id: uuid.UUID) -> str:
    try:
        return service.get(db=db, citizen=current.citizen, passkey_id=passkey_id).name
    except PasskeyNotFound as exc:
        raise PageError(404, exc.message) from None


@router.get("/account/passkeys/{passkey_id}/remove", include_in_schema=False)
def remove_passkey_page(request: Request, passkey_id: uuid.UUID, db: Db, service: Passkeys,
                        current: LoggedIn) -> Response:
    return _remove_page(request, current, _find(db, service, current, passkey_id), passkey_id)


@router.post("/account/passkeys/{passkey_id}/remove", include_in_schema=False)
def remove_passkey(request: Request, passkey_id: uuid.UUID, form: FormFields, db: Db, service: Passkeys,
                   current: LoggedIn) -> Response:
    name = _find(db, service, current, passkey_id)
    try:
        service.remove(db=db, citizen=current.citizen, passkey_id=passkey_id, password=form.get("password", ""),
                       otp=form.get("otp", ""), address=client_address(request))
    except InvalidInput as exc:  # the failed proof is counted (committed), nothing removed
        return _remove_page(request, current, name, passkey_id, errors=exc.fields, status=400)
    except TooManyLoginAttempts as exc:
        response = _remove_page(request, current, name, passkey_id, failure=exc.message, status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    accounts(request).stepped_up(current)  # the password (and code), typed just now
    return redirect("/account?notice=passkey_removed")


# ---- the confirmation page (step-up) with a passkey ---------------------------------------------------------


@router.post("/account/confirm/passkey/options", include_in_schema=False)
def confirm_options(request: Request, body: JsonBody, db: Db, service: Passkeys, current: LoggedIn) -> Response:
    _usable(service)
    return _options(service.login_options(db=db))


@router.post("/account/confirm/passkey", include_in_schema=False)
def confirm_with_passkey(request: Request, body: JsonBody, db: Db, service: Passkeys, current: LoggedIn) -> Response:
    _usable(service)
    try:
        service.confirm(db=db, current=current, credential=body.get("credential"), address=client_address(request))
    except AuthError as exc:  # refused (logged and counted), or locked
        return _refusal(request, exc)
    return JSONResponse({"redirect": safe_next(_text(body, "next", 2000))})
