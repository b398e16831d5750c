"""Account pages (HTML forms) and ``/api/v1/me``. Thin: parse, call the service, shape the answer."""

from __future__ import annotations

import time
from typing import Annotated, Any, Protocol
from urllib.parse import quote

import segno
from fastapi import APIRouter, Request
from sqlmodel import Session
from starlette.responses import Response

from vault import geo
from vault.auth.dependencies import (
    SESSION_COOKIE,
    Accounts,
    ApiUnauthenticated,
    LoggedIn,
    OptionalLogin,
    SteppedUp,
    alert_switches,
    pending_apps,
    stepped_up,
)
from vault.auth.exceptions import (
    AuthError,
    EmailNotVerified,
    InvalidInput,
    InvalidLink,
    TooManyLoginAttempts,
)
from vault.auth.identity import resolve_birthplace
from vault.auth.models import CitizenPublic
from vault.auth.passkeys import PasskeyService
from vault.auth.service import NO_SECOND_FACTOR, AccountService, CurrentLogin
from vault.translation import N_
from vault.web.dependencies import Db, FormFields, redirect
from vault.web.errors import StepUpRequired
from vault.web.openapi import SESSION, api_errors
from vault.web.pages import (
    clear_cookie,
    client_address,
    get_cookie,
    language,
    message_page,
    notice_key,
    render,
    rotate_csrf,
    set_cookie,
)
from vault.web.state import app_service, app_settings

router = APIRouter()
api = APIRouter(prefix="/api/v1", tags=["account"])

PENDING_PREFIX = "/authorize/continue/"

# Notices shown after a redirect: only these fixed texts, never text taken from the URL.
NOTICES = {
    "email_verified": N_("Votre adresse e-mail est confirmée. Vous pouvez maintenant vous connecter."),
    "logged_out": N_("Vous êtes déconnecté(e)."),
    "logged_out_everywhere": N_("Vous êtes déconnecté(e) de tous vos appareils. Les applications et services en "
                                "ligne où vous vous étiez connecté(e) avec votre compte n'y ont plus accès : ils vous "
                                "demanderont de vous reconnecter."),
    "password_reset": N_("Votre mot de passe a été changé. Par sécurité, tous vos appareils ont été déconnectés, "
                         "ainsi que les applications et services en ligne où vous vous étiez connecté(e) avec votre "
                         "compte : connectez-vous avec le nouveau mot de passe."),
    "totp_disabled": N_("La double authentification est désactivée."),
    "session_expired": N_("Votre session a expiré. Connectez-vous de nouveau."),
    "alerts_saved": N_("Vos choix d'alertes sont enregistrés."),
    "password_changed": N_("Votre mot de passe est changé. Vos autres appareils ont été déconnectés."),
    "email_change_sent": N_("Un lien de confirmation est parti vers la nouvelle adresse. Votre compte garde l'ancienne "
                            "tant qu'il n'est pas ouvert."),
    "email_changed": N_("Votre nouvelle adresse e-mail est confirmée : c'est désormais celle de votre compte."),
    "passkey_added": N_("Votre clé d'accès est enregistrée. Vous pourrez l'utiliser à votre prochaine connexion."),
    "passkey_removed": N_("La clé d'accès est supprimée de votre compte."),
    "account_activated_confirm": N_("Votre mot de passe est enregistré. Ouvrez le lien que nous venons d'envoyer à "
                                    "votre adresse e-mail pour la confirmer, puis connectez-vous."),
    "account_activated": N_("Votre mot de passe est enregistré : votre compte est prêt. Connectez-vous maintenant avec "
                            "votre identifiant et ce mot de passe."),
}
MAIL_SENT = (
    N_("Si un compte correspond à cette adresse, un e-mail vient de lui être envoyé. "
       "Pensez à regarder dans les courriers indésirables.")
)


def passkeys_usable(request: Request) -> bool:
    """Whether this address of the service can offer passkeys (browsers refuse an IP address as RP ID)."""
    return app_service(request, "passkeys", PasskeyService).rp.usable


def safe_next(value: str | None) -> str:
    """Only a local path: never an absolute URL, ``//host``, a backslash or control character trick
    (no open redirect)."""
    # Browsers drop tabs and newlines from a URL ("/\t/host" becomes "//host"): no control character.
    if (value and value.startswith("/") and not value.startswith("//") and len(value) < 2000
            and not any(char == "\\" or ord(char) < 0x20 or ord(char) == 0x7F for char in value)):
        return value
    return "/account"


def _values(form: dict[str, str]) -> dict[str, str]:
    """Form values echoed back into the page: never a password or a code."""
    return {k: v for k, v in form.items() if k not in ("password", "otp", "token")}


# ---- home ----------------------------------------------------------------------------------------


@router.get("/", include_in_schema=False)
def home(request: Request, current: OptionalLogin) -> Response:
    return render(request, "home.html", {"notice": NOTICES.get(notice_key(request))})


# ---- registration and email verification -----------------------------------------------------------


def _register_page(request: Request, *, errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
                   status: int = 200) -> Response:
    """The form; with the communes to choose from when the typed birthplace names several."""
    values = _values(form or {"birthcountry": geo.FRANCE})
    choices: list[geo.Commune] = []
    if errors and errors.get("birthplace") and values.get("birthcountry") == geo.FRANCE:
        choices = resolve_birthplace(values.get("birthplace", "")).choices
    return render(request, "register.html", {
        "title": N_("Créer un compte"), "franceconnect": _franceconnect_enabled(request), "errors": errors or {},
        "values": values, "countries": geo.countries(language(request)), "birthplace_choices": choices}, status=status)


@router.get("/register", include_in_schema=False)
def register_page(request: Request, current: OptionalLogin) -> Response:
    return _register_page(request)


def _not_before(request: Request, db: Session, started: float) -> None:
    """Commit, then wait until ``VAULT_MAIL_REQUEST_MIN_MS`` have passed since ``started``: the pages
    that mail someone answer in the same time whether an account exists (the work of both paths is
    alike already; this hides what is left, the commit included)."""
    db.commit()
    remaining = app_settings(request).mail_request_min_ms / 1000 - (time.perf_counter() - started)
    if remaining > 0:
        time.sleep(remaining)


@router.post("/register", include_in_schema=False)
def register(request: Request, form: FormFields, db: Db, service: Accounts) -> Response:
    started = time.perf_counter()
    try:
        service.register(db=db, form=form, address=client_address(request))
    except InvalidInput as exc:
        db.rollback()
        return _register_page(request, errors=exc.fields, form=form, status=400)
    _not_before(request, db, started)
    return message_page(
        request,
        title=N_("Vérifiez votre boîte mail"),
        message=N_("Nous venons d'envoyer un e-mail à l'adresse indiquée. Ouvrez le lien qu'il contient pour "
                   "activer votre compte. Pensez à regarder dans les courriers indésirables."),
    )


@router.get("/verify-email", include_in_schema=False)
def verify_email_page(request: Request, db: Db, service: Accounts, token: str = "") -> Response:
    # GET only shows a button: mail scanners that open links must not consume them.
    try:
        service.check_link(db=db, token=token, purpose="verify_email")
    except InvalidLink as exc:
        return message_page(request, title=N_("Lien expiré"), message=exc.message, status=400,
                            link=("/verify-email/resend", N_("Recevoir un nouveau lien")))
    return render(request, "confirm_link.html", {"title": N_("Confirmer mon adresse e-mail"), "token": token,
                                                  "action": "/verify-email", "submit": N_("Confirmer mon adresse e-mail")})


@router.post("/verify-email", include_in_schema=False)
def verify_email(request: Request, form: FormFields, db: Db, service: Accounts) -> Response:
    try:
        service.verify_email(db=db, token=form.get("token", ""))
    except InvalidLink as exc:
        return message_page(request, title=N_("Lien expiré"), message=exc.message, status=400,
                            link=("/verify-email/resend", N_("Recevoir un nouveau lien")))
    return redirect("/login?notice=email_verified")


# Two pages ask only for an email and mail a link; they answer the same whether an account exists.
EMAIL_FORMS = {
    "/verify-email/resend": {
        "title": N_("Recevoir un nouveau lien de confirmation"),
        "intro": N_("Indiquez l'adresse e-mail de votre compte : nous vous enverrons un nouveau lien."),
    },
    "/password/forgot": {
        "title": N_("Mot de passe oublié"),
        "intro": N_("Indiquez l'adresse e-mail de votre compte : nous vous enverrons un lien pour choisir "
                    "un nouveau mot de passe. Il sera valable 30 minutes."),
    },
}


def _email_form(request: Request, *, errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
                status: int = 200) -> Response:
    action = request.url.path
    return render(request, "email_form.html", {**EMAIL_FORMS[action], "action": action, "submit": N_("Envoyer le lien"),
                                               "errors": errors or {}, "values": values or {}}, status=status)


class _LinkSender(Protocol):
    """A service method that mails a link to an address if it has an account (and says nothing)."""

    def __call__(self, *, db: Session, email: str, address: str) -> None: ...


def _email_form_post(request: Request, form: dict[str, str], db: Session, send: _LinkSender) -> Response:
    """The same answer whether an account exists, and whether the limits let the mail go (the mail
    is queued: it never leaves during the request)."""
    started = time.perf_counter()
    try:
        send(db=db, email=form.get("email", ""), address=client_address(request))
    except InvalidInput as exc:
        return _email_form(request, errors=exc.fields, values=_values(form), status=400)
    _not_before(request, db, started)
    return message_page(request, title=N_("Vérifiez votre boîte mail"), message=MAIL_SENT)


@router.get("/verify-email/resend", include_in_schema=False)
def resend_page(request: Request, current: OptionalLogin) -> Response:
    return _email_form(request)


@router.post("/verify-email/resend", include_in_schema=False)
def resend(request: Request, form: FormFields, db: Db, service: Accounts) -> Response:
    return _email_form_post(request, form, db, service.resend_verification)


# ---- password reset ------------------------------------------------------------------------------


@router.get("/password/forgot", include_in_schema=False)
def forgot_page(request: Request, current: OptionalLogin) -> Response:
    return _email_form(request)


@router.post("/password/forgot", include_in_schema=False)
def forgot(request: Request, form: FormFields, db: Db, service: Accounts) -> Response:
    return _email_form_post(request, form, db, service.request_password_reset)


def _reset_expired(request: Request, message: str) -> Response:
    return message_page(request, title=N_("Lien expiré"), message=message, status=400,
                        link=("/password/forgot", N_("Demander un nouveau lien")))


def _reset_page(request: Request, token: str, *, second_factor: bool, errors: dict[str, str] | None = None,
                failure: str | None = None, status: int = 200) -> Response:
    return render(request, "password_reset.html", {
        "title": N_("Choisir un nouveau mot de passe"), "token": token, "errors": errors or {}, "failure": failure,
        "second_factor": second_factor, "no_second_factor": NO_SECOND_FACTOR}, status=status)


@router.get("/password/reset", include_in_schema=False)
def reset_page(request: Request, db: Db, service: Accounts, token: str = "") -> Response:
    try:
        citizen = service.check_link(db=db, token=token, purpose="reset_password")
    except InvalidLink as exc:
        return _reset_expired(request, exc.message)
    return _reset_page(request, token, second_factor=citizen.totp_enabled_at is not None)


@router.post("/password/reset", include_in_schema=False)
def reset(request: Request, form: FormFields, db: Db, service: Accounts) -> Response:
    token = form.get("token", "")
    try:
        service.reset_password(db=db, token=token, password=form.get("password", ""), otp=form.get("otp", ""),
                               address=client_address(request))
    except InvalidLink as exc:
        return _reset_expired(request, exc.message)
    except TooManyLoginAttempts as exc:
        response = _reset_page(request, token, second_factor=True, failure=exc.message, status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except InvalidInput as exc:
        db.commit()  # a wrong code counts towards the throttle; nothing else was written
        second_factor = service.check_link(db=db, token=token, purpose="reset_password").totp_enabled_at is not None
        return _reset_page(request, token, second_factor=second_factor, errors=exc.fields, status=400)
    response = redirect("/login?notice=password_reset")
    clear_cookie(response, app_settings(request), SESSION_COOKIE)
    return response


# ---- login / logout --------------------------------------------------------------------------------


def _login_page(request: Request, db: Session, *, failure: str | None = None, errors: dict[str, str] | None = None,
                values: dict[str, str] | None = None, status: int = 200) -> Response:
    next_path = safe_next(request.query_params.get("next") or (values or {}).get("next"))
    app_name = None
    if next_path.startswith(PENDING_PREFIX):  # logging in for an app: say which one
        app_name = pending_apps(request).pending_client_name(db=db, pending_id=next_path[len(PENDING_PREFIX):])
    if values is None and (hint := request.query_params.get("login_hint")):
        values = {"email": hint[:254]}
    return render(request, "login.html", {
        "title": N_("Se connecter"), "failure": failure, "errors": errors or {}, "values": values or {},
        "notice": NOTICES.get(notice_key(request)), "next": next_path, "app_name": app_name,
        "franceconnect": _franceconnect_enabled(request),
        "passkeys": passkeys_usable(request),
    }, status=status)


def _franceconnect_enabled(request: Request) -> bool:
    return bool(app_settings(request).franceconnect_issuer and app_settings(request).franceconnect_client_id)


@router.get("/login", include_in_schema=False)
def login_page(request: Request, db: Db, current: OptionalLogin) -> Response:
    return _login_page(request, db)


def _logged_in(request: Request, token: str, next_path: str) -> Response:
    response = redirect(safe_next(next_path))
    set_cookie(response, app_settings(request), SESSION_COOKIE, token)
    rotate_csrf(request, response)
    return response


@router.post("/login", include_in_schema=False)
def login(request: Request, form: FormFields, db: Db, service: Accounts) -> Response:
    values = _values(form)
    if not form.get("email") or not form.get("password"):
        errors = {k: m for k, m in (("email", "Indiquez votre adresse e-mail."),
                                    ("password", "Indiquez votre mot de passe.")) if not form.get(k)}
        return _login_page(request, db, errors=errors, values=values, status=400)
    # The old session (if any) ends here: a login always opens a new session id.
    service.logout(db=db, token=get_cookie(request, SESSION_COOKIE))
    try:
        result = service.login(db=db, email=form["email"], password=form["password"], otp=form.get("otp"),
                               address=client_address(request), user_agent=request.headers.get("user-agent", ""))
    except TooManyLoginAttempts as exc:
        response = _login_page(request, db, failure=exc.message, values=values, status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except EmailNotVerified as exc:
        return _login_page(request, db, failure=exc.message, values=values, status=403)
    except AuthError as exc:  # wrong credentials or wrong OTP: failures are recorded, then committed
        return _login_page(request, db, failure=exc.message, values=values, status=401)
    next_path = form.get("next", "")
    if result.mfa_pending:
        response = redirect("/login/otp" + (f"?next={quote(next_path)}" if next_path == safe_next(next_path) else ""))
        set_cookie(response, app_settings(request), SESSION_COOKIE, result.token)
        return response
    return _logged_in(request, result.token, next_path)


@router.get("/login/otp", include_in_schema=False)
def otp_page(request: Request) -> Response:
    if not get_cookie(request, SESSION_COOKIE):
        return redirect("/login")
    return render(request, "login_otp.html", {"title": N_("Code de vérification"),
                                              "next": safe_next(request.query_params.get("next"))})


@router.post("/login/otp", include_in_schema=False)
def login_otp(request: Request, form: FormFields, db: Db, service: Accounts) -> Response:
    pending = get_cookie(request, SESSION_COOKIE) or ""
    try:
        result = service.complete_mfa(db=db, pending_token=pending, otp=form.get("otp", ""),
                                      address=client_address(request),
                                      user_agent=request.headers.get("user-agent", ""))
    except InvalidLink as exc:
        return _login_page(request, db, failure=exc.message, status=400)
    except TooManyLoginAttempts as exc:
        response = render(request, "login_otp.html", {"title": N_("Code de vérification"), "failure": exc.message},
                          status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except AuthError as exc:
        return render(request, "login_otp.html", {"title": N_("Code de vérification"), "errors": {"otp": exc.message}},
                      status=401)
    return _logged_in(request, result.token, form.get("next", ""))


@router.post("/logout/everywhere", include_in_schema=False)
def logout_everywhere(request: Request, form: FormFields, db: Db, service: Accounts, current: LoggedIn) -> Response:
    service.logout_everywhere(db=db, citizen_id=current.citizen.id)
    response = redirect("/?notice=logged_out_everywhere")
    clear_cookie(response, app_settings(request), SESSION_COOKIE)
    rotate_csrf(request, response)
    return response


# ---- account and TOTP ------------------------------------------------------------------------------


@router.get("/account", include_in_schema=False)
def account(request: Request, db: Db, service: Accounts, current: LoggedIn) -> Response:
    return render(request, "account.html", {
        "title": N_("Mon compte"),
        "sessions": service.list_sessions(db=db, citizen_id=current.citizen.id),
        "recovery_left": service.remaining_recovery_codes(db=db, citizen_id=current.citizen.id),
        "alerts": alert_switches(request).switches(db=db, citizen_id=current.citizen.id),
        "passkeys": service.list_passkeys(db=db, citizen_id=current.citizen.id),
        "passkeys_usable": passkeys_usable(request),
        "notice": NOTICES.get(notice_key(request)),
    })


def _totp_page(request: Request, service: AccountService, db: Session, current: CurrentLogin, *,
               errors: dict[str, str] | None = None, status: int = 200) -> Response:
    ctx: dict[str, Any] = {"title": N_("Double authentification"), "errors": errors or {}}
    if current.citizen.totp_enabled_at is None:
        pending = service.pending_totp(citizen=current.citizen)
        secret, uri = pending or service.begin_totp(citizen=current.citizen)
        # Grouped by four for typing by hand; authenticator apps ignore the spaces.
        ctx.update(secret=" ".join(secret[i:i + 4] for i in range(0, len(secret), 4)),
                   qr_data_uri=segno.make(uri, error="m").svg_data_uri(scale=5, border=2))
    return render(request, "totp.html", ctx, status=status)


def _password_page(request: Request, *, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    return render(request, "password_change.html", {"title": N_("Changer mon mot de passe"), "errors": errors or {}},
                  status=status)


@router.get("/account/password", include_in_schema=False)
def password_change_page(request: Request, current: LoggedIn) -> Response:
    return _password_page(request)


@router.post("/account/password", include_in_schema=False)
def password_change(request: Request, form: FormFields, db: Db, service: Accounts, current: LoggedIn) -> Response:
    try:
        service.change_password(db=db, current=current, password=form.get("password", ""),
                                new_password=form.get("new_password", ""), address=client_address(request))
    except TooManyLoginAttempts as exc:
        db.commit()
        response = _password_page(request, errors={"password": exc.message}, status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except InvalidInput as exc:
        db.commit()  # a wrong current password counts towards the throttle
        return _password_page(request, errors=exc.fields, status=400)
    service.stepped_up(current)  # the current password, typed just now
    return redirect("/account?notice=password_changed")


def _email_page(request: Request, *, errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
                status: int = 200, ask_password: bool = True) -> Response:
    return render(request, "email_change.html", {"title": N_("Changer mon adresse e-mail"), "errors": errors or {},
                                                 "values": values or {}, "ask_password": ask_password}, status=status)


def _proof_without_password(current: CurrentLogin) -> bool:
    """A session opened through FranceConnect (whose account's password, made at random, nobody
    knows) changes the address after a recent proof of identity instead of the password: the
    confirmation page, which offers FranceConnect again."""
    if current.citizen.password_hash is not None and current.login_session.federation != "franceconnect":
        return False
    if not current.stepped_up:
        raise StepUpRequired("/account/email")
    return True


@router.get("/account/email", include_in_schema=False)
def email_change_page(request: Request, current: LoggedIn) -> Response:
    return _email_page(request, ask_password=not _proof_without_password(current))


@router.post("/account/email", include_in_schema=False)
def email_change(request: Request, form: FormFields, db: Db, service: Accounts, current: LoggedIn) -> Response:
    values = {"new_email": form.get("new_email", "")}
    proven = _proof_without_password(current)
    try:
        service.request_email_change(db=db, current=current, password=form.get("password", ""),
                                     new_email=form.get("new_email", ""), address=client_address(request),
                                     proven=proven)
    except TooManyLoginAttempts as exc:
        db.commit()
        response = _email_page(request, errors={"password": exc.message}, values=values, status=429,
                               ask_password=not proven)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except InvalidInput as exc:
        db.commit()  # a wrong current password counts towards the throttle
        return _email_page(request, errors=exc.fields, values=values, status=400, ask_password=not proven)
    if not proven:
        service.stepped_up(current)  # the current password, typed just now
    return redirect("/account?notice=email_change_sent")


@router.get("/account/email/confirm", include_in_schema=False)
def email_change_confirm_page(request: Request, db: Db, service: Accounts, token: str = "") -> Response:
    # GET only shows a button: mail scanners that open links must not consume them.
    try:
        service.check_link(db=db, token=token, purpose="change_email")
    except InvalidLink as exc:
        return message_page(request, title=N_("Lien expiré"), message=exc.message, status=400)
    return render(request, "confirm_link.html", {"title": N_("Confirmer ma nouvelle adresse e-mail"), "token": token,
                                                  "action": "/account/email/confirm",
                                                  "submit": N_("Confirmer ma nouvelle adresse e-mail")})


@router.post("/account/email/confirm", include_in_schema=False)
def email_change_confirm(request: Request, form: FormFields, db: Db, service: Accounts) -> Response:
    try:
        service.confirm_email_change(db=db, token=form.get("token", ""))
    except InvalidLink as exc:
        return message_page(request, title=N_("Lien expiré"), message=exc.message, status=400)
    return redirect("/account?notice=email_changed")


# The TOTP pages show the seed and the recovery codes, and turn the second factor on or off: each
# needs a recent proof (a stolen session alone must not be able to lock the owner out).
TotpSteppedUp = Annotated[CurrentLogin, stepped_up("/account/totp")]


@router.get("/account/totp", include_in_schema=False)
def totp_page(request: Request, db: Db, service: Accounts, current: SteppedUp) -> Response:
    return _totp_page(request, service, db, current)


@router.post("/account/totp", include_in_schema=False)
def totp_confirm(request: Request, form: FormFields, db: Db, service: Accounts, current: TotpSteppedUp) -> Response:
    try:
        codes = service.confirm_totp(db=db, citizen=current.citizen, code=form.get("otp", ""))
    except InvalidInput as exc:
        return _totp_page(request, service, db, current, errors=exc.fields, status=400)
    return render(request, "totp.html", {"title": N_("Double authentification"), "recovery_codes": codes})


@router.post("/account/totp/recovery-codes", include_in_schema=False)
def totp_new_codes(request: Request, form: FormFields, db: Db, service: Accounts, current: TotpSteppedUp) -> Response:
    if current.citizen.totp_enabled_at is None:
        return redirect("/account/totp")
    codes = service.regenerate_recovery_codes(db=db, citizen=current.citizen)
    return render(request, "totp.html", {"title": N_("Double authentification"), "recovery_codes": codes})


@router.post("/account/totp/disable", include_in_schema=False)
def totp_disable(request: Request, form: FormFields, db: Db, service: Accounts, current: TotpSteppedUp) -> Response:
    service.disable_totp(db=db, citizen=current.citizen)
    return redirect("/account?notice=totp_disabled")


# ---- the confirmation page (step-up) ---------------------------------------------------------------------


def _confirm_page(request: Request, db: Session, service: AccountService, current: CurrentLogin, next_path: str, *,
                  errors: dict[str, str] | None = None, failure: str | None = None, status: int = 200) -> Response:
    citizen = current.citizen
    # A login through FranceConnect is a fresh proof too: offered to a session opened so (its account's
    # password was made at random) or an account without one; it comes back to ``next_path`` confirmed.
    franceconnect = _franceconnect_enabled(request) and (citizen.password_hash is None
                                                         or current.login_session.federation == "franceconnect")
    return render(request, "confirm_identity.html", {
        "title": N_("Confirmez que c'est bien vous"), "next": next_path, "errors": errors or {}, "failure": failure,
        "totp": citizen.totp_enabled_at is not None, "has_password": citizen.password_hash is not None,
        "franceconnect": franceconnect,
        "passkeys": passkeys_usable(request) and bool(service.list_passkeys(db=db, citizen_id=citizen.id)),
    }, status=status)


@router.get("/account/confirm", include_in_schema=False)
def confirm_page(request: Request, db: Db, service: Accounts, current: LoggedIn) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    if current.stepped_up:  # already confirmed (a second tab, the back button)
        return redirect(next_path)
    return _confirm_page(request, db, service, current, next_path)


@router.post("/account/confirm", include_in_schema=False)
def confirm(request: Request, form: FormFields, db: Db, service: Accounts, current: LoggedIn) -> Response:
    next_path = safe_next(form.get("next"))
    try:
        service.step_up(db=db, current=current, password=form.get("password", ""), otp=form.get("otp", ""),
                        address=client_address(request))
    except TooManyLoginAttempts as exc:
        response = _confirm_page(request, db, service, current, next_path, failure=exc.message, status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except InvalidInput as exc:
        db.commit()  # the failure counts towards the throttle
        return _confirm_page(request, db, service, current, next_path, errors=exc.fields, status=400)
    return redirect(next_path)


# ---- API -----------------------------------------------------------------------------------------------


@api.get("/me", operation_id="me", response_model=CitizenPublic, responses=api_errors(400, 401, 503),
         openapi_extra={"security": SESSION})
def me(current: OptionalLogin) -> CitizenPublic:
    """The logged-in citizen's account (session cookie)."""
    if current is None:
        raise ApiUnauthenticated()
    return CitizenPublic.of(current.citizen)
