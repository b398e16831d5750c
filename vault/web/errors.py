"""The one place where errors become answers (the model is in ``vault.errors``):

- a ``VaultError`` under ``/api/`` (and on the operations endpoints): JSON
  ``{"error": code, "detail": message, "fields"?: {...}}``;
- an ``OAuthError`` on the OAuth endpoints: ``{"error", "error_description"}`` (RFC 6749 §5.2,
  RFC 6750 §3.1), never cached;
- any ``VaultError`` on a page: the message page (title, message, a link back);
- a ``ServiceUnavailable``: 503, what it means for the person (nothing kept, nothing lost), the
  technical reason in the log only;
- FastAPI's validation errors and Starlette's HTTP errors in the same shapes;
- a client that went away before its body was read (a short body, a bad chunk): logged as such,
  answered 400 (nobody reads it), nothing kept;
- anything else: logged with its traceback, answered 500 without internals.

It also answers ``LoginRequired`` (a page that needs a logged-in citizen) with the login page.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import RedirectResponse, Response

from vault.errors import OAuthError, ServiceUnavailable, VaultError
from vault.translation import N_
from vault.web.middleware import loggable_path
from vault.web.pages import message_page

logger = logging.getLogger(__name__)

# The endpoints whose callers are apps speaking OAuth 2.0 (/authorize and /logout are pages), with
# those of the FranceConnect profiles (vault.oidc.profiles).
OAUTH_ENDPOINTS = frozenset({"/token", "/revoke", "/introspect", "/userinfo", "/api/v1/token", "/api/v2/token",
                             "/api/v1/userinfo", "/api/v2/userinfo"})
JSON_PATHS = ("/api/", "/healthz", "/readyz")
STEP_UP_DETAIL = ("This action needs a recent proof of identity: confirm it is you at `location` (the password, a "
                  "code or a passkey), then send it again.")
NOT_FOUND = (N_("Page introuvable"), N_("Cette page n'existe pas ou n'existe plus."))


class LoginRequired(Exception):
    """The page needs a logged-in citizen; answered by a redirect to the login page, which comes
    back to ``next_path`` afterwards."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class StepUpRequired(Exception):
    """The page needs a recent proof of identity (the password, a TOTP code or a passkey, less than
    5 minutes old); answered by a redirect to the confirmation page, which comes back to
    ``next_path`` afterwards (a page to show: for a form sent, the page of that form)."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(JSON_PATHS)


def api_error(code: str, detail: str, status: int, *, fields: dict[str, str] | None = None,
              headers: dict[str, str] | None = None, location: str | None = None) -> JSONResponse:
    body: dict[str, object] = {"error": code, "detail": detail}
    if fields:
        body["fields"] = fields
    if location:
        body["location"] = location
    return JSONResponse(body, status_code=status, headers=headers or None)


def _vault_error(request: Request, exc: VaultError) -> Response:
    if isinstance(exc, OAuthError) and request.url.path in OAUTH_ENDPOINTS:
        body = {"error": exc.code} if exc.code else {}  # RFC 6750 §3.1: no code without credentials
        return JSONResponse({**body, "error_description": exc.description}, status_code=exc.status,
                            headers={"Cache-Control": "no-store", **exc.headers})
    if _wants_json(request):
        return api_error(exc.code, exc.message, exc.status, fields=exc.fields, headers=exc.headers)
    page = message_page(request, title=exc.title, message=exc.message, status=exc.status, link=exc.link)
    page.headers.update(exc.headers)  # a lock's Retry-After, on a page as on the API
    return page


def _unavailable(request: Request, exc: ServiceUnavailable) -> Response:
    # Fail closed: nothing was kept. The cause goes to the log, not to the person.
    logger.error(exc.log_event, extra={"error": str(exc), "kind": type(exc).__name__})
    detail, message = exc.describe(reading=request.method in ("GET", "HEAD"))
    if _wants_json(request):
        return api_error(exc.code, detail, exc.status, headers=exc.headers)
    page = message_page(request, title=exc.title, message=message, status=exc.status, link=exc.link)
    page.headers.update(exc.headers)
    return page


def install_error_handlers(app: FastAPI, *, unavailable: tuple[type[Exception], ...] = ()) -> None:
    """``unavailable``: errors of a dependency that does not answer, raised below the error model
    (the key provider's: the keyring cannot be read, the KMS does not answer), answered 503 like
    ``ServiceUnavailable``; the entry point names them, as this floor does not import their part."""
    @app.exception_handler(VaultError)
    async def vault_error(request: Request, exc: VaultError) -> Response:
        if isinstance(exc, ServiceUnavailable):
            return _unavailable(request, exc)
        return _vault_error(request, exc)

    async def dependency_error(request: Request, exc: Exception) -> Response:
        # E.g. the keyring cannot be read (or the KMS does not answer): nothing was wrapped nor kept.
        return _unavailable(request, ServiceUnavailable(f"{type(exc).__name__}: {exc}"))

    for error in unavailable:
        app.add_exception_handler(error, dependency_error)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)

    @app.exception_handler(StepUpRequired)
    async def step_up_required(request: Request, exc: StepUpRequired) -> Response:
        confirm = f"/account/confirm?next={quote(exc.next_path)}"
        if _wants_json(request):  # the citizen's session on the API: its page confirms, then comes back
            return api_error("step_up_required", STEP_UP_DETAIL, 403, location=confirm)
        return RedirectResponse(confirm, status_code=303)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        if _wants_json(request):
            detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            return api_error("invalid_request", detail, 422)
        return message_page(request, title=VaultError.title, message=N_("La demande envoyée n'est pas valide."),
                            status=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        if _wants_json(request):
            return api_error(codes.get(exc.status_code, "http_error"), str(exc.detail), exc.status_code,
                             headers=getattr(exc, "headers", None))
        if exc.status_code == 404:
            return message_page(request, title=NOT_FOUND[0], message=NOT_FOUND[1], status=404, link=("/", N_("Accueil")))
        return message_page(request, title=VaultError.title, message=str(exc.detail), status=exc.status_code)

    @app.exception_handler(ClientDisconnect)
    async def client_went_away(request: Request, exc: ClientDisconnect) -> Response:
        # Not an error of the service: whatever was being received was dropped where it was read.
        logger.info("client went away", extra={"method": request.method, "path": loggable_path(request.url.path)})
        return Response(status_code=400, headers={"Connection": "close"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Logged with its traceback (never hidden), answered without internals.
        logger.error("unhandled error", exc_info=(type(exc), exc, exc.__traceback__))
        if _wants_json(request):
            return api_error("server_error", "Unexpected error; quote the X-Request-ID.", 500)
        return message_page(request, title="Erreur inattendue",
                            message="Une erreur inattendue est survenue. Rien n'a été enregistré. Réessayez ; si "
                                    "cela recommence, contactez la mairie.", status=500)
