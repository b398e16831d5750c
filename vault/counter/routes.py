"""The counter agents' pages under ``/agent/``. Thin: authorize, call the services, shape the page.
Anyone but a counter agent gets 404 here (the section is not advertised), except ``/agent/stats``,
which is the administrators'."""

from __future__ import annotations

import uuid
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from vault import geo
from vault.auth.dependencies import LoggedIn
from vault.auth.exceptions import InvalidInput, TooManyLoginAttempts
from vault.auth.identity import resolve_birthplace
from vault.auth.models import Citizen
from vault.counter.enrolment import (
    SIGNED_UNCHECKED,
    TOTP_OFF_PER_DAY,
    BadActivationCode,
    EnrolmentService,
    Letter,
    SamePerson,
    identity_check,
)
from vault.counter.letter import LetterText, letter_pdf, letter_text
from vault.counter.models import DURATIONS, IDENTITY_DOCUMENTS, PROCEDURES, CounterEnrolment, Mandate
from vault.counter.service import CounterService, MandateChoice, is_active, mandate_end, read_choice
from vault.dates import parse_past_date
from vault.db import utcnow
from vault.gdpr import audit
from vault.gdpr.routes import INVALID_DATE, Gdpr, NotStaff, StaffSvc, any_staff
from vault.gdpr.staff import StaffCurrent
from vault.storage.exceptions import StorageError
from vault.storage.models import DOCUMENT_TYPES
from vault.storage.routes import receive_document, serve_content
from vault.translation import N_
from vault.web.dependencies import Db, FormFields, redirect
from vault.web.i18n import translations
from vault.web.pages import (
    PageError,
    client_address,
    form_values,
    get_cookie,
    language,
    message_page,
    notice_key,
    render,
)
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
            # Which criteria, how many answers: never what was typed.
            audit.record(db, actor=f"staff:{current.staff.id}", action="counter.search", details={
                "criteria": [k.removeprefix("q_") for k, v in typed.items() if v], "results": len(matches),
                "service": current.staff.service or ""})
    return render(request, "counter/home.html", {
        "title": N_("Accueil du guichet"), "staff": current.staff, "matches": matches,
        "errors": errors, "values": typed}, status=400 if errors else 200)


@pages.get("/agent/citizens/{citizen_id}")
def agent_citizen(request: Request, citizen_id: uuid.UUID, db: Db, counter: Counter, current: AgentUser) -> Response:
    """A citizen's file at the counter: who they are, how their account was opened, this counter's
    mandates. What an agent may do for them needs a mandate (each section checks it)."""
    citizen = counter.citizen(db, citizen_id)
    service = current.staff.service or ""
    audit.record(db, actor=f"staff:{current.staff.id}", action="counter.file_viewed",
                 target=f"subject:{counter.gdpr.subject(db, citizen.id)}", details={"service": service})
    mandates = counter.mandates_of(db, citizen.id, service=service)
    enrolments = app_service(request, "enrolments", EnrolmentService)
    enrolment = db.get(CounterEnrolment, citizen.id)
    return render(request, "counter/citizen.html", {
        "title": N_("Dossier au guichet"), "staff": current.staff, "citizen": citizen,
        "enrolment": enrolment, "letter_offered": citizen.password_hash is None,
        "totp_on": citizen.totp_enabled_at is not None,
        # Letters and signed mandates (accounts without a password) are the opening service's only.
        "enrolling": enrolment is not None and enrolment.service == service,
        "first_letter": enrolments.first_letter_covered(db, agent=current.staff, citizen=citizen),
        "live_letter": enrolments.live_letter(db, citizen.id),
        "active": [m for m in mandates if is_active(m)], "past": [m for m in mandates if not is_active(m)],
        "procedures": PROCEDURES, "durations": DURATIONS, "identity_documents": IDENTITY_DOCUMENTS,
        "errors": {}, "values": {}, "notice": FILE_NOTICES.get(notice_key(request))})


# ---- mandates: granting, ending (the agent, at the citizen's request) ------------------------------------------

FILE_NOTICES = {
    "granted": N_("Le mandat est enregistré. La personne en a reçu la confirmation par e-mail si elle a une adresse."),
    "ended": N_("Le mandat a pris fin : votre guichet ne peut plus agir pour cette personne avec lui."),
    "opened_email": N_("Le compte est ouvert. Un e-mail vient de partir vers son adresse : la personne y trouvera "
                       "un lien, valable 7 jours, pour choisir son mot de passe."),
    "totp_off": N_("La double authentification est désactivée et la personne est déconnectée partout. Elle se "
                   "connecte maintenant avec son seul mot de passe ; si elle l'a oublié, elle en choisit un nouveau "
                   "avec « Mot de passe oublié » : aucun code ne lui sera demandé."),
    "opened_letter": N_("Le compte est ouvert. Imprimez maintenant sa lettre d'activation et remettez-la à la "
                        "personne."),
}
NEED_PASSWORD = N_("Ce compte n'a pas encore de mot de passe : faites signer le mandat imprimé.")
HAS_PASSWORD = N_("Ce compte a un mot de passe : la personne confirme le mandat en le saisissant.")


def _choice_values(request: Request, form: dict[str, str] | None = None) -> tuple[list[str], str]:
    """What the agent ticked, as sent (from the form, else the query): procedures, duration."""
    if form is not None:
        return form_values(request, "procedures"), form.get("duration", "")
    return request.query_params.getlist("procedures"), request.query_params.get("duration", "")


def _grant_page(request: Request, citizen: Citizen, current: StaffCurrent, *, errors: dict[str, str] | None = None,
                values: tuple[list[str], str] = ([], ""), status: int = 200) -> Response:
    return render(request, "counter/mandate_new.html", {
        "title": N_("Donner un mandat"), "staff": current.staff, "citizen": citizen, "procedures": PROCEDURES,
        "durations": DURATIONS, "errors": errors or {},
        "choice": {"procedures": values[0], "duration": values[1]}}, status=status)


def _mandate_page(request: Request, template: str, title: str, citizen: Citizen, current: StaffCurrent,
                  choice: MandateChoice, counter: CounterService, *, errors: dict[str, str] | None = None,
                  values: dict[str, str] | None = None, status: int = 200) -> Response:
    """The confirmation by the citizen, the mandate to print, the signed scan's form: the same text."""
    return render(request, template, {
        "title": title, "staff": current.staff, "citizen": citizen, "choice": choice, "procedures": PROCEDURES,
        "durations": DURATIONS, "service": current.staff.service or "", "errors": errors or {},
        "values": values or {}, "identity_documents": IDENTITY_DOCUMENTS,
        "ends_at": counter.local(mandate_end(choice.duration, utcnow())), "today": counter.local(utcnow()),
        "max_mb": counter.documents.settings.max_file_mb}, status=status)


@pages.get("/agent/citizens/{citizen_id}/mandates/new")
def mandate_new_page(request: Request, citizen_id: uuid.UUID, db: Db, counter: Counter, current: AgentUser) -> Response:
    return _grant_page(request, counter.citizen(db, citizen_id), current)


@pages.post("/agent/citizens/{citizen_id}/mandates/new")
def mandate_new(request: Request, citizen_id: uuid.UUID, form: FormFields, db: Db, counter: Counter,
                current: AgentUser) -> Response:
    """The agent's choice, checked; then the citizen confirms: with their password, or by signing
    the printed mandate when their account has none yet."""
    citizen = counter.citizen(db, citizen_id)
    try:
        choice = read_choice(form_values(request, "procedures"), form.get("duration", ""))
    except InvalidInput as exc:
        return _grant_page(request, citizen, current, errors=exc.fields, values=_choice_values(request, form),
                           status=400)
    if citizen.password_hash is None:
        _enrolments(request).enrolling_service(db, agent=current.staff, citizen=citizen, what="mandate_signed")
        return _mandate_page(request, "counter/mandate_sign.html", N_("Faire signer le mandat"), citizen, current,
                             choice, counter)
    return _mandate_page(request, "counter/mandate_confirm.html", N_("Confirmation par la personne"), citizen,
                         current, choice, counter)


@pages.post("/agent/citizens/{citizen_id}/mandates/confirm")
def mandate_confirm(request: Request, citizen_id: uuid.UUID, form: FormFields, db: Db, counter: Counter,
                    current: AgentUser) -> Response:
    citizen = counter.citizen(db, citizen_id)
    try:
        choice = read_choice(form_values(request, "procedures"), form.get("duration", ""))
    except InvalidInput as exc:
        return _grant_page(request, citizen, current, errors=exc.fields, values=_choice_values(request, form),
                           status=400)
    if citizen.password_hash is None:
        raise PageError(400, NEED_PASSWORD)
    page = ("counter/mandate_confirm.html", N_("Confirmation par la personne"))
    try:
        counter.grant_with_password(db, agent=current.staff, citizen=citizen, choice=choice,
                                    password=form.get("password", ""), otp=form.get("otp", ""),
                                    address=client_address(request))
    except TooManyLoginAttempts as exc:
        response = _mandate_page(request, *page, citizen, current, choice, counter, errors={"password": exc.message},
                                 status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except InvalidInput as exc:  # a wrong password or code: counted and audited (committed by the service)
        return _mandate_page(request, *page, citizen, current, choice, counter, errors=exc.fields, status=400)
    return redirect(f"/agent/citizens/{citizen.id}?notice=granted")


def _enrolments(request: Request) -> EnrolmentService:
    return app_service(request, "enrolments", EnrolmentService)


@pages.get("/agent/citizens/{citizen_id}/mandates/print")
def mandate_print(request: Request, citizen_id: uuid.UUID, db: Db, counter: Counter, current: AgentUser) -> Response:
    """The mandate to print and have signed (accounts without a password)."""
    citizen = counter.citizen(db, citizen_id)
    values = _choice_values(request)
    try:
        choice = read_choice(*values)
    except InvalidInput as exc:
        return _grant_page(request, citizen, current, errors=exc.fields, values=values, status=400)
    if citizen.password_hash is None:
        _enrolments(request).enrolling_service(db, agent=current.staff, citizen=citizen, what="mandate_signed")
    return _mandate_page(request, "counter/mandate_print.html", N_("Mandat à signer"), citizen, current, choice,
                         counter)


@pages.post("/agent/citizens/{citizen_id}/mandates/signed")
async def mandate_signed(request: Request, citizen_id: uuid.UUID, db: Db, counter: Counter,
                         current: AgentUser) -> Response:
    """"Enregistrer le mandat signé": the scan goes into the citizen's vault (type "mandate",
    encrypted, scanned by the antivirus), then the mandate is granted with it. The choice comes in
    the query (what was printed) and is checked again before a byte of the file is read. Only the
    service that opened the account, the agent attesting (fields before the file) the identity
    document checked and the person present, signing in front of them."""
    citizen = await run_in_threadpool(counter.citizen, db, citizen_id)
    values = _choice_values(request)
    try:
        choice = read_choice(*values)
    except InvalidInput as exc:
        return _grant_page(request, citizen, current, errors=exc.fields, values=values, status=400)
    if citizen.password_hash is not None:
        raise PageError(400, HAS_PASSWORD)
    await run_in_threadpool(lambda: _enrolments(request).enrolling_service(
        db, agent=current.staff, citizen=citizen, what="mandate_signed"))
    attested: dict[str, str] = {}

    def check_attestation(fields: dict[str, str]) -> None:  # the fields before the file, before it is stored
        attested.update({k: fields.get(k, "") for k in ("document_kind", "checked")})
        attested["kind"] = identity_check(fields, unchecked=SIGNED_UNCHECKED)

    try:
        document = await receive_document(request, db, counter.documents, counter.actor(current.staff, citizen.id),
                                          csrf_cookie=get_cookie(request, "csrf") or "", check_fields=check_attestation)
    except InvalidInput as exc:
        refused = exc.fields
        return await run_in_threadpool(lambda: _mandate_page(
            request, "counter/mandate_sign.html", N_("Faire signer le mandat"), citizen, current, choice, counter,
            errors=refused, values=attested, status=400))
    except StorageError as exc:
        errors, status = exc.fields or {"file": exc.message}, exc.status
        if "type" in errors or "title" in errors or "valid_until" in errors:
            errors = {"file": exc.message}
        return await run_in_threadpool(lambda: _mandate_page(
            request, "counter/mandate_sign.html", N_("Faire signer le mandat"), citizen, current, choice, counter,
            errors=errors, values=attested, status=status))

    def grant() -> None:
        document.type = "mandate"  # whatever the form said: this file is the signed mandate
        counter.grant(db, agent=current.staff, citizen=citizen, choice=choice, granted_with="signature",
                      signed_document_id=document.id, document_kind=attested["kind"])

    await run_in_threadpool(grant)
    return redirect(f"/agent/citizens/{citizen.id}?notice=granted")


@pages.post("/agent/citizens/{citizen_id}/mandates/{mandate_id}/end")
def mandate_end_by_agent(request: Request, citizen_id: uuid.UUID, mandate_id: uuid.UUID, form: FormFields, db: Db,
                         counter: Counter, current: AgentUser) -> Response:
    """The citizen, present, asks the agent to end a mandate of this counter."""
    citizen = counter.citizen(db, citizen_id)
    if form.get("asked") != "yes":
        raise PageError(400, N_("Cochez la case qui dit que la personne vous demande de mettre fin au mandat."))
    counter.end(db, citizen_id=citizen.id, mandate_id=mandate_id, by="agent", agent=current.staff)
    return redirect(f"/agent/citizens/{citizen.id}?notice=ended")


# ---- acting under a mandate: the citizen's documents ------------------------------------------------------------

DOCUMENT_NOTICES = {"added": N_("Le document a été ajouté au coffre-fort de la personne.")}


def _procedure(request: Request) -> str:
    procedure = request.query_params.get("procedure", "")
    if procedure not in PROCEDURES:
        raise PageError(400, N_("Choisissez la démarche pour laquelle vous agissez."),
                        title=N_("Démarche à préciser"))
    return procedure


def _documents_page(request: Request, db: Db, counter: CounterService, current: StaffCurrent, citizen: Citizen,
                    mandate: Mandate, procedure: str, *, errors: dict[str, str] | None = None,
                    status: int = 200) -> Response:
    documents = counter.documents.documents_of(db, citizen.id)
    documents.sort(key=lambda d: d.created_at, reverse=True)
    return render(request, "counter/documents.html", {
        "title": N_("Documents de la personne"), "staff": current.staff, "citizen": citizen, "mandate": mandate,
        "procedure": procedure, "procedures": PROCEDURES, "documents": documents,
        "types": {kind: label for kind, label in DOCUMENT_TYPES.items() if kind != "mandate"},
        "errors": errors or {}, "max_mb": counter.documents.settings.max_file_mb,
        "notice": DOCUMENT_NOTICES.get(notice_key(request))}, status=status)


@pages.get("/agent/citizens/{citizen_id}/documents")
def agent_documents(request: Request, citizen_id: uuid.UUID, db: Db, counter: Counter, current: AgentUser) -> Response:
    """The citizen's documents, under a mandate covering the procedure the agent is working on."""
    citizen = counter.citizen(db, citizen_id)
    procedure = _procedure(request)
    mandate = counter.require_mandate(db, current.staff, citizen.id, procedure)
    counter.listed(db, mandate=mandate, agent=current.staff, procedure=procedure)
    return _documents_page(request, db, counter, current, citizen, mandate, procedure)


@pages.post("/agent/citizens/{citizen_id}/documents")
async def agent_documents_add(request: Request, citizen_id: uuid.UUID, db: Db, counter: Counter,
                              current: AgentUser) -> Response:
    """A document scanned at the counter, into the citizen's vault (the citizen's own pipeline)."""
    citizen = await run_in_threadpool(counter.citizen, db, citizen_id)
    procedure = _procedure(request)
    mandate = await run_in_threadpool(counter.require_mandate, db, current.staff, citizen.id, procedure)
    try:
        document = await receive_document(request, db, counter.documents, counter.actor(current.staff, citizen.id),
                                          csrf_cookie=get_cookie(request, "csrf") or "")
    except StorageError as exc:
        errors, status = exc.fields or {"file": exc.message}, exc.status
        return await run_in_threadpool(lambda: _documents_page(request, db, counter, current, citizen, mandate,
                                                               procedure, errors=errors, status=status))
    await run_in_threadpool(lambda: counter.record(
        db, mandate=mandate, agent=current.staff, action="document.added",
        details={"procedure": procedure, "document": str(document.id), "title": document.title, "type": document.type}))
    return redirect(f"/agent/citizens/{citizen.id}/documents?procedure={procedure}&notice=added")


@pages.get("/agent/citizens/{citizen_id}/documents/{document_id}/download")
def agent_document_download(request: Request, citizen_id: uuid.UUID, document_id: uuid.UUID, db: Db,
                            counter: Counter, current: AgentUser) -> Response:
    """A document downloaded when the procedure needs it: streamed and decrypted as the citizen's
    own download, noted in the journal and in the citizen's access log."""
    citizen = counter.citizen(db, citizen_id)
    procedure = _procedure(request)
    mandate = counter.require_mandate(db, current.staff, citizen.id, procedure)
    actor = counter.actor(current.staff, citizen.id)
    document = counter.documents.get(db, actor=actor, document_id=document_id)
    response = serve_content(request, db, counter.documents, actor, document.id)
    counter.record(db, mandate=mandate, agent=current.staff, action="document.downloaded",
                   details={"procedure": procedure, "document": str(document.id), "title": document.title,
                            "type": document.type})
    return response


# ---- the citizen: "Mes mandats" --------------------------------------------------------------------------------

MY_NOTICES = {"ended": N_("Le mandat a pris fin. Le guichet ne peut plus agir pour vous avec lui.")}


@pages.get("/account/mandates")
def my_mandates(request: Request, db: Db, counter: Counter, current: LoggedIn) -> Response:
    """The citizen's mandates (active, ended) and everything done under them."""
    mandates = counter.mandates_of(db, current.citizen.id)
    ending = request.query_params.get("end", "")
    return render(request, "mandates.html", {
        "title": N_("Mes mandats"), "active": [m for m in mandates if is_active(m)],
        "past": [m for m in mandates if not is_active(m)], "journal": counter.journal_with_names(db, current.citizen.id),
        "by_id": {m.id: m for m in mandates}, "procedures": PROCEDURES, "durations": DURATIONS, "ending": ending,
        "notice": MY_NOTICES.get(notice_key(request))})


@pages.post("/account/mandates/{mandate_id}/end")
def my_mandate_end(request: Request, mandate_id: uuid.UUID, form: FormFields, db: Db, counter: Counter,
                   current: LoggedIn) -> Response:
    counter.end(db, citizen_id=current.citizen.id, mandate_id=mandate_id, by="citizen")
    return redirect("/account/mandates?notice=ended")


# ---- accounts opened at the counter ----------------------------------------------------------------

def enrolment_service(request: Request) -> EnrolmentService:
    return app_service(request, "enrolments", EnrolmentService)


Enrolments = Annotated[EnrolmentService, Depends(enrolment_service)]


def _account_form(request: Request, current: StaffCurrent, *, form: dict[str, str] | None = None,
                  errors: dict[str, str] | None = None, matches: list[Citizen] | None = None,
                  status: int = 200) -> Response:
    values = {k: v for k, v in (form or {"birthcountry": geo.FRANCE}).items() if k != "other_person"}
    choices: list[geo.Commune] = []
    if errors and errors.get("birthplace") and values.get("birthcountry") == geo.FRANCE:
        choices = resolve_birthplace(values.get("birthplace", "")).choices
    return render(request, "counter/account_new.html", {
        "title": N_("Ouvrir un compte"), "staff": current.staff, "errors": errors or {}, "values": values,
        "countries": geo.countries(language(request)), "birthplace_choices": choices,
        "identity_documents": IDENTITY_DOCUMENTS,
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
        letter = enrolments.print_letter(db, agent=current.staff, citizen=citizen, form=form)
    except InvalidInput as exc:
        if "letter" in exc.fields:
            raise PageError(409, exc.fields["letter"], title=N_("Pas de lettre à imprimer")) from None
        values = {k: form.get(k, "") for k in ("document_kind", "checked")}
        return render(request, "counter/letter_check.html", {
            "title": N_("Imprimer la lettre d'activation"), "staff": current.staff, "citizen": citizen,
            "identity_documents": IDENTITY_DOCUMENTS, "first_letter": False, "errors": exc.fields,
            "values": values}, status=400)
    return render(request, "counter/letter.html", {
        "title": N_("Lettre d'activation"), "staff": current.staff, "citizen": citizen, "code": letter.code,
        "letter": _letter_text(request, db, letter)})


@pages.post("/agent/citizens/{citizen_id}/letter.pdf")
def agent_letter_pdf(request: Request, citizen_id: uuid.UUID, form: FormFields, db: Db, counter: Counter,
                     enrolments: Enrolments, current: AgentUser) -> Response:
    """The PDF of the letter just printed (its code posted back from the page; see ``agent_letter``)."""
    citizen = counter.citizen(db, citizen_id)
    try:
        letter = enrolments.reprint(db, agent=current.staff, citizen=citizen, code=form.get("code", ""))
    except TooManyLoginAttempts as exc:  # answered, not raised: the refusal is committed with the request
        response = message_page(request, title=N_("Trop de tentatives"), message=exc.message, status=429,
                                link=(f"/agent/citizens/{citizen.id}", N_("Retour au dossier")))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except BadActivationCode:
        return message_page(request, title=N_("Lettre périmée"), status=409, message=N_(
            "Cette lettre n'est plus valable (une autre a été imprimée depuis, ou le code a été utilisé). "
            "Imprimez-en une nouvelle depuis le dossier."), link=(f"/agent/citizens/{citizen.id}", N_("Retour au dossier")))
    body = letter_pdf(_letter_text(request, db, letter))
    return Response(body, media_type="application/pdf", headers={
        "Cache-Control": "no-store", "Content-Disposition": 'inline; filename="lettre-activation.pdf"'})


def _letter_text(request: Request, db: Db, letter: Letter) -> LetterText:
    settings = app_settings(request)
    enrolment = db.get(CounterEnrolment, letter.citizen.id)
    opened = enrolment.checked_at if enrolment else letter.citizen.created_at
    return letter_text(letter, settings=settings, opened_on=opened.astimezone(ZoneInfo(settings.timezone)).date(),
                       gettext=translations("fr").gettext)


# ---- two-factor login turned off, the person present with an identity document ----------------------------

def _totp_page(request: Request, citizen: Citizen, current: StaffCurrent, *, errors: dict[str, str] | None = None,
               values: dict[str, str] | None = None, status: int = 200) -> Response:
    return render(request, "counter/totp_off.html", {
        "title": N_("Désactiver la double authentification"), "staff": current.staff, "citizen": citizen,
        "identity_documents": IDENTITY_DOCUMENTS, "errors": errors or {}, "values": values or {},
        "per_day": TOTP_OFF_PER_DAY, "reauth_ok": current.recently_reauthenticated}, status=status)


@pages.get("/agent/citizens/{citizen_id}/totp")
def agent_totp_page(request: Request, citizen_id: uuid.UUID, db: Db, counter: Counter, current: AgentUser) -> Response:
    """The identity check and the person's request, before turning their two-factor login off."""
    citizen = counter.citizen(db, citizen_id)
    if citizen.totp_enabled_at is None:
        return redirect(f"/agent/citizens/{citizen.id}")
    return _totp_page(request, citizen, current)


@pages.post("/agent/citizens/{citizen_id}/totp")
def agent_totp_off(request: Request, citizen_id: uuid.UUID, form: FormFields, db: Db, counter: Counter,
                   enrolments: Enrolments, current: AgentUser) -> Response:
    """Any agent, for a person present who lost both their application and their recovery codes;
    the agent's password and code confirmed less than 5 minutes ago (a session left open or stolen
    is not enough), else the page asks for them, nothing changed."""
    citizen = counter.citizen(db, citizen_id)
    if not current.recently_reauthenticated:
        return _totp_page(request, citizen, current, status=403)
    try:
        enrolments.turn_off_totp(db, agent=current.staff, citizen=citizen, form=form)
    except InvalidInput as exc:
        db.rollback()
        values = {k: form.get(k, "") for k in ("document_kind", "checked", "asked")}
        return _totp_page(request, citizen, current, errors=exc.fields, values=values, status=400)
    return redirect(f"/agent/citizens/{citizen.id}?notice=totp_off")
