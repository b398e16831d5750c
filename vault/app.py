"""The application factory: ``create_app(settings)`` wires settings, database, keys, mail, routes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from vault import __version__, crypto
from vault.auth import demo, oidc_routes
from vault.auth import routes as auth_routes
from vault.auth.adapter import BodyError
from vault.auth.keys import KeyStore
from vault.auth.oidc import OpenIDService
from vault.gdpr import routes as gdpr_routes
from vault.gdpr.service import GdprError, GdprService
from vault.gdpr.staff import StaffService
from vault.auth.passwords import Hasher
from vault.auth.service import AccountService
from vault.db import DatabaseUnavailable, make_engine, ping
from vault.mail import make_mailer
from vault.migrations import schema_is_current
from vault.settings import Settings, load_settings
from vault.storage import routes as storage_routes
from vault.storage.antivirus import ClamdScanner, NoScanner, ScannerUnavailable
from vault.storage.exceptions import StorageError
from vault.storage.service import DocumentService
from vault.storage.blobs import BlobStoreUnavailable, make_blob_store
from vault.web.i18n import N_
from vault.web.middleware import RequestContextMiddleware
from vault.web.pages import PageError, message_page

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "web" / "static"


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    settings = settings or load_settings()
    for warning in settings.check():  # raises ConfigError when the configuration cannot run
        logger.warning(warning)
    app = FastAPI(
        title="Citizen Vault",
        version=__version__,
        summary="The city's identity provider (OpenID Connect) and encrypted document vault.",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine or make_engine(settings.effective_database_url)
    app.state.keys = crypto.load_key_provider(settings)
    app.state.blob_store = make_blob_store(settings)
    app.state.scanner = ClamdScanner(settings.clamd_address) if settings.antivirus == "clamd" else NoScanner()
    app.state.documents = DocumentService(settings=settings, keys=app.state.keys, store=app.state.blob_store,
                                          scanner=app.state.scanner)
    app.state.oidc = OpenIDService(settings=settings, keystore=KeyStore(app.state.keys))
    app.state.gdpr = GdprService(settings=settings, keys=app.state.keys, keystore=app.state.oidc.keystore,
                                 documents=app.state.documents)
    app.state.accounts = AccountService(
        settings=settings,
        hasher=Hasher(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib),
        mailer=make_mailer(settings),
        keys=app.state.keys,
    )
    app.state.staff = StaffService(app.state.accounts)

    app.add_middleware(RequestContextMiddleware, settings=settings)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(auth_routes.router)
    app.include_router(auth_routes.api)
    app.include_router(oidc_routes.router)
    app.include_router(demo.router)
    app.include_router(storage_routes.api)
    app.include_router(storage_routes.pages)
    app.include_router(gdpr_routes.pages)
    _add_operational_routes(app)
    _add_error_handlers(app)
    return app


def create_app_from_env() -> FastAPI:
    """Entry point for ``uvicorn --factory`` (``vault serve``)."""
    from vault.logs import configure_logging

    configure_logging()
    return create_app()


def _add_operational_routes(app: FastAPI) -> None:
    settings: Settings = app.state.settings

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process answers (liveness)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "A dependency is not ready"}})
    def readyz() -> JSONResponse:
        """The service can serve requests: the database answers at the latest migration, the object
        store answers, and clamd answers (when the antivirus is on)."""
        def database() -> str:
            ping(app.state.engine)
            return "ok" if schema_is_current(app.state.engine) else "migrations pending"

        def object_store() -> str:
            app.state.blob_store.check()
            return "ok"

        probes: dict[str, tuple[Callable[[], str], type[Exception]]] = {
            "database": (database, DatabaseUnavailable),
            "object_store": (object_store, BlobStoreUnavailable),
        }
        if settings.antivirus == "clamd":
            probes["antivirus"] = (lambda: app.state.scanner.ping() or "ok", ScannerUnavailable)
        checks: dict[str, str] = {}
        for name, (probe, failure) in probes.items():
            try:
                checks[name] = probe()
            except failure as exc:
                logger.warning("dependency not ready", extra={"dependency": name, "error": str(exc)})
                checks[name] = "unavailable"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks},
                            status_code=200 if ready else 503)

    @app.get("/static/theme.css", include_in_schema=False)
    def theme_css() -> Response:
        # The city's colour as a stylesheet: the CSP forbids inline styles.
        css = f":root {{ --accent: {settings.theme_color}; }}\n"
        return Response(css, media_type="text/css", headers={"Cache-Control": "public, max-age=300"})

    # The theme route must win over the static mount, which was added first.
    app.router.routes.insert(0, app.router.routes.pop())


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": "invalid_request", "detail": exc.message}, status_code=exc.status)
        return message_page(request, title=exc.title, message=exc.message, status=exc.status)

    @app.exception_handler(BodyError)
    async def oauth_body_error(request: Request, exc: BodyError) -> Response:
        if request.url.path in ("/authorize", "/logout"):
            return message_page(request, title=N_("Impossible de continuer"), message="La demande envoyée n'est pas valide.",
                                status=exc.status)
        return JSONResponse({"error": "invalid_request", "error_description": exc.description},
                            status_code=exc.status, headers={"Cache-Control": "no-store"})

    @app.exception_handler(StorageError)
    async def storage_error(request: Request, exc: StorageError) -> Response:
        if _wants_json(request):
            body: dict = {"error": exc.code, "detail": exc.message}
            if errors := getattr(exc, "errors", None):
                body["fields"] = errors
            return JSONResponse(body, status_code=exc.status)
        return message_page(request, title=N_("Impossible de continuer"), message=exc.message, status=exc.status,
                            link=("/documents", N_("Retour à mes justificatifs")))

    @app.exception_handler(storage_routes.ApiAuthError)
    async def api_auth_error(request: Request, exc: storage_routes.ApiAuthError) -> Response:
        headers = {}
        if exc.error in ("invalid_token", "insufficient_scope", "invalid_request"):
            challenge = f'Bearer error="{exc.error}"' + (f', scope="{exc.scope}"' if exc.scope else "")
            headers["WWW-Authenticate"] = challenge
        return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status, headers=headers)

    @app.exception_handler(ScannerUnavailable)
    @app.exception_handler(BlobStoreUnavailable)
    async def dependency_down(request: Request, exc: Exception) -> Response:
        # Fail closed: nothing was kept. The cause goes to the log, not to the citizen.
        logger.error("dependency unavailable", extra={"error": str(exc), "kind": type(exc).__name__})
        what = "antivirus" if isinstance(exc, ScannerUnavailable) else "object_store"
        reading = request.method in ("GET", "HEAD")  # nothing was being stored: say the documents are safe
        if _wants_json(request):
            consequence = "try again later." if reading else "nothing was kept. Try again later."
            return JSONResponse({"error": "unavailable", "detail": f"The {what.replace('_', ' ')} is unavailable; "
                                 + consequence}, status_code=503, headers={"Retry-After": "60"})
        message = ("Vos documents sont momentanément inaccessibles. Ils ne sont pas perdus : réessayez dans "
                   "quelques minutes." if reading else
                   "L'enregistrement des documents est momentanément indisponible. Rien n'a été "
                   "enregistré : réessayez dans quelques minutes.")
        return message_page(request, title="Service momentanément indisponible", message=message, status=503,
                            link=("/documents", N_("Retour à mes justificatifs")))

    @app.exception_handler(gdpr_routes.NotStaff)
    async def not_staff(request: Request, exc: Exception) -> Response:
        return message_page(request, title=N_("Page introuvable"), message=N_("Cette page n'existe pas ou n'existe plus."),
                            status=404, link=("/", N_("Accueil")))

    @app.exception_handler(GdprError)
    async def gdpr_error(request: Request, exc: GdprError) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": exc.code, "detail": exc.message}, status_code=exc.status)
        return message_page(request, title=N_("Impossible de continuer"), message=exc.message, status=exc.status)

    @app.exception_handler(auth_routes.LoginRequired)
    async def login_required(request: Request, exc: auth_routes.LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)

    @app.exception_handler(auth_routes.ApiUnauthenticated)
    async def api_unauthenticated(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "unauthenticated", "detail": "Log in first (session cookie)."},
                            status_code=401)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        if _wants_json(request):
            detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            return JSONResponse({"error": "invalid_request", "detail": detail}, status_code=422)
        return message_page(request, title=N_("Impossible de continuer"),
                            message="La demande envoyée n'est pas valide.", status=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        if _wants_json(request) or request.url.path in ("/healthz", "/readyz"):
            return JSONResponse({"error": codes.get(exc.status_code, "http_error"), "detail": str(exc.detail)},
                                status_code=exc.status_code, headers=getattr(exc, "headers", None))
        if exc.status_code == 404:
            return message_page(request, title=N_("Page introuvable"),
                                message=N_("Cette page n'existe pas ou n'existe plus."), status=404, link=("/", N_("Accueil")))
        return message_page(request, title=N_("Impossible de continuer"), message=str(exc.detail),
                            status=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Logged with its traceback (never hidden), answered without internals.
        logger.error("unhandled error", exc_info=(type(exc), exc, exc.__traceback__))
        if _wants_json(request):
            return JSONResponse({"error": "server_error", "detail": "Unexpected error; quote the X-Request-ID."},
                                status_code=500)
        return message_page(request, title="Erreur inattendue",
                            message="Une erreur inattendue est survenue. Rien n'a été enregistré. Réessayez ; si "
                                    "cela recommence, contactez la mairie.", status=500)

    @app.exception_handler(DatabaseUnavailable)
    async def database_unavailable(request: Request, exc: Exception) -> Response:
        logger.error("database unavailable", extra={"error": str(exc)})
        if _wants_json(request):
            return JSONResponse({"error": "unavailable", "detail": "The database does not answer."}, status_code=503)
        return message_page(request, title="Service momentanément indisponible",
                            message="Le service est momentanément indisponible. Réessayez dans quelques minutes.",
                            status=503)
