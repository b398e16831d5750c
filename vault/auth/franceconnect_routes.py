""""S'identifier avec FranceConnect": the pages of vault.auth.franceconnect. Thin: start, callback,
the step that links an existing account, the way back from FranceConnect's logout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from vault.auth.dependencies import SESSION_COOKIE
from vault.auth.exceptions import AuthError, TooManyLoginAttempts
from vault.auth.federation import FederationError
from vault.auth.franceconnect import FranceConnectLogin, LoggedIn
from vault.auth.routes import safe_next
from vault.translation import N_
from vault.web.dependencies import Db, FormFields, redirect
from vault.web.pages import clear_cookie, client_address, get_cookie, render, rotate_csrf, set_cookie
from vault.web.state import app_service, app_settings

router = APIRouter(include_in_schema=False)

LINK_COOKIE = "fc_link"


def franceconnect(request: Request) -> FranceConnectLogin:
    service = app_service(request, "franceconnect", FranceConnectLogin)
    if not service.enabled:
        raise HTTPException(404)  # FranceConnect is not configured here
    return service


FranceConnect = Annotated[FranceConnectLogin, Depends(franceconnect)]


def _logged_in(request: Request, result: LoggedIn) -> Response:
    response = redirect(safe_next(result.next))
    settings = app_settings(request)
    set_cookie(response, settings, SESSION_COOKIE, result.token)
    clear_cookie(response, settings, LINK_COOKIE)
    rotate_csrf(request, response)
    return response


@router.get("/login/franceconnect")
def start(request: Request, db: Db, service: FranceConnect) -> Response:
    return redirect(service.begin(db, next_path=safe_next(request.query_params.get("next"))))


@router.get("/login/franceconnect/callback")
def callback(request: Request, db: Db, service: FranceConnect) -> Response:
    try:
        result = service.complete(db, params=dict(request.query_params),
                                  user_agent=request.headers.get("user-agent", ""))
    except FederationError:
        db.commit()  # the state is used up even so: a replayed callback finds nothing
        raise
    # The old session (if any) ends: a login always opens a new session id.
    app_service(request, "accounts", type(service.accounts)).logout(db=db, token=get_cookie(request, SESSION_COOKIE))
    if isinstance(result, LoggedIn):
        return _logged_in(request, result)
    response = redirect("/login/franceconnect/link")
    set_cookie(response, app_settings(request), LINK_COOKIE, result.cookie, max_age=600)
    return response


def _link_page(request: Request, email: str, *, failure: str | None = None, status: int = 200) -> Response:
    return render(request, "franceconnect_link.html", {"title": N_("Relier votre compte à FranceConnect"),
                                                       "email": email, "failure": failure}, status=status)


@router.get("/login/franceconnect/link")
def link_page(request: Request, db: Db, service: FranceConnect) -> Response:
    email = service.pending_link_email(db, get_cookie(request, LINK_COOKIE))
    if email is None:
        raise FederationError("no link step waiting")
    return _link_page(request, email)


@router.post("/login/franceconnect/link")
def link(request: Request, form: FormFields, db: Db, service: FranceConnect) -> Response:
    cookie = get_cookie(request, LINK_COOKIE)
    email = service.pending_link_email(db, cookie)
    if email is None:
        raise FederationError("no link step waiting")
    try:
        result = service.link(db, cookie=cookie, password=form.get("password", ""), otp=form.get("otp", ""),
                              address=client_address(request), user_agent=request.headers.get("user-agent", ""))
    except TooManyLoginAttempts as exc:
        db.commit()
        response = _link_page(request, email, failure=exc.message, status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except AuthError as exc:
        db.commit()  # the failure counts towards the throttle
        return _link_page(request, email, failure=exc.message, status=401)
    app_service(request, "accounts", type(service.accounts)).logout(db=db, token=get_cookie(request, SESSION_COOKIE))
    return _logged_in(request, result)


@router.get("/logout/franceconnect/callback")
def logged_out(request: Request, db: Db, service: FranceConnect) -> Response:
    """Back from FranceConnect's logout: on to where the logout was going (checked when it began)."""
    target = service.logged_out(db, state=request.query_params.get("state"))
    return redirect(target if target.startswith(("/", "http")) else "/?notice=logged_out")
