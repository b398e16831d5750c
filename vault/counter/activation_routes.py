"""The citizen's side of an account opened at the counter: ``/activate`` (the printed letter's
code) and ``/account/activate`` (the mailed link). Thin: parse, call the services, shape the page."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from vault.auth.dependencies import Accounts
from vault.auth.exceptions import AlreadyActivated, InvalidInput, InvalidLink, TooManyLoginAttempts
from vault.counter.enrolment import BadActivationCode, EnrolmentService
from vault.translation import N_
from vault.web.dependencies import Db, FormFields, redirect
from vault.web.pages import client_address, message_page, render
from vault.web.state import app_service

router = APIRouter(include_in_schema=False)

ACTIVATE_TITLE = N_("Activer mon compte")
LINK_TITLE = N_("Choisissez votre mot de passe")


def _activate_page(request: Request, *, form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                   failure: str | None = None, status: int = 200) -> Response:
    # Echo the identifier and the address only: never the code or a password.
    values = {k: v for k, v in (form or {}).items() if k in ("login", "email")}
    return render(request, "activate.html", {"title": ACTIVATE_TITLE, "values": values, "errors": errors or {},
                                             "failure": failure}, status=status)


def _ready(login: str, *, confirm_email: bool = False) -> Response:
    """Activated: the citizen logs in with what they just chose (the identifier is filled in), once
    the address is confirmed when the account has one still unconfirmed."""
    notice = "account_activated_confirm" if confirm_email else "account_activated"
    return redirect(f"/login?notice={notice}&login_hint={quote(login.strip()[:254])}")


@router.get("/activate")
def activate_page(request: Request) -> Response:
    return _activate_page(request)


@router.post("/activate")
def activate(request: Request, form: FormFields, db: Db) -> Response:
    enrolments = app_service(request, "enrolments", EnrolmentService)
    login = form.get("login", "")
    missing = {k: m for k, m in (("login", N_("Indiquez votre identifiant (ou votre adresse e-mail).")),
                                 ("code", N_("Indiquez le code d'activation de votre lettre.")),
                                 ("password", N_("Choisissez votre mot de passe."))) if not form.get(k, "").strip()}
    if missing:
        return _activate_page(request, form=form, errors=missing, status=400)
    try:
        citizen = enrolments.activate(db, login=login, code=form.get("code", ""), password=form.get("password", ""),
                            confirmation=form.get("password_confirm", ""), email=form.get("email", ""),
                            address=client_address(request))
    except TooManyLoginAttempts as exc:
        response = _activate_page(request, form=form, failure=exc.message, status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except BadActivationCode as exc:  # the try was counted (in a transaction of its own)
        return _activate_page(request, form=form, failure=exc.message, status=400)
    except InvalidInput as exc:
        db.rollback()
        return _activate_page(request, form=form, errors=exc.fields, status=400)
    return _ready(login, confirm_email=citizen.email is not None and citizen.email_verified_at is None)


def _link_expired(request: Request, message: str) -> Response:
    return message_page(request, title=N_("Lien expiré"), message=message, status=400,
                        link=("/password/forgot", N_("Demander un nouveau lien")))


def _link_page(request: Request, token: str, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    return render(request, "password_reset.html", {
        "title": LINK_TITLE, "heading": LINK_TITLE, "action": "/account/activate", "token": token,
        "intro": N_("Votre compte a été ouvert à l'accueil de la mairie. Choisissez le mot de passe avec lequel vous "
                    "vous connecterez, avec votre adresse e-mail."),
        "errors": errors or {}}, status=status)


def _already_activated(request: Request) -> Response:
    """The account has a password already (chosen with "Mot de passe oublié", say): the link cannot
    set another; the citizen logs in, or resets it (which asks for the second factor if any)."""
    return message_page(request, title=N_("Compte déjà activé"), message=AlreadyActivated.message, status=400,
                        link=("/login", N_("Me connecter")))


@router.get("/account/activate")
def activate_link_page(request: Request, db: Db, accounts: Accounts, token: str = "") -> Response:
    # GET only shows the form: mail scanners that open links must not consume them.
    try:
        citizen = accounts.check_link(db=db, token=token, purpose="activate")
    except InvalidLink as exc:
        return _link_expired(request, exc.message)
    if citizen.password_hash is not None:
        return _already_activated(request)
    return _link_page(request, token)


@router.post("/account/activate")
def activate_link(request: Request, form: FormFields, db: Db, accounts: Accounts) -> Response:
    token = form.get("token", "")
    try:
        citizen = accounts.activate_with_link(db=db, token=token, password=form.get("password", ""))
    except InvalidLink as exc:
        return _link_expired(request, exc.message)
    except AlreadyActivated:
        return _already_activated(request)
    except InvalidInput as exc:
        db.rollback()
        return _link_page(request, token, errors=exc.fields, status=400)
    app_service(request, "enrolments", EnrolmentService).activated_by_link(db, citizen)
    return _ready(citizen.email or "")
