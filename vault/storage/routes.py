"""The document API and the "Mes justificatifs" pages. Thin: authorize, stream,
call the service, shape the answer."""

from __future__ import annotations

import hmac
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from email.message import Message
from typing import Annotated
from urllib.parse import quote, unquote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import JsonValue
from sqlmodel import Field, Session, SQLModel
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from vault import metrics
from vault.auth.dependencies import ApiUnauthenticated, LoggedIn, OptionalLogin, stepped_up
from vault.auth.service import CurrentLogin
from vault.crypto import DecryptionError
from vault.errors import VaultError
from vault.oidc.claims import DEPOSIT_SCOPES
from vault.oidc.documents import granted_documents
from vault.oidc.exceptions import BearerError
from vault.oidc.provider import scope_list
from vault.oidc.service import OpenIDService
from vault.storage.blobs import BlobNotFound
from vault.storage.exceptions import (
    ContentMissing,
    DocumentDamaged,
    InvalidDocumentInput,
    StorageError,
    TooLarge,
)
from vault.storage.models import (
    DOCUMENT_TYPES,
    MEDIA_TYPES,
    AccessLogPublic,
    Document,
    DocumentPublic,
)
from vault.storage.multipart import MultipartUpload
from vault.storage.service import Actor, DocumentService, download_name, validate_meta
from vault.translation import N_
from vault.web.dependencies import Db, FormFields, redirect
from vault.web.errors import StepUpRequired
from vault.web.openapi import READ, SESSION, STATUS_TEXT, WRITE, api_errors
from vault.web.pages import PageError, get_cookie, notice_key, render
from vault.web.relay import consume_in_thread, relay
from vault.web.state import app_service, app_settings

# Every API route may answer these (the NUL check, the credentials, validation, a dependency down).
api = APIRouter(prefix="/api/v1", tags=["documents"], responses=api_errors(400, 401, 403, 422, 503))
pages = APIRouter(include_in_schema=False)

RAW_HEADERS = {"type": "x-document-type", "title": "x-document-title", "valid_until": "x-document-valid-until"}

logger = logging.getLogger(__name__)


def documents(request: Request) -> DocumentService:
    return app_service(request, "documents", DocumentService)


Documents = Annotated[DocumentService, Depends(documents)]


class ApiAuthError(VaultError):
    """The API caller is not who it must be (no credentials, a bad token, a missing scope or CSRF
    header); RFC 6750's challenge goes with the token errors."""

    def __init__(self, status: int, error: str, detail: str, scope: str | None = None) -> None:
        headers = {}
        if error in ("invalid_token", "insufficient_scope", "invalid_request"):
            headers["WWW-Authenticate"] = f'Bearer error="{error}"' + (f', scope="{scope}"' if scope else "")
        super().__init__(detail, headers=headers)
        self.status, self.code = status, error


def _csrf_header_ok(request: Request) -> bool:
    cookie = get_cookie(request, "csrf") or ""
    sent = request.headers.get("x-csrf-token", "")
    return bool(cookie and sent and hmac.compare_digest(cookie.encode(), sent.encode()))


def api_actor(request: Request, db: Db, current: OptionalLogin) -> Actor:
    """An app with an access token from this provider (acting for the token's citizen), or the
    citizen's own session (CSRF header required on unsafe methods)."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        try:
            token = app_service(request, "oidc", OpenIDService).bearer(db=db, access_token=header[7:].strip())
        except BearerError as exc:
            raise ApiAuthError(exc.status, exc.error or "invalid_token", exc.description) from None
        scopes = set(scope_list(token.scope))
        depositor = bool(scopes & DEPOSIT_SCOPES)
        if request.method in ("GET", "HEAD"):  # reading: the vault, or what the app deposited
            reader = "documents:read" in scopes or token.authorization_details is not None  # RFC 9396 grant
            if not reader and not depositor:
                raise ApiAuthError(403, "insufficient_scope", "The access token lacks the 'documents:read' scope.",
                                   "documents:read")
        elif not depositor:  # depositing, and changing what it deposited
            raise ApiAuthError(403, "insufficient_scope", "The access token lacks the 'documents:deposit' scope.",
                               "documents:deposit")
        return Actor(kind="app", citizen_id=token.citizen.id, actor_id=token.app.client_id, name=token.app.name,
                     scopes=frozenset(scopes), granted=granted_documents(token.authorization_details))
    if current is None:
        raise ApiAuthError(401, "unauthenticated", "Log in (session cookie) or send an access token.")
    if request.method not in ("GET", "HEAD") and not _csrf_header_ok(request):
        raise ApiAuthError(403, "csrf", "Send the X-CSRF-Token header (the csrf cookie's value).")
    return Actor(kind="citizen", citizen_id=current.citizen.id, actor_id=str(current.citizen.id),
                 name="citizen")


ApiActor = Annotated[Actor, Depends(api_actor)]


def citizen_actor(current: LoggedIn) -> Actor:
    return Actor(kind="citizen", citizen_id=current.citizen.id, actor_id=str(current.citizen.id), name="citizen")


PageActor = Annotated[Actor, Depends(citizen_actor)]


# ---- receiving a document (shared by the API and the page) ---------------------------------------------------


async def receive_document(request: Request, db: Session, service: DocumentService, actor: Actor, *,
                           csrf_cookie: str | None = None,
                           check_fields: Callable[[dict[str, str]], None] | None = None) -> Document:
    """Stream the body through the pipeline. Multipart (a ``file`` part, fields ``type``, ``title``,
    ``valid_until``) or a raw body (its Content-Type, fields in ``X-Document-*`` headers, the name in
    ``Content-Disposition``). With ``csrf_cookie``, a ``csrf_token`` field must precede the file;
    ``check_fields`` sees the fields before the file (multipart only) and may refuse them by raising."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > service.max_size + 64 * 1024:
        raise TooLarge(service.max_size)  # refused before reading a byte
    content_type = request.headers.get("content-type", "")
    multipart = content_type.split(";")[0].strip().lower() == "multipart/form-data"
    pending = await run_in_threadpool(service.begin_upload, db, actor.citizen_id)
    pipeline = pending.pipeline
    try:
        # No transaction stays open while the body streams in (seconds, minutes): the citizen key
        # made on a first upload is committed now, and the connection goes back to the pool.
        await run_in_threadpool(db.commit)
        if multipart:
            def check_csrf(filename: str | None, fields: dict[str, str]) -> None:
                sent = fields.get("csrf_token", "")
                # Both the cookie and the field, equal: two missing tokens prove nothing.
                if csrf_cookie is not None and not (csrf_cookie and sent and hmac.compare_digest(
                        csrf_cookie.encode(), sent.encode())):
                    raise PageError(403, "Ce formulaire a expiré. Rechargez la page, puis recommencez.",
                                    title=N_("Formulaire expiré"))
                if check_fields is not None:
                    check_fields(fields)

            form = MultipartUpload(content_type, sink=pipeline.feed, on_file=check_csrf)
            await consume_in_thread(request.stream(), form.write)
            await run_in_threadpool(form.close)
            request.state.upload_fields = form.fields  # typed again into the form if it is refused
            if not form.saw_file:
                raise InvalidDocumentInput({"file": "Choisissez un fichier à ajouter."})
            fields, filename = form.fields, form.filename
        else:
            if csrf_cookie is not None:
                raise PageError(415, "Cette adresse attend un formulaire avec un fichier.")
            fields = {name: _header_text(request.headers[header]) for name, header in RAW_HEADERS.items()
                      if header in request.headers}
            filename = _filename_from_headers(request)
            await consume_in_thread(request.stream(), pipeline.feed)
        meta = validate_meta(fields, filename=filename, require_type=csrf_cookie is not None)
        stored = await run_in_threadpool(pipeline.finish)
    except BaseException:
        await run_in_threadpool(pipeline.abort)
        raise

    def record() -> Document:
        # Committed here, not after the route: if the row cannot be written (quota reached by
        # another upload meanwhile, database down), the stored object is deleted at once.
        try:
            document = service.complete_upload(db, actor=actor, pending=pending, stored=stored, meta=meta)
            db.commit()
        except BaseException:
            db.rollback()
            service.delete_blob_later(pending.blob_key)
            raise
        metrics.documents_uploaded.inc()
        metrics.documents_uploaded_bytes.inc(stored.size)
        return document

    return await run_in_threadpool(record)


def _header_text(value: str) -> str:
    """A header's text: percent-encoded UTF-8 (as documented), or UTF-8 sent raw (the server reads
    header bytes as Latin-1: "Ã‰tat" is put back to "État"), else Latin-1 as read."""
    try:
        value = value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        pass
    return unquote(value)


def _filename_from_headers(request: Request) -> str | None:
    disposition = request.headers.get("content-disposition")
    if not disposition:
        return None
    message = Message()
    message["content-disposition"] = disposition
    return message.get_filename()


def _public(document: Document) -> DocumentPublic:
    return DocumentPublic.model_validate(document, from_attributes=True)


# ---- API -----------------------------------------------------------------------------------------------------


class DocumentList(SQLModel):
    items: list[DocumentPublic]
    total: int
    limit: int
    offset: int


def _type_schema(*, nullable: bool) -> Callable[[dict[str, JsonValue]], None]:
    """The document types as an enum in the OpenAPI document. The value stays a string for FastAPI:
    the service checks it, to answer 422 ``invalid_input`` with its per-field message."""
    def edit(schema: dict[str, JsonValue]) -> None:
        schema.pop("anyOf", None)
        kind: dict[str, JsonValue] = {"type": "string", "enum": list(DOCUMENT_TYPES)}
        if nullable:
            schema["anyOf"] = [kind, {"type": "null"}]
        else:
            schema.update(kind)
    return edit


_TYPE_FIELD = {"type": "string", "enum": list(DOCUMENT_TYPES), "description": "The document's type"}
_TITLE_FIELD = {"type": "string", "maxLength": 200, "description": "Default: the file's name (or the type's label)"}
_VALID_UNTIL_FIELD = {"type": "string", "format": "date",
                      "description": "The last day it is valid (YYYY-MM-DD; DD/MM/YYYY is read too); empty: none"}
_UPLOAD_HEADERS = [  # a raw body's fields (percent-encoded UTF-8)
    {"name": "X-Document-Type", "in": "header", "required": False, "schema": _TYPE_FIELD,
     "description": "With a raw body: the document's type (default `other`)"},
    {"name": "X-Document-Title", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "With a raw body: its title, percent-encoded UTF-8"},
    {"name": "X-Document-Valid-Until", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "With a raw body: the last day it is valid"},
    {"name": "Content-Disposition", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "With a raw body: the file's name (`attachment; filename*=UTF-8''…`)"},
]
_UPLOAD_BODY = {
    "required": True,
    "description": "Multipart: a `file` part (PDF, JPEG, PNG, WebP or HEIC: the type is read from the bytes, "
                   "never from the name) and the optional fields, before or after it. Or the document's bytes "
                   "as the body itself, its fields in `X-Document-*` headers.",
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"}, "type": _TYPE_FIELD, "title": _TITLE_FIELD,
                "valid_until": _VALID_UNTIL_FIELD}},
            "encoding": {"file": {"contentType": ", ".join((*MEDIA_TYPES, "application/octet-stream"))}},
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}


# What a client does next with the document it created (OpenAPI links: a fuzzer's stateful runs follow them).
_DOCUMENT_LINKS = {name: {"operationId": operation, "parameters": {"document_id": "$response.body#/id"}}
                   for name, operation in (("GetDocument", "get_document"), ("PatchDocument", "patch_document"),
                                           ("DeleteDocument", "delete_document"),
                                           ("GetDocumentContent", "get_document_content"),
                                           ("HeadDocumentContent", "head_document_content"))}


@api.post("/documents", status_code=201, operation_id="create_document", response_model=DocumentPublic,
          responses={201: {"description": "Stored, scanned and encrypted",
                           "headers": {"Location": {"schema": {"type": "string"},
                                                    "description": "The new document's address"}},
                           "links": _DOCUMENT_LINKS},
                     **api_errors(413, 415)},
          openapi_extra={"requestBody": _UPLOAD_BODY, "parameters": _UPLOAD_HEADERS, "security": WRITE},
          summary="Add a document (multipart `file` + `type`, `title`, `valid_until`; or a raw body)")
async def create_document(request: Request, db: Db, service: Documents, actor: ApiActor) -> JSONResponse:
    document = await receive_document(request, db, service, actor)
    return JSONResponse(_public(document).model_dump(mode="json"), status_code=201,
                        headers={"Location": f"/api/v1/documents/{document.id}"})


@api.get("/documents", response_model=DocumentList, operation_id="list_documents",
         summary="The citizen's documents, newest first", openapi_extra={"security": READ})
def list_documents(db: Db, service: Documents, actor: ApiActor,
                   type: Annotated[str | None, Query(description="Only documents of this type",
                                                     json_schema_extra=_type_schema(nullable=False))] = None,
                   limit: Annotated[int, Query(ge=1, le=200)] = 50,
                   offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> DocumentList:
    if type is not None and type not in DOCUMENT_TYPES:  # here, for the service's own answer (``fields``)
        raise InvalidDocumentInput({"type": f"Unknown type; one of {', '.join(DOCUMENT_TYPES)}."})
    items, total = service.list_documents(db, actor=actor, type=type, limit=limit, offset=offset)
    return DocumentList(items=[_public(d) for d in items], total=total, limit=limit, offset=offset)


@api.get("/documents/{document_id}", response_model=DocumentPublic, operation_id="get_document", responses=api_errors(404),
         openapi_extra={"security": READ}, summary="One document's description")
def get_document(document_id: uuid.UUID, db: Db, service: Documents, actor: ApiActor) -> DocumentPublic:
    document = service.get(db, actor=actor, document_id=document_id)
    service.log_access(db, actor, "read", document)
    return _public(document)


class DocumentPatch(SQLModel):
    """The fields to change; a field left out (or null) is kept."""

    type: str | None = Field(default=None, schema_extra={"json_schema_extra": _type_schema(nullable=True)})
    title: str | None = Field(default=None, max_length=200)
    valid_until: str | None = Field(default=None, description="YYYY-MM-DD (DD/MM/YYYY is read too); \"\": no date")


@api.patch("/documents/{document_id}", response_model=DocumentPublic, operation_id="patch_document",
           summary="Rename, change type or validity", responses=api_errors(404, 409), openapi_extra={"security": WRITE})
def patch_document(document_id: uuid.UUID, changes: DocumentPatch, db: Db, service: Documents,
                   actor: ApiActor) -> DocumentPublic:
    return _public(service.update(db, actor=actor, document_id=document_id,
                                  changes=changes.model_dump(exclude_unset=True)))


def _delete_page(request: Request) -> str:
    """The page that asks to confirm the deletion of a document: where a step-up comes back to."""
    return f"/documents/{request.path_params['document_id']}?delete=1"


def api_deleter(request: Request, actor: ApiActor, current: OptionalLogin) -> Actor:
    """Deleting with the citizen's session needs a recent proof of identity, as on the page (a
    stolen session cookie alone deletes nothing): otherwise 403 ``step_up_required``. An app's
    token is what its grant says."""
    if actor.kind == "citizen" and (current is None or not current.stepped_up):
        raise StepUpRequired(_delete_page(request))
    return actor


@api.delete("/documents/{document_id}", status_code=204, operation_id="delete_document",
            responses=api_errors(403, 404, 409), openapi_extra={"security": WRITE},
            summary="Delete a document (its object is deleted after the answer)",
            description="With the citizen's session, a proof of identity less than 5 minutes old is needed "
                        "(otherwise 403 `step_up_required`, whose `location` is the page to confirm it).")
def delete_document(document_id: uuid.UUID, db: Db, service: Documents,
                    actor: Annotated[Actor, Depends(api_deleter)]) -> Response:
    blob_key = service.delete(db, actor=actor, document_id=document_id)
    return Response(status_code=204, background=BackgroundTask(service.delete_blob_later, blob_key))


def _disposition(filename: str) -> str:
    ascii_name = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\;' else "_" for ch in filename) or "document"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as [start, end); None for no (or an ignorable) Range; ValueError if unsatisfiable."""
    # RFC 9110 §14.1.2: a syntactically invalid range (last < first, signs, "1_0") is ignored: a 200.
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    match = re.fullmatch(r"\s*([0-9]*)-([0-9]*)\s*", header[6:])
    if match is None or not any(match.groups()):
        return None
    first, last = match.groups()
    if first:
        start = int(first)
        if last and int(last) < start:
            return None
        end = min(size, int(last) + 1) if last else size
    else:  # the last N bytes ("bytes=-0" selects nothing: unsatisfiable)
        start, end = max(0, size - int(last)), size
    if start >= end:
        raise ValueError("unsatisfiable")
    return start, end


def serve_content(request: Request, db: Session, service: DocumentService, actor: Actor,
                  document_id: uuid.UUID) -> Response:
    document = service.get(db, actor=actor, document_id=document_id)
    key = service.document_key(db, document)
    service.log_access(db, actor, "read", document)
    headers = {"Content-Disposition": _disposition(download_name(document)), "Accept-Ranges": "bytes",
               "ETag": f'"{document.sha256}"', "X-Content-Type-Options": "nosniff"}
    try:
        wanted = _parse_range(request.headers.get("range"), document.size)
    except ValueError:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{document.size}"})
    if wanted is None:
        body, status, length = service.plaintext(document, key), 200, document.size
    else:
        start, end = wanted
        body, status, length = service.plaintext_range(document, key, start, end), 206, end - start
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{document.size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":  # the headers a GET would send, without reading the object
        body.close()
        return Response(status_code=status, media_type=document.media_type, headers=headers)
    # Authenticate the first segment before answering: a tampered object fails with an error page
    # rather than a 200; a failure later aborts the connection (never a complete-looking file).
    try:
        first = next(body, b"")
    except DecryptionError:
        logger.error("document failed authentication", extra={"document": str(document.id)})
        raise DocumentDamaged() from None
    except BlobNotFound:
        logger.error("document without its object", extra={"document": str(document.id)})
        raise ContentMissing() from None

    metrics.documents_downloaded.inc()

    def stream() -> Iterator[bytes]:
        try:
            metrics.documents_downloaded_bytes.inc(len(first))
            yield first
            for segment in body:
                metrics.documents_downloaded_bytes.inc(len(segment))
                yield segment
        except DecryptionError:
            # Headers are gone: the connection is cut before the end (never a complete-looking file).
            logger.error("document failed authentication", extra={"document": str(document.id)})
            raise
        finally:
            body.close()

    return StreamingResponse(relay(stream()), status_code=status, media_type=document.media_type, headers=headers)


_CONTENT = {media_type: {"schema": {"type": "string", "format": "binary"}} for media_type in MEDIA_TYPES}
_CONTENT_HEADERS = {name: {"schema": {"type": "string"}, "description": text} for name, text in (
    ("Content-Disposition", "attachment, with the file's name"), ("ETag", "The plaintext's SHA-256, quoted"),
    ("Accept-Ranges", "bytes"))}
_RANGE = [{"name": "Range", "in": "header", "required": False, "schema": {"type": "string"},
           "description": "One `bytes=` range (RFC 9110 §14.2); a range the service cannot read is ignored (200)"}]


def _content_responses(*, body: bool) -> dict[int | str, dict[str, object]]:
    content = {"content": _CONTENT} if body else {}
    return {
        200: {"description": "The whole document", "headers": _CONTENT_HEADERS, **content},
        206: {"description": "The bytes of the Range", **content,
              "headers": {**_CONTENT_HEADERS, "Content-Range": {"schema": {"type": "string"}}}},
        416: {"description": STATUS_TEXT[416], "headers": {"Content-Range": {"schema": {"type": "string"}}}},
        **api_errors(404, 500),
    }


@api.get("/documents/{document_id}/content", summary="The document's bytes (streamed; Range supported)",
         operation_id="get_document_content", response_class=Response, responses=_content_responses(body=True),
         openapi_extra={"parameters": _RANGE, "security": READ})
def document_content(request: Request, document_id: uuid.UUID, db: Db, service: Documents,
                     actor: ApiActor) -> Response:
    return serve_content(request, db, service, actor, document_id)


@api.head("/documents/{document_id}/content", summary="The headers the GET would send, without the bytes",
          operation_id="head_document_content", response_class=Response, responses=_content_responses(body=False),
          openapi_extra={"parameters": _RANGE, "security": READ})
def document_content_headers(request: Request, document_id: uuid.UUID, db: Db, service: Documents,
                             actor: ApiActor) -> Response:
    return serve_content(request, db, service, actor, document_id)


@api.get("/me/access-log", response_model=list[AccessLogPublic], summary="Who else accessed my documents",
         operation_id="my_access_log", openapi_extra={"security": SESSION})
def my_access_log(db: Db, service: Documents, current: OptionalLogin) -> list[AccessLogPublic]:
    if current is None:  # the citizen's own session only: an app's token does not open it
        raise ApiUnauthenticated()
    return [AccessLogPublic.model_validate(e, from_attributes=True) for e in service.access_log(db, current.citizen.id)]


# ---- pages: "Mes justificatifs" ----------------------------------------------------------------------------------


def _documents_page(request: Request, db: Session, service: DocumentService, actor: Actor, *,
                    errors: dict[str, str] | None = None, status: int = 200, notice: str | None = None,
                    values: dict[str, str] | None = None) -> Response:
    items, _ = service.list_documents(db, actor=actor, limit=200)
    count, used = service.usage(db, actor.citizen_id)
    groups = {label: [d for d in items if d.type == kind] for kind, label in DOCUMENT_TYPES.items()}
    return render(request, "documents.html", {
        "title": N_("Mes justificatifs"), "groups": {k: v for k, v in groups.items() if v}, "types": DOCUMENT_TYPES,
        "errors": errors or {}, "values": values or {}, "today": app_settings(request).today(),
        "notice": notice or NOTICES.get(notice_key(request)),
        "used_mb": used / (1024 * 1024), "quota_mb": service.settings.quota_mb, "count": count,
        "max_mb": service.settings.max_file_mb, "antivirus_off": service.settings.antivirus == "off",
        "back_to": _back_to(request),
    }, status=status)


_PENDING_AUTHORIZATION = re.compile(r"^/authorize/continue/[A-Za-z0-9_-]{1,100}$")


def _back_to(request: Request) -> str | None:
    """An authorization request waiting for the citizen (the consent page's "add a document"): the
    upload comes back to it. Only that path, never another address (no open redirect)."""
    target = request.query_params.get("next", "")
    return target if _PENDING_AUTHORIZATION.match(target) else None


NOTICES = {
    "added": N_("Le document a été ajouté à votre coffre-fort."),
    "deleted": N_("Le document a été supprimé."),
    "updated": N_("Le document a été modifié."),
}


@pages.get("/documents")
def documents_page(request: Request, db: Db, service: Documents, actor: PageActor) -> Response:
    return _documents_page(request, db, service, actor)


@pages.post("/documents")
async def documents_upload(request: Request, db: Db, service: Documents, actor: PageActor) -> Response:
    try:
        await receive_document(request, db, service, actor, csrf_cookie=get_cookie(request, "csrf") or "")
    except StorageError as exc:
        errors, status = exc.fields or {"file": exc.message}, exc.status
        typed = getattr(request.state, "upload_fields", {})
        values = {name: typed.get(name, "") for name in ("type", "title", "valid_until")}
        return await run_in_threadpool(lambda: _documents_page(request, db, service, actor, errors=errors,
                                                               status=status, values=values))
    if back_to := _back_to(request):
        return redirect(f"{back_to}?notice=added")  # back to the consent page, the new document offered
    return redirect("/documents?notice=added")


@pages.get("/documents/{document_id}")
def document_page(request: Request, document_id: uuid.UUID, db: Db, service: Documents, actor: PageActor) -> Response:
    document = service.get(db, actor=actor, document_id=document_id)
    return render(request, "document.html", {"title": document.title, "document": document, "types": DOCUMENT_TYPES,
                                             "confirm_delete": request.query_params.get("delete") == "1"})


@pages.post("/documents/{document_id}")
def document_edit(request: Request, document_id: uuid.UUID, form: FormFields, db: Db, service: Documents,
                  actor: PageActor) -> Response:
    try:
        service.update(db, actor=actor, document_id=document_id,
                       changes={k: form.get(k, "") for k in ("type", "title", "valid_until")})
    except InvalidDocumentInput as exc:
        db.rollback()
        document = service.get(db, actor=actor, document_id=document_id)
        return render(request, "document.html", {"title": document.title, "document": document,
                                                 "types": DOCUMENT_TYPES, "errors": exc.fields}, status=422)
    return redirect("/documents?notice=updated")


@pages.post("/documents/{document_id}/delete")
def document_delete(request: Request, document_id: uuid.UUID, form: FormFields, db: Db, service: Documents,
                    actor: PageActor, _proof: Annotated[CurrentLogin, stepped_up(_delete_page)]) -> Response:
    blob_key = service.delete(db, actor=actor, document_id=document_id)
    response = redirect("/documents?notice=deleted")
    response.background = BackgroundTask(service.delete_blob_later, blob_key)
    return response


@pages.get("/documents/{document_id}/download")
def document_download(request: Request, document_id: uuid.UUID, db: Db, service: Documents,
                      actor: PageActor) -> Response:
    return serve_content(request, db, service, actor, document_id)


@pages.get("/account/access-log")
def access_log_page(request: Request, db: Db, service: Documents, current: LoggedIn) -> Response:
    return render(request, "access_log.html", {"title": N_("Qui a consulté mes documents"),
                                               "entries": service.access_log(db, current.citizen.id)})
