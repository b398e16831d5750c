"""The DPO's pages under ``/dpo/`` and the citizen's "Mes données". Thin: authorize, call the
service, shape the page. Anyone but staff gets 404 under ``/dpo/`` (the section is not advertised)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response, StreamingResponse

from vault.auth.dependencies import LoggedIn
from vault.auth.exceptions import AuthError, TooManyLoginAttempts
from vault.auth.federation import FederationError
from vault.auth.service import CurrentLogin
from vault.dates import parse_past_date
from vault.errors import VaultError
from vault.gdpr import audit
from vault.gdpr.models import CHANNELS, REQUEST_KINDS, STATUSES, Tombstone
from vault.gdpr.proconnect import ProConnectLogin, StaffLoggedIn
from vault.gdpr.service import GdprError, GdprService, Staff
from vault.gdpr.staff import StaffCurrent, StaffService
from vault.translation import N_
from vault.web.dependencies import Db, FormFields, redirect
from vault.web.errors import NOT_FOUND
from vault.web.pages import (
    PageError,
    clear_cookie,
    client_address,
    get_cookie,
    render,
    rotate_csrf,
    set_cookie,
)
from vault.web.relay import relay
from vault.web.state import app_service, app_settings

pages = APIRouter(include_in_schema=False)
STAFF_COOKIE = "staff_session"


class NotStaff(VaultError):
    """Answered 404: the staff section does not exist for anyone else."""

    code, status = "not_found", 404
    title, message = NOT_FOUND
    link = ("/", N_("Accueil"))


def gdpr_service(request: Request) -> GdprService:
    return app_service(request, "gdpr", GdprService)


def staff_service(request: Request) -> StaffService:
    return app_service(request, "staff", StaffService)


Gdpr = Annotated[GdprService, Depends(gdpr_service)]
StaffSvc = Annotated[StaffService, Depends(staff_service)]


def current_staff(request: Request, db: Db, service: StaffSvc) -> StaffCurrent:
    current = service.resolve(db, get_cookie(request, STAFF_COOKIE))
    if current is None:
        raise NotStaff()
    request.state.staff = current
    return current


StaffUser = Annotated[StaffCurrent, Depends(current_staff)]


def _by(current: StaffCurrent) -> Staff:
    return Staff(actor=f"staff:{current.staff.id}", label=f"{current.staff.name} ({current.staff.role})")


def _require_reauth(request: Request, current: StaffCurrent) -> None:
    if not current.recently_reauthenticated:
        raise PageError(403, "Cette action demande de confirmer votre mot de passe et votre code (il y a moins de "
                             "5 minutes). Confirmez-les, puis recommencez.", title="Confirmation nécessaire")


# ---- staff login ------------------------------------------------------------------------------------------


@pages.get("/dpo/login")
def dpo_login_page(request: Request) -> Response:
    return render(request, "dpo/login.html", {"title": "Espace du délégué à la protection des données",
                                              "proconnect": _proconnect(request).enabled})


# ---- ProConnect (vault.gdpr.proconnect) ---------------------------------------------------------------------

PROCONNECT_COOKIE = "pc_otp"


def _proconnect(request: Request) -> ProConnectLogin:
    return app_service(request, "proconnect", ProConnectLogin)


def _staff_logged_in(request: Request, token: str) -> Response:
    response = redirect("/dpo/")
    settings = app_settings(request)
    set_cookie(response, settings, STAFF_COOKIE, token, samesite="strict")
    clear_cookie(response, settings, PROCONNECT_COOKIE)
    rotate_csrf(request, response)
    return response


@pages.get("/dpo/login/proconnect")
def proconnect_start(request: Request, db: Db) -> Response:
    service = _proconnect(request)
    if not service.enabled:
        raise NotStaff()  # ProConnect is not configured here
    return redirect(service.begin(db))


@pages.get("/dpo/login/proconnect/callback")
def proconnect_callback(request: Request, db: Db) -> Response:
    service = _proconnect(request)
    if not service.enabled:
        raise NotStaff()  # ProConnect is not configured here
    try:
        result = service.complete(db, params=dict(request.query_params))
    except FederationError as exc:
        db.commit()  # the state is used up even so
        exc.link = ("/dpo/login", N_("Retour à la connexion"))
        raise
    if isinstance(result, StaffLoggedIn):
        return _staff_logged_in(request, result.token)
    response = redirect("/dpo/login/proconnect/otp")
    set_cookie(response, app_settings(request), PROCONNECT_COOKIE, result.cookie, max_age=600, samesite="strict")
    return response


def _otp_page(request: Request, *, failure: str | None = None, status: int = 200) -> Response:
    return render(request, "dpo/login_otp.html", {"title": N_("Code de vérification"), "failure": failure},
                  status=status)


@pages.get("/dpo/login/proconnect/otp")
def proconnect_otp_page(request: Request, db: Db) -> Response:
    if _proconnect(request).waiting(db, get_cookie(request, PROCONNECT_COOKIE)) is None:
        raise FederationError("no ProConnect login waiting")
    return _otp_page(request)


@pages.post("/dpo/login/proconnect/otp")
def proconnect_otp(request: Request, form: FormFields, db: Db) -> Response:
    try:
        result = _proconnect(request).complete_otp(db, cookie=get_cookie(request, PROCONNECT_COOKIE),
                                                   otp=form.get("otp", ""), address=client_address(request))
    except TooManyLoginAttempts as exc:
        db.commit()
        response = _otp_page(request, failure=exc.message, status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except AuthError as exc:
        db.commit()  # the failure counts towards the throttle
        return _otp_page(request, failure=exc.message, status=401)
    return _staff_logged_in(request, result.token)


@pages.post("/dpo/login")
def dpo_login(request: Request, form: FormFields, db: Db, service: StaffSvc) -> Response:
    try:
        token = service.login(db, email=form.get("email", ""), password=form.get("password", ""),
                              otp=form.get("otp", ""), address=client_address(request))
    except AuthError as exc:
        return render(request, "dpo/login.html", {"title": "Espace du délégué à la protection des données",
                                                  "failure": exc.message}, status=401)
    response = redirect("/dpo/")
    set_cookie(response, app_settings(request), STAFF_COOKIE, token, samesite="strict")
    rotate_csrf(request, response)
    return response


@pages.post("/dpo/logout")
def dpo_logout(request: Request, form: FormFields, db: Db, service: StaffSvc) -> Response:
    service.logout(db, get_cookie(request, STAFF_COOKIE))
    response = redirect("/dpo/login")
    clear_cookie(response, app_settings(request), STAFF_COOKIE)
    return response


@pages.post("/dpo/reauth")
def dpo_reauth(request: Request, form: FormFields, db: Db, service: StaffSvc, current: StaffUser) -> Response:
    try:
        service.reauthenticate(db, current, password=form.get("password", ""), otp=form.get("otp", ""),
                               address=client_address(request))
    except AuthError as exc:
        db.commit()  # the failure counts towards the throttle (the error would roll it back)
        raise PageError(429 if isinstance(exc, TooManyLoginAttempts) else 401, exc.message,
                        title="Confirmation refusée") from None
    target = form.get("next", "/dpo/")
    return redirect(target if target.startswith("/dpo/") else "/dpo/")


# ---- the register ------------------------------------------------------------------------------------------


@pages.get("/dpo/")
def dpo_home(request: Request, db: Db, gdpr: Gdpr, current: StaffUser) -> Response:
    return render(request, "dpo/home.html", {
        "title": "Registre des demandes", "overdue": gdpr.list_requests(db, view="overdue"),
        "week": gdpr.list_requests(db, view="week"), "all": gdpr.list_requests(db, view="all"),
        "kinds": REQUEST_KINDS, "channels": CHANNELS, "statuses": STATUSES, "staff": current.staff,
        "today": app_settings(request).today()})


@pages.get("/dpo/requests.csv")
def dpo_csv(db: Db, gdpr: Gdpr, current: StaffUser) -> Response:
    audit.record(db, actor=_by(current).actor, action="register.exported")
    return StreamingResponse(gdpr.register_csv(db), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="registre-rgpd.csv"'})


@pages.post("/dpo/requests")
def dpo_open_request(request: Request, form: FormFields, db: Db, gdpr: Gdpr, current: StaffUser) -> Response:
    try:
        citizen_id = uuid.UUID(form.get("citizen_id", "").strip())
        received = (parse_past_date(form["received_on"], today=app_settings(request).today())
                    if form.get("received_on") else None)
    except (ValueError, KeyError):
        raise PageError(400, "Identifiant du citoyen ou date de réception invalide.") from None
    try:
        created = gdpr.open_request(db, kind=form.get("kind", ""), citizen_id=citizen_id,
                                    channel=form.get("channel", ""), by=_by(current), received_on=received,
                                    identity_check=form.get("identity_check", ""))
    except GdprError as exc:
        raise PageError(exc.status, exc.message) from None
    return redirect(f"/dpo/requests/{created.id}")


@pages.get("/dpo/requests/{request_id}")
def dpo_request(request: Request, request_id: uuid.UUID, db: Db, gdpr: Gdpr, current: StaffUser) -> Response:
    try:
        item = gdpr.get_request(db, request_id)
    except GdprError as exc:
        raise PageError(404, exc.message) from None
    tombstone = db.get(Tombstone, item.subject)
    citizen = gdpr.accounts.get_citizen(db=db, citizen_id=item.citizen_id) if item.citizen_id else None
    return render(request, "dpo/request.html", {
        "title": "Demande", "item": item, "kinds": REQUEST_KINDS, "channels": CHANNELS, "statuses": STATUSES,
        "tombstone": tombstone, "citizen": citizen, "reauth_ok": current.recently_reauthenticated, "staff": current.staff})


@pages.post("/dpo/requests/{request_id}/{action}")
def dpo_request_action(request: Request, request_id: uuid.UUID, action: str, form: FormFields, db: Db, gdpr: Gdpr,
                       current: StaffUser) -> Response:
    by = _by(current)
    try:
        item = gdpr.get_request(db, request_id)
        if action == "extend":
            today = app_settings(request).today()
            gdpr.extend(db, request_id=request_id, reason=form.get("reason", ""),
                        told_on=parse_past_date(form.get("told_on", "") or today.isoformat(), today=today), by=by)
        elif action == "close":
            gdpr.close(db, request_id=request_id, status=form.get("status", ""), outcome=form.get("outcome", ""),
                       refusal_reason=form.get("refusal_reason", ""), by=by)
        elif action == "rectify":
            gdpr.rectify(db, citizen_id=gdpr.request_citizen(db, item), reason=form.get("reason", ""), by=by,
                         changes={k: v for k, v in form.items() if k in ("given_name", "family_name", "birthdate",
                                                                         "gender", "birthplace", "birthcountry",
                                                                         "preferred_username") and v})
        elif action == "erase":
            _require_reauth(request, current)
            if item.kind != "erasure":  # irreversible: only from an erasure request
                raise GdprError("Cette demande n'est pas une demande d'effacement.")
            # Also finishes an erasure interrupted after the person's rows were gone (store down).
            certificate = gdpr.erase_for_request(db, request=item, reason=form.get("reason", "") or "demande", by=by)
            gdpr.close(db, request_id=request_id, status="done", by=by,
                       outcome=f"Effacement effectué ; certificat : {certificate[:24]}…")
        else:
            raise PageError(404, "Action inconnue.")
    except ValueError:
        raise PageError(400, "Une date n'est pas valide (JJ/MM/AAAA).") from None
    except GdprError as exc:
        raise PageError(exc.status, exc.message) from None
    return redirect(f"/dpo/requests/{request_id}")


@pages.get("/dpo/requests/{request_id}/export")
def dpo_export(request: Request, request_id: uuid.UUID, db: Db, gdpr: Gdpr, current: StaffUser) -> Response:
    _require_reauth(request, current)
    try:
        item = gdpr.get_request(db, request_id)
        chunks = gdpr.export(db, citizen_id=gdpr.request_citizen(db, item), by=_by(current))
    except GdprError as exc:
        raise PageError(exc.status, exc.message) from None
    db.commit()  # the audit entry lands before the (long) download starts
    return StreamingResponse(relay(chunks), media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="donnees-{request_id}.zip"'})


# ---- the citizen: "Mes données" ------------------------------------------------------------------------------


def _subject_by(gdpr: GdprService, db: Db, citizen_id: uuid.UUID) -> Staff:
    return Staff(actor=f"subject:{gdpr.subject(db, citizen_id)}", label="la personne elle-même (en ligne)")


MY_DATA_NOTICES = {
    "erasure": N_("Votre demande d'effacement est enregistrée : le délégué à la protection des données vous "
                  "répondra sous un mois."),
    "rectification": N_("Votre demande de rectification est enregistrée : le délégué à la protection des données "
                        "vous répondra sous un mois."),
}


def _my_data_page(request: Request, db: Db, gdpr: GdprService, current: CurrentLogin, *,
                  errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
                  status: int = 200) -> Response:
    pending = [r for r in gdpr.list_requests(db, view="open") if r.citizen_id == current.citizen.id]
    return render(request, "my_data.html", {"title": N_("Mes données"), "pending": pending, "kinds": REQUEST_KINDS,
                                            "statuses": STATUSES, "errors": errors or {}, "values": values or {},
                                            "notice": MY_DATA_NOTICES.get(request.query_params.get("notice", ""))},
                  status=status)


@pages.get("/account/data")
def my_data(request: Request, db: Db, gdpr: Gdpr, current: LoggedIn) -> Response:
    return _my_data_page(request, db, gdpr, current)


@pages.post("/account/data/export")
def my_data_export(request: Request, form: FormFields, db: Db, gdpr: Gdpr, current: LoggedIn) -> Response:
    by = _subject_by(gdpr, db, current.citizen.id)
    item = gdpr.open_request(db, kind="access", citizen_id=current.citizen.id, channel="online", by=by,
                             identity_check="connexion à l'espace citoyen")
    chunks = gdpr.export(db, citizen_id=current.citizen.id, by=by)
    gdpr.close(db, request_id=item.id, status="done", outcome="Archive téléchargée par la personne.", by=by)
    db.commit()
    return StreamingResponse(relay(chunks), media_type="application/zip",
                             headers={"Content-Disposition": 'attachment; filename="mes-donnees.zip"'})


@pages.post("/account/data/rectification")
def my_data_rectification(request: Request, form: FormFields, db: Db, gdpr: Gdpr, current: LoggedIn) -> Response:
    """A rectification request (GDPR Art. 16) in the person's own words, to the register: the DPO
    checks and applies it (an identity from FranceConnect is corrected at the civil registry)."""
    text = " ".join(form.get("details", "").split())
    if not text or len(text) > 800:  # below the 1000 characters any form field may hold
        message = (N_("Dites ce qui est inexact et quelle est la bonne information.") if not text
                   else N_("Votre demande ne doit pas dépasser 800 caractères."))
        return _my_data_page(request, db, gdpr, current, errors={"details": message}, status=400,
                             values={"details": form.get("details", "")[:4000]})
    gdpr.open_request(db, kind="rectification", citizen_id=current.citizen.id, channel="online",
                      by=_subject_by(gdpr, db, current.citizen.id), identity_check="connexion à l'espace citoyen",
                      details=text)
    return redirect("/account/data?notice=rectification")


@pages.post("/account/data/erasure")
def my_data_erasure(request: Request, form: FormFields, db: Db, gdpr: Gdpr, current: LoggedIn) -> Response:
    if form.get("confirm") != "yes":
        raise PageError(400, "Cochez la case pour confirmer votre demande d'effacement.")
    pending = [r for r in gdpr.list_requests(db, view="open")
               if r.citizen_id == current.citizen.id and r.kind == "erasure"]
    if not pending:
        gdpr.open_request(db, kind="erasure", citizen_id=current.citizen.id, channel="online",
                          by=_subject_by(gdpr, db, current.citizen.id), identity_check="connexion à l'espace citoyen")
    return redirect("/account/data?notice=erasure")
