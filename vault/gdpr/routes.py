"""The DPO's pages under ``/dpo/`` and the citizen's "Mes données". Thin: authorize, call the
service, shape the page. Anyone but staff gets 404 under ``/dpo/`` (the section is not advertised)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response, StreamingResponse

from vault.auth.dependencies import LoggedIn, stepped_up
from vault.auth.exceptions import AuthError, TooManyLoginAttempts
from vault.auth.federation import FederationError
from vault.auth.models import Citizen
from vault.auth.service import CERTIFIED_IDENTITY, CurrentLogin
from vault.dates import parse_past_date
from vault.errors import VaultError
from vault.gdpr import audit
from vault.gdpr.models import CHANNELS, REQUEST_KINDS, STATUSES, DataRequest, Tombstone
from vault.gdpr.proconnect import ProConnectLogin, StaffLoggedIn
from vault.gdpr.service import GdprError, GdprService, Staff, SubjectErased, certificate_claims
from vault.gdpr.staff import StaffCurrent, StaffService
from vault.oidc.delegation import ASSISTED_COOKIE, STAFF_COOKIE
from vault.translation import N_, Message
from vault.web.dependencies import Db, FormFields, redirect
from vault.web.errors import NOT_FOUND
from vault.web.pages import (
    PageError,
    clear_cookie,
    client_address,
    get_cookie,
    notice_key,
    render,
    rotate_csrf,
    set_cookie,
)
from vault.web.relay import relay
from vault.web.state import app_service, app_settings

pages = APIRouter(include_in_schema=False)


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


def any_staff(request: Request, db: Db, service: StaffSvc) -> StaffCurrent:
    """Whoever of the staff is logged in (logging out, re-authenticating); 404 for anyone else."""
    current = service.resolve(db, get_cookie(request, STAFF_COOKIE))
    if current is None:
        raise NotStaff()
    request.state.staff = current
    # The staff header, plain strings (an error page renders after the database session closed).
    request.state.staff_name = current.staff.name
    request.state.staff_role = ROLES.get(current.staff.role, current.staff.role)
    request.state.staff_role_key = current.staff.role
    request.state.staff_service = current.staff.service or ""
    return current


def current_staff(request: Request, db: Db, service: StaffSvc) -> StaffCurrent:
    """The DPO: the register, exports, erasures, legal holds. Administrators (staff accounts, apps,
    statistics) and counter agents never see them."""
    current = any_staff(request, db, service)
    if current.staff.role != "dpo":
        raise NotStaff()
    return current


AnyStaff = Annotated[StaffCurrent, Depends(any_staff)]
StaffUser = Annotated[StaffCurrent, Depends(current_staff)]


def staff_home(staff_role: str) -> str:
    """Where a staff member lands after logging in: agents at the counter, administrators at the
    statistics, the DPO at the register."""
    return {"agent": "/agent/", "admin": "/agent/stats"}.get(staff_role, "/dpo/")


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


def _staff_logged_in(request: Request, db: Db, token: str) -> Response:
    current = staff_service(request).resolve(db, token)
    response = redirect(staff_home(current.staff.role if current else "dpo"))
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
        return _staff_logged_in(request, db, result.token)
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
    return _staff_logged_in(request, db, result.token)


@pages.post("/dpo/login")
def dpo_login(request: Request, form: FormFields, db: Db, service: StaffSvc) -> Response:
    try:
        token = service.login(db, email=form.get("email", ""), password=form.get("password", ""),
                              otp=form.get("otp", ""), address=client_address(request))
    except AuthError as exc:  # counted already (in a transaction of its own), whatever this one becomes
        response = render(request, "dpo/login.html", {"title": "Espace du délégué à la protection des données",
                                                      "failure": exc.message}, status=exc.status)
        response.headers.update(exc.headers)  # a lock's Retry-After
        return response
    return _staff_logged_in(request, db, token)


@pages.post("/dpo/logout")
def dpo_logout(request: Request, form: FormFields, db: Db, service: StaffSvc) -> Response:
    service.logout(db, get_cookie(request, STAFF_COOKIE))  # an agent's assisted sessions end with it
    response = redirect("/dpo/login")
    clear_cookie(response, app_settings(request), STAFF_COOKIE)
    clear_cookie(response, app_settings(request), ASSISTED_COOKIE)
    return response


@pages.post("/dpo/reauth")
def dpo_reauth(request: Request, form: FormFields, db: Db, service: StaffSvc, current: AnyStaff) -> Response:
    try:
        service.reauthenticate(db, current, password=form.get("password", ""), otp=form.get("otp", ""),
                               address=client_address(request))
    except TooManyLoginAttempts:
        raise  # 429 with Retry-After; the lock was met before anything was checked
    except AuthError as exc:  # the try was counted in a transaction of its own
        raise PageError(401, exc.message, title="Confirmation refusée") from None
    home = staff_home(current.staff.role)
    target = form.get("next", home)
    return redirect(target if target.startswith(home) else home)


# ---- the register ------------------------------------------------------------------------------------------

ROLES = {"dpo": N_("Délégué(e) à la protection des données"), "admin": N_("Administrateur ou administratrice"),
         "agent": N_("Agent d'accueil")}
IDENTITY_LABELS = {"given_name": N_("Prénom(s)"), "family_name": N_("Nom de naissance"),
                   "preferred_username": N_("Nom d'usage"), "birthdate": N_("Date de naissance"),
                   "gender": N_("Sexe"), "birthplace": N_("Commune de naissance (code INSEE)"),
                   "birthcountry": N_("Pays de naissance (code INSEE)")}
RECTIFIABLE = ("given_name", "family_name", "preferred_username", "birthdate", "birthplace", "birthcountry")
# Each form of the request's page names its fields with a prefix (one page, several forms, unique ids);
# an error that names no field goes to the form's first field.
FORMS = {"extend": ("reason", "told_on"), "close": ("status", "outcome", "refusal_reason"),
         "rectify": (*RECTIFIABLE, "reason", "identity"), "hold": ("document_id", "reason"), "erase": ("reason", "irreversible")}
INVALID_DATE = N_("Date non valide : écrivez-la JJ/MM/AAAA, et pas dans le futur.")


def _shown(value: object) -> str:
    """An identity value as the DPO reads it (dates as JJ/MM/AAAA)."""
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    return str(value or "")


def _search(request: Request, db: Db, gdpr: GdprService) -> tuple[dict[str, str], list[Citizen] | None, dict[str, str]]:
    """The register's "find the person" form (a GET): (what was typed, the matches or None, errors)."""
    params = request.query_params
    typed = {k: params.get(k, "").strip()[:200] for k in ("q_name", "q_birthdate", "q_email")}
    if not any(typed.values()):
        return typed, None, {}
    birthdate = None
    if typed["q_birthdate"]:
        try:
            birthdate = parse_past_date(typed["q_birthdate"], today=app_settings(request).today())
        except ValueError:
            return typed, None, {"q_birthdate": INVALID_DATE}
    return typed, gdpr.search_citizens(db, name=typed["q_name"], birthdate=birthdate, email=typed["q_email"]), {}


def _home(request: Request, db: Db, gdpr: GdprService, current: StaffCurrent, *, errors: dict[str, str] | None = None,
          values: dict[str, str] | None = None, chosen: Citizen | None = None, status: int = 200) -> Response:
    typed, matches, search_errors = _search(request, db, gdpr)
    if chosen is not None:
        matches = [chosen]
    return render(request, "dpo/home.html", {
        "title": N_("Registre des demandes"), "overdue": gdpr.list_requests(db, view="overdue"),
        "week": gdpr.list_requests(db, view="week"), "all": gdpr.list_requests(db, view="all"),
        "kinds": REQUEST_KINDS, "channels": CHANNELS, "statuses": STATUSES, "staff": current.staff,
        "today": app_settings(request).today(), "search": typed, "matches": matches,
        "errors": {**search_errors, **(errors or {})}, "values": {**typed, **(values or {})}}, status=status)


@pages.get("/dpo/")
def dpo_home(request: Request, db: Db, gdpr: Gdpr, current: StaffUser) -> Response:
    return _home(request, db, gdpr, current)


# What a broken audit log means, in the DPO's words (``audit.Verification.code``).
AUDIT_PROBLEMS = {
    "edited": N_("L'entrée %(first_bad)s a été modifiée."),
    "gap": N_("Une entrée a été supprimée, insérée ou déplacée avant l'entrée %(first_bad)s."),
    "truncated": N_("Le journal s'arrête à l'entrée %(ends_at)s alors que le point de contrôle dit %(expected)s : "
                    "les dernières entrées ont été supprimées."),
    "rewritten": N_("L'entrée %(expected)s n'est plus celle que le point de contrôle a signée : le journal a été "
                    "réécrit."),
    "keyed_start": N_("Le début de la partie scellée du journal a été déplacé."),
    "key": N_("La clé du journal d'audit manque ou ne s'ouvre pas : le journal ne peut pas être vérifié."),
    "checkpoint": N_("Le dernier point de contrôle est illisible, mal signé ou hors d'atteinte : le journal ne peut "
                     "pas être vérifié."),
}


@pages.get("/dpo/audit")
def dpo_audit(request: Request, db: Db, current: StaffUser) -> Response:
    """The audit log's verdict, as ``vault audit verify`` gives it."""
    result = audit.verify(db)
    problem = None
    if not result.ok:
        problem = Message(AUDIT_PROBLEMS.get(result.code or "", AUDIT_PROBLEMS["edited"]),
                          first_bad=result.first_bad_id or "?", ends_at=result.ends_at or 0,
                          expected=result.expected or "?")
    return render(request, "dpo/audit.html", {"title": N_("Journal d'audit"), "result": result, "problem": problem},
                  status=200)


@pages.get("/dpo/requests.csv")
def dpo_csv(db: Db, gdpr: Gdpr, current: StaffUser) -> Response:
    audit.record(db, actor=_by(current).actor, action="register.exported")
    return StreamingResponse(gdpr.register_csv(db), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="registre-rgpd.csv"'})


@pages.post("/dpo/requests")
def dpo_open_request(request: Request, form: FormFields, db: Db, gdpr: Gdpr, current: StaffUser) -> Response:
    """Register a request for the person picked in the search (``citizen_id``) or, for operators,
    typed as an identifier (``citizen_uuid``). A mistake re-shows the form as typed."""
    values = {k: form.get(k, "") for k in ("kind", "citizen_id", "citizen_uuid", "channel", "received_on",
                                           "identity_check")}
    errors: dict[str, str] = {}
    citizen_id: uuid.UUID | None = None
    raw = (values["citizen_id"] or values["citizen_uuid"]).strip()
    if not raw:
        errors["citizen_id"] = N_("Cherchez la personne concernée, puis choisissez-la dans la liste.")
    else:
        try:
            citizen_id = uuid.UUID(raw)
        except ValueError:
            errors["citizen_uuid"] = N_("Cet identifiant n'est pas valide (il ressemble à "
                                        "3f2c9a1e-5b7d-4c1a-9e2f-0a1b2c3d4e5f).")
    received = None
    if values["received_on"]:
        try:
            received = parse_past_date(values["received_on"], today=app_settings(request).today())
        except ValueError:
            errors["received_on"] = INVALID_DATE
    chosen = None
    if citizen_id is not None:
        try:
            chosen = gdpr.find_citizen(db, citizen_id)
        except GdprError as exc:
            errors["citizen_uuid" if values["citizen_uuid"] and not values["citizen_id"] else "citizen_id"] = exc.message
    if not errors and citizen_id is not None:
        try:
            created = gdpr.open_request(db, kind=values["kind"], citizen_id=citizen_id, channel=values["channel"],
                                        by=_by(current), received_on=received,
                                        identity_check=values["identity_check"])
        except GdprError as exc:
            errors.update(exc.fields or {"kind": exc.message})
        else:
            return redirect(f"/dpo/requests/{created.id}")
    return _home(request, db, gdpr, current, errors=errors, values=values, chosen=chosen, status=400)


def _request_page(request: Request, db: Db, gdpr: GdprService, current: StaffCurrent, item: DataRequest, *,
                  errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
                  status: int = 200) -> Response:
    tombstone = db.get(Tombstone, item.subject)
    citizen = gdpr.accounts.get_citizen(db=db, citizen_id=item.citizen_id)
    certificate = tombstone.certificate if tombstone is not None and tombstone.completed_at else None
    documents = gdpr.documents.documents_of(db, citizen.id) if citizen is not None else []
    notice = {"rectified": N_("L'identité a été rectifiée."),
              "held": N_("Le document est maintenant sous conservation légale."),
              "erasing": N_("La personne est effacée : plus rien ne peut agir en son nom et sa clé est détruite. "
                            "Ses fichiers sont supprimés du stockage en arrière-plan ; le certificat apparaîtra "
                            "ici ensuite, et la demande sera close.")}.get(
        notice_key(request))
    return render(request, "dpo/request.html", {
        "title": N_("Demande"), "item": item, "kinds": REQUEST_KINDS, "channels": CHANNELS, "statuses": STATUSES,
        "tombstone": tombstone, "reauth_ok": current.recently_reauthenticated, "staff": current.staff,
        "citizen": citizen, "certified": citizen is not None and citizen.identity_certified_at is not None,
        "certified_message": CERTIFIED_IDENTITY, "current_values": {f: _shown(getattr(citizen, f)) for f in RECTIFIABLE}
        if citizen is not None else {}, "identity_labels": IDENTITY_LABELS, "rectifiable": RECTIFIABLE,
        "documents": documents, "certificate": certificate,
        "claims": _claim_rows(certificate_claims(certificate)) if certificate else [],
        "notice": notice, "errors": errors or {}, "values": values or {}}, status=status)


def _claim_rows(claims: dict[str, object], prefix: str = "") -> list[tuple[str, str]]:
    """The certificate's claims as (name, value) rows: nested objects flattened (destroyed.documents),
    lists of objects one row each."""
    rows: list[tuple[str, str]] = []
    for name, value in claims.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            rows.extend(_claim_rows(value, f"{key}."))
        elif isinstance(value, list):
            if not value:
                rows.append((key, "—"))
            for i, entry in enumerate(value, 1):
                text = ", ".join(f"{k}: {v}" for k, v in entry.items()) if isinstance(entry, dict) else str(entry)
                rows.append((f"{key} [{i}]", text))
        elif name == "iat" and isinstance(value, int):
            rows.append((key, f"{value} ({datetime.fromtimestamp(value, tz=UTC):%d/%m/%Y %H:%M:%S} UTC)"))
        else:
            rows.append((key, str(value)))
    return rows


def _item(db: Db, gdpr: GdprService, request_id: uuid.UUID) -> DataRequest:
    try:
        return gdpr.get_request(db, request_id)
    except GdprError as exc:
        raise PageError(404, exc.message) from None


@pages.get("/dpo/requests/{request_id}")
def dpo_request(request: Request, request_id: uuid.UUID, db: Db, gdpr: Gdpr, current: StaffUser) -> Response:
    return _request_page(request, db, gdpr, current, _item(db, gdpr, request_id))


@pages.get("/dpo/requests/{request_id}/certificate.jwt")
def dpo_certificate(request_id: uuid.UUID, db: Db, gdpr: Gdpr, current: StaffUser) -> Response:
    """The whole erasure certificate (a compact JWS, verifiable against /jwks), as a file."""
    item = _item(db, gdpr, request_id)
    tombstone = db.get(Tombstone, item.subject)
    if tombstone is None or tombstone.completed_at is None or not tombstone.certificate:
        raise PageError(404, N_("Cette demande n'a pas de certificat d'effacement."))
    audit.record(db, actor=_by(current).actor, action="certificate.downloaded", target=f"request:{item.id}")
    return Response(tombstone.certificate, media_type="application/jwt", headers={
        "Content-Disposition": f'attachment; filename="certificat-effacement-{item.id}.jwt"'})


def _form_errors(action: str, exc: GdprError) -> dict[str, str]:
    """The service's error on the request page's ``action`` form, keyed by the fields' ids."""
    names = FORMS[action]
    if not exc.fields:
        return {f"{action}-{names[0]}": exc.message}
    return {f"{action}-{name if name in names else names[0]}": text for name, text in exc.fields.items()}


@pages.post("/dpo/requests/{request_id}/{action}")
def dpo_request_action(request: Request, request_id: uuid.UUID, action: str, form: FormFields, db: Db, gdpr: Gdpr,
                       current: StaffUser) -> Response:
    if action not in FORMS:
        raise PageError(404, "Action inconnue.")
    if action == "erase":
        return _erase(request, request_id, form, db, gdpr, current)
    by = _by(current)
    item = _item(db, gdpr, request_id)
    values = {f"{action}-{name}": form.get(name, "") for name in FORMS[action]}
    try:
        if action == "extend":
            today = app_settings(request).today()
            try:
                told_on = parse_past_date(form.get("told_on", "") or today.isoformat(), today=today)
            except ValueError:
                raise GdprError(INVALID_DATE, field="told_on") from None
            gdpr.extend(db, request_id=request_id, reason=form.get("reason", ""), told_on=told_on, by=by)
        elif action == "close":
            gdpr.close(db, request_id=request_id, status=form.get("status", ""), outcome=form.get("outcome", ""),
                       refusal_reason=form.get("refusal_reason", ""), by=by)
        elif action == "hold":
            try:
                document_id = uuid.UUID(form.get("document_id", ""))
            except ValueError:
                raise GdprError(N_("Choisissez le document à conserver."), field="document_id") from None
            citizen_id = gdpr.request_citizen(db, item)
            if document_id not in {d.id for d in gdpr.documents.documents_of(db, citizen_id)}:
                raise GdprError(N_("Choisissez le document à conserver."), field="document_id")
            gdpr.hold(db, document_id=document_id, reason=form.get("reason", ""), by=by)
            return redirect(f"/dpo/requests/{request_id}?notice=held")
        else:  # rectify: first the changes shown, then applied once confirmed
            return _rectify(request, item, form, db, gdpr, current, values)
    except SubjectErased as exc:
        raise PageError(exc.status, exc.message) from None
    except GdprError as exc:
        db.rollback()
        return _request_page(request, db, gdpr, current, item, errors=_form_errors(action, exc), values=values,
                             status=exc.status if exc.status != 404 else 400)
    return redirect(f"/dpo/requests/{request_id}")


def _rectify(request: Request, item: DataRequest, form: dict[str, str], db: Db, gdpr: GdprService,
             current: StaffCurrent, values: dict[str, str]) -> Response:
    citizen_id = gdpr.request_citizen(db, item)
    changes = {k: form[k].strip() for k in RECTIFIABLE if form.get(k, "").strip()}
    reason = form.get("reason", "").strip()
    changed = gdpr.rectification_preview(db, citizen_id=citizen_id, changes=changes)
    if not reason:
        raise GdprError(N_("Indiquez la raison de la rectification."), field="reason")
    if not changed:
        raise GdprError(N_("Ces valeurs sont déjà celles de la personne : il n'y a rien à changer."),
                        field=(next(iter(changes)) if changes else "given_name"))
    if form.get("step") != "confirm":
        return render(request, "dpo/rectify_confirm.html", {
            "title": N_("Confirmer la rectification"), "item": item,
            "changes": [(name, _shown(old), _shown(new)) for name, old, new in changed], "kinds": REQUEST_KINDS,
            "labels": IDENTITY_LABELS, "fields": changes, "reason": reason,
            "citizen": gdpr.find_citizen(db, citizen_id)})
    gdpr.rectify(db, citizen_id=citizen_id, reason=reason, by=_by(current), changes=changes)
    return redirect(f"/dpo/requests/{item.id}?notice=rectified")


# ---- erasure: a confirmation page, then the one POST from it -----------------------------------------------


def _erase_page(request: Request, db: Db, gdpr: GdprService, current: StaffCurrent, item: DataRequest, *,
                errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
                status: int = 200) -> Response:
    try:
        preview = gdpr.erasure_preview(db, request=item)
    except GdprError as exc:
        raise PageError(exc.status, exc.message) from None
    return render(request, "dpo/erase_confirm.html", {
        "title": N_("Confirmer l'effacement définitif"), "item": item, "preview": preview, "kinds": REQUEST_KINDS,
        "reauth_ok": current.recently_reauthenticated,
        "token": gdpr.erasure_token(db, request_id=item.id, actor=_by(current).actor),
        "errors": errors or {}, "values": values or {"erase-reason": N_("Demande de la personne (art. 17)")}},
        status=status)


@pages.get("/dpo/requests/{request_id}/erase")
def dpo_erase_page(request: Request, request_id: uuid.UUID, db: Db, gdpr: Gdpr, current: StaffUser) -> Response:
    return _erase_page(request, db, gdpr, current, _item(db, gdpr, request_id))


def _erase(request: Request, request_id: uuid.UUID, form: dict[str, str], db: Db, gdpr: GdprService,
           current: StaffCurrent) -> Response:
    """Erase, from the confirmation page only: its token (this request, this staff member), the box
    "irreversible" ticked, a reason, and a re-authentication less than 5 minutes old."""
    by = _by(current)
    _require_reauth(request, current)
    item = _item(db, gdpr, request_id)
    try:
        preview = gdpr.erasure_preview(db, request=item)
    except GdprError as exc:
        raise PageError(exc.status, exc.message) from None
    values = {"erase-reason": form.get("reason", ""), "erase-irreversible": form.get("irreversible", "")}
    if not gdpr.erasure_token_ok(db, request_id=item.id, actor=by.actor, token=form.get("confirmation", "")):
        return _erase_page(request, db, gdpr, current, item, status=400, errors={
            "erase-irreversible": N_("L'effacement se confirme sur cette page : relisez ce qui sera détruit, "
                                     "puis confirmez.")})
    errors: dict[str, str] = {}
    if not preview.unfinished and form.get("irreversible") != "yes":
        errors["erase-irreversible"] = N_("Cochez la case pour confirmer que vous avez compris que l'effacement "
                                          "est définitif.")
    if not preview.unfinished and not values["erase-reason"].strip():
        errors["erase-reason"] = N_("Indiquez le motif de l'effacement.")
    if errors:
        return _erase_page(request, db, gdpr, current, item, errors=errors, values=values, status=400)
    # Also finishes an erasure interrupted after the person's rows were gone (store down). A large vault:
    # the person is gone when this returns; their objects and the certificate are left to a job.
    certificate = gdpr.erase_for_request(db, request=item, reason=values["erase-reason"] or "demande", by=by,
                                         later=True)
    if certificate is None:
        return redirect(f"/dpo/requests/{request_id}?notice=erasing")
    gdpr.close(db, request_id=request_id, status="done", by=by,
               outcome=f"Effacement effectué ; certificat signé de {len(certificate)} caractères, sur la page de "
                       "la demande.")
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


# The request was sent from a session that had just proved it was the citizen's.
RECENT_PROOF = "connexion à l'espace citoyen et preuve d'identité récente (mot de passe, code ou clé d'accès)"


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
                                            "notice": MY_DATA_NOTICES.get(notice_key(request))},
                  status=status)


@pages.get("/account/data")
def my_data(request: Request, db: Db, gdpr: Gdpr, current: LoggedIn) -> Response:
    return _my_data_page(request, db, gdpr, current)


@pages.post("/account/data/export")
def my_data_export(request: Request, form: FormFields, db: Db, gdpr: Gdpr,
                   current: Annotated[CurrentLogin, stepped_up("/account/data")]) -> Response:
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
def my_data_erasure(request: Request, form: FormFields, db: Db, gdpr: Gdpr,
                    current: Annotated[CurrentLogin, stepped_up("/account/data")]) -> Response:
    if form.get("confirm") != "yes":
        raise PageError(400, "Cochez la case pour confirmer votre demande d'effacement.")
    pending = [r for r in gdpr.list_requests(db, view="open")
               if r.citizen_id == current.citizen.id and r.kind == "erasure"]
    if not pending:
        gdpr.open_request(db, kind="erasure", citizen_id=current.citizen.id, channel="online",
                          by=_subject_by(gdpr, db, current.citizen.id), identity_check=RECENT_PROOF)
    return redirect("/account/data?notice=erasure")
