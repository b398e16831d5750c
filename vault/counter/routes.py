"""The counter agents' pages under ``/agent/``. Thin: authorize, call the services, shape the page.
Anyone but a counter agent gets 404 here (the section is not advertised), except ``/agent/stats``,
which is the administrators'."""

from __future__ import annotations

import uuid
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from vault import geo
from vault.auth.exceptions import InvalidInput
from vault.auth.identity import resolve_birthplace
from vault.auth.models import Citizen
from vault.counter.enrolment import BadActivationCode, EnrolmentService, Letter, SamePerson
from vault.counter.letter import LetterText, letter_pdf, letter_text
from vault.counter.models import DURATIONS, IDENTITY_DOCUMENTS, PROCEDURES, CounterEnrolment
from vault.counter.service import CounterService, is_active
from vault.dates import parse_past_date
from vault.gdpr.routes import INVALID_DATE, Gdpr, NotStaff, StaffSvc, any_staff
from vault.gdpr.staff import StaffCurrent
from vault.mail import MailError
from vault.translation import N_
from vault.web.dependencies import Db, FormFields, redirect
from vault.web.i18n import translations
from vault.web.pages import PageError, render
from vault.web.state import app_service, app_settings

pages = APIRouter(include_in_schema=False)


def counter_service(request: Request) -> CounterService:
    return app_service(request, "counter", CounterService)


Counter = Annotated[CounterService, Depends(counter_service)]


def current_agent(request: Request, db: Db, service: StaffSvc) -> StaffCurrent:
    """A counter agent (with the service its mandates name); 404 for anyone else."""
    current = any_staff(request, db, service)
    if current.staff.role != "agent" or not current.staff.service:
        raise NotStaff()
    return current


def current_admin(request: Request, db: Db, service: StaffSvc) -> StaffCurrent:
    """An administrator (the city's statistics); 404 for anyone else."""
    current = any_staff(request, db, service)
    if current.staff.role != "admin":
        raise NotStaff()
    return current


AgentUser = Annotated[StaffCurrent, Depends(current_agent)]
AdminUser = Annotated[StaffCurrent, Depends(current_admin)]


@pages.get("/agent/login")
def agent_login() -> Response:
    """Agents log in on the staff login page, and land back here."""
    return redirect("/dpo/login")


@pages.get("/agent/")
def agent_home(request: Request, db: Db, gdpr: Gdpr, current: AgentUser) -> Response:
    """Find a citizen by name, birth date or email (every criterion given must match)."""
    params = request.query_params
    typed = {k: params.get(k, "").strip()[:200] for k in ("q_name", "q_birthdate", "q_email")}
    errors: dict[str, str] = {}
    matches = None
    if any(typed.values()):
        birthdate = None
        if typed["q_birthdate"]:
            try:
                birthdate = parse_past_date(typed["q_birthdate"], today=app_settings(request).today())
            except ValueError:
                errors["q_birthdate"] = INVALID_DATE
        if not errors:
            matches = gdpr.search_citizens(db, name=typed["q_name"], birthdate=birthdate, email=typed["q_email"])
    return render(request, "counter/home.html", {
        "title": N_("Accueil du guichet"), "staff": current.staff, "matches": matches,
        "errors": errors, "values": typed}, status=400 if errors else 200)


@pages.get("/agent/citizens/{citizen_id}")
def agent_citizen(request: Request, citizen_id: uuid.UUID, db: Db, counter: Counter, current: AgentUser) -> Response:
    """A citizen's file at the counter: who they are, how their account was opened, this counter's
    mandates. What an agent may do for them needs a mandate (each section checks it)."""
    citizen = counter.citizen(db, citizen_id)
    service = current.staff.service or ""
    mandates = counter.mandates_of(db, citizen.id, service=service)
    return render(request, "counter/citizen.html", {
        "title": N_("Dossier au guichet"), "staff": current.staff, "citizen": citizen,
        "enrolment": db.get(CounterEnrolment, citizen.id),
        "notice": FILE_NOTICES.get(request.query_params.get("notice", "")),
        "letter_offered": citizen.password_hash is None,
        "live_letter": app_service(request, "enrolments", EnrolmentService).live_letter(db, citizen.id),
        "active": [m for m in mandates if is_active(m)], "past": [m for m in mandates if not is_active(m)],
        "procedures": PROCEDURES, "durations": DURATIONS, "identity_documents": IDENTITY_DOCUMENTS})


# ---- accounts opened at the counter ----------------------------------------------------------------

def enrolment_service(request: Request) -> EnrolmentService:
    return app_service(request, "enrolments", EnrolmentService)


Enrolments = Annotated[EnrolmentService, Depends(enrolment_service)]

# Notices on the citizen's file after a redirect: fixed texts only, never text from the URL.
FILE_NOTICES = {
    "opened_email": N_("Le compte est ouvert. Un e-mail vient de partir vers son adresse : la personne y trouvera "
                       "un lien, valable 7 jours, pour choisir son mot de passe."),
    "opened_letter": N_("Le compte est ouvert. Imprimez maintenant sa lettre d'activation et remettez-la à la "
                        "personne."),
}


def _account_form(request: Request, current: StaffCurrent, *, form: dict[str, str] | None = None,
                  errors: dict[str, str] | None = None, matches: list[Citizen] | None = None,
                  status: int = 200) -> Response:
    values = {k: v for k, v in (form or {"birthcountry": geo.FRANCE}).items() if k != "other_person"}
    choices: list[geo.Commune] = []
    if errors and errors.get("birthplace") and values.get("birthcountry") == geo.FRANCE:
        choices = resolve_birthplace(values.get("birthplace", "")).choices
    return render(request, "counter/account_new.html", {
        "title": N_("Ouvrir un compte"), "staff": current.staff, "errors": errors or {}, "values": values,
        "countries": geo.countries(), "birthplace_choices": choices, "identity_documents": IDENTITY_DOCUMENTS,
        "matches": matches or []}, status=status)


@pages.get("/agent/accounts/new")
def agent_account_form(request: Request, current: AgentUser) -> Response:
    """Open an account for a person present, after checking an identity document."""
    return _account_form(request, current)


@pages.post("/agent/accounts/new")
def agent_account_open(request: Request, form: FormFields, db: Db, enrolments: Enrolments,
                       current: AgentUser) -> Response:
    try:
        citizen = enrolments.open_account(db, agent=current.staff, form=form)
    except InvalidInput as exc:
        db.rollback()
        return _account_form(request, current, form=form, errors=exc.fields, status=400)
    except SamePerson as exc:
        db.rollback()
        return _account_form(request, current, form=form, matches=exc.matches, status=409)
    except MailError:
        db.rollback()
        raise PageError(503, N_("L'e-mail n'a pas pu partir : le compte n'est pas ouvert. Réessayez dans quelques "
                                "minutes, ou ouvrez-le sans adresse e-mail (avec une lettre d'activation).")) from None
    return redirect(f"/agent/citizens/{citizen.id}?notice={'opened_email' if citizen.email else 'opened_letter'}")


@pages.post("/agent/citizens/{citizen_id}/letter")
def agent_letter(request: Request, citizen_id: uuid.UUID, form: FormFields, db: Db, counter: Counter,
                 enrolments: Enrolments, current: AgentUser) -> Response:
    """Print the activation letter: a new one-time code (the previous letter's stops working).

    The code exists in clear only in this answer: the page shows it, and its "PDF" button posts it
    back to ``letter.pdf``, which checks it against the stored hash before drawing the same letter.
    So the page and the PDF of one printing carry the same code, and a reprint (a new POST here)
    voids both. The code is never logged, never stored in clear, never in a URL."""
    citizen = counter.citizen(db, citizen_id)
    try:
        letter = enrolments.print_letter(db, agent=current.staff, citizen=citizen)
    except InvalidInput as exc:
        raise PageError(409, exc.fields["letter"], title=N_("Pas de lettre à imprimer")) from None
    return render(request, "counter/letter.html", {
        "title": N_("Lettre d'activation"), "staff": current.staff, "citizen": citizen, "code": letter.code,
        "letter": _letter_text(request, db, letter)})


@pages.post("/agent/citizens/{citizen_id}/letter.pdf")
def agent_letter_pdf(request: Request, citizen_id: uuid.UUID, form: FormFields, db: Db, counter: Counter,
                     enrolments: Enrolments, current: AgentUser) -> Response:
    """The PDF of the letter just printed (its code posted back from the page; see ``agent_letter``)."""
    citizen = counter.citizen(db, citizen_id)
    try:
        letter = enrolments.reprint(db, citizen=citizen, code=form.get("code", ""))
    except BadActivationCode:
        raise PageError(409, N_("Cette lettre n'est plus valable (une autre a été imprimée depuis, ou le code a été "
                                "utilisé). Imprimez-en une nouvelle depuis le dossier."),
                        title=N_("Lettre périmée")) from None
    body = letter_pdf(_letter_text(request, db, letter))
    return Response(body, media_type="application/pdf", headers={
        "Cache-Control": "no-store", "Content-Disposition": 'inline; filename="lettre-activation.pdf"'})


def _letter_text(request: Request, db: Db, letter: Letter) -> LetterText:
    settings = app_settings(request)
    enrolment = db.get(CounterEnrolment, letter.citizen.id)
    opened = enrolment.checked_at if enrolment else letter.citizen.created_at
    return letter_text(letter, settings=settings, opened_on=opened.astimezone(ZoneInfo(settings.timezone)).date(),
                       gettext=translations("fr").gettext)
