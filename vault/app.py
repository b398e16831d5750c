"""The web application: ``create_app(settings)`` takes its services from the composition root
(``vault.services``), mounts every domain's routes and turns errors into answers."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response

from vault import __version__, metrics
from vault.alerts import routes as alerts_routes
from vault.auth import franceconnect_routes, passkey_routes
from vault.auth import routes as auth_routes
from vault.counter import activation_routes, assist_routes, stats_routes
from vault.counter import routes as counter_routes
from vault.crypto import AwsKmsProvider, KeyProviderError
from vault.db import DatabaseUnavailable, ping, statements_engine
from vault.gdpr import routes as gdpr_routes
from vault.jobs.local import LocalJobs
from vault.jobs.work import on_work_committed
from vault.logs import configure_logging
from vault.migrations import schema_is_current
from vault.oidc import api_docs, demo
from vault.oidc import routes as oidc_routes
from vault.oidc.issuer import IssuerMismatch, check_issuer
from vault.services import build_services
from vault.settings import Settings, load_settings
from vault.storage import routes as storage_routes
from vault.storage import share_pages
from vault.storage.antivirus import ScannerUnavailable
from vault.storage.blobs import READINESS_PROBE_SECONDS, BlobStoreUnavailable, BucketMissing
from vault.web.dependencies import refuse_nul
from vault.web.errors import install_error_handlers
from vault.web.middleware import RequestContextMiddleware
from vault.web.openapi import api_errors, install_openapi

if TYPE_CHECKING:
    from vault.jobs.queue import JobQueue

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "web" / "static"


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    settings = settings or load_settings()
    for warning in settings.check():  # raises ConfigError when the configuration cannot run
        logger.warning(warning)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """The background jobs (vault.jobs). ``VAULT_JOBS=app`` (development, ``make run``): this
        process runs them in a thread of its own. ``worker`` on PostgreSQL: ``vault worker`` runs them
        and this process defers a job after a commit that needs it (mail queued, an erasure staged)."""
        services = app.state.services
        local: LocalJobs | None = None
        queue: JobQueue | None = None
        forget: Callable[[], None] | None = None
        if services.settings.jobs == "app":
            local = LocalJobs(services)
            local.start()
        elif services.settings.on_postgresql:
            from vault.jobs.queue import JobQueue  # noqa: PLC0415  (procrastinate: only where jobs are deferred)

            queue = JobQueue(services, for_worker=False)
            forget = on_work_committed(queue.defer_soon)
        try:
            async with _lifespan(app):  # the audit log's periodic checkpoint
                yield
        finally:
            if local is not None:
                local.stop()
            if forget is not None:
                forget()
            if queue is not None:
                queue.close()
            metrics.worker_exit()  # a worker of `vault serve --workers N` hands back its live gauges

    app = FastAPI(
        lifespan=lifespan,
        title="Citizen Vault",
        version=__version__,
        summary="The city's identity provider (OpenID Connect) and encrypted document vault.",
        docs_url="/api/docs",
        redoc_url=None,
        dependencies=[Depends(refuse_nul)],  # every route, before its own dependencies
    )
    services = build_services(settings, engine=engine)
    app.state.services = services
    # The two things the web layer below the domains reads: settings (cookies, pages) and the engine
    # (the request's unit of work).
    app.state.settings = services.settings
    app.state.engine = services.engine
    app.state.statements_engine = statements_engine(services.engine)  # the endpoints apps call

    app.add_middleware(RequestContextMiddleware, settings=settings)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # Routes are matched in this order: the OpenID endpoints apps call most (token, userinfo,
    # introspection) first. No path of one router matches another's (tests/test_openapi.py).
    app.include_router(oidc_routes.router)
    app.include_router(auth_routes.router)
    app.include_router(franceconnect_routes.router)
    app.include_router(auth_routes.api)
    app.include_router(passkey_routes.router)
    app.include_router(alerts_routes.router)
    app.include_router(demo.router)
    app.include_router(storage_routes.api)
    app.include_router(storage_routes.pages)
    app.include_router(share_pages.pages)
    app.include_router(gdpr_routes.pages)
    app.include_router(counter_routes.pages)
    app.include_router(activation_routes.router)
    app.include_router(assist_routes.pages)
    app.include_router(stats_routes.pages)
    _add_operational_routes(app)
    install_error_handlers(app, unavailable=(KeyProviderError,))
    install_openapi(app, settings, scopes=api_docs.scope_descriptions())
    _check_issuer_at_startup(settings, services.engine)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """While the app serves: the audit log's periodic checkpoint (a daemon thread)."""
    services = app.state.services
    stop = threading.Event()
    thread = threading.Thread(target=services.audit.run_checkpoints, args=(services.engine, stop),
                              name="audit-checkpoints", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def _check_issuer_at_startup(settings: Settings, engine: Engine) -> None:
    """Log at ERROR a VAULT_ISSUER other than the deployment's (/readyz then answers 503). A database
    not ready yet is /readyz's to report, not a reason to refuse starting."""
    try:
        check_issuer(engine, settings.issuer)
    except IssuerMismatch as exc:
        logger.error("issuer mismatch", extra={"error": str(exc), "configured": exc.configured,
                                               "recorded": exc.recorded})
    except SQLAlchemyError as exc:
        logger.info("issuer not checked at startup", extra={"error": type(exc).__name__})


def create_app_from_env() -> FastAPI:
    """Entry point for ``uvicorn --factory`` (``vault serve``)."""
    configure_logging()
    return create_app()


# The keyring check of /readyz with aws-kms is a KMS Encrypt and Decrypt: its answer is kept this long.
KMS_READINESS_TTL = 15.0

# A readiness probe: what it returns ("ok" or why not) and the exception that means "unavailable".
_Probe = tuple[Callable[[], str], type[Exception]]


def _add_operational_routes(app: FastAPI) -> None:
    settings: Settings = app.state.settings

    class Readiness(BaseModel):
        status: Literal["ok", "degraded", "unavailable"]
        checks: dict[str, str] = Field(description="database, issuer, keyring, object_store, antivirus: ok or why not")
        reason: str | SkipJsonSchema[None] = Field(default=None, description="Why not ready (an issuer mismatch)")

    @app.get("/healthz", tags=["operations"], responses=api_errors(400))
    def healthz() -> dict[str, str]:
        """The process answers (liveness)."""
        return {"status": "ok"}

    kms_readiness: list[Any] = [float("-inf"), None]  # when the KMS was last tried, and its failure

    @app.get("/readyz", tags=["operations"], response_model=Readiness,
             responses={**api_errors(400), 503: {"model": Readiness, "description": "The database or the keyring is not ready"}})
    def readyz() -> JSONResponse:
        """The service can answer logins and OpenID Connect: the database answers at the latest
        migration, this replica's VAULT_ISSUER is the deployment's (recorded in the database: a
        replica with another one would answer apps with the wrong issuer) and the key provider wraps
        and unwraps (the status: 503 otherwise, with the ``reason`` of a mismatch). The object
        store and clamd are reported in the body only ("degraded", still 200): their outage makes
        uploads and downloads answer 503, and must not take logins down behind a load balancer.
        A missing bucket is created here when the credentials allow it, else reported as
        "bucket missing"."""
        def database() -> str:
            ping(app.state.engine)
            return "ok" if schema_is_current(app.state.engine) else "migrations pending"

        def issuer() -> str:
            try:
                check_issuer(app.state.engine, settings.issuer)
            except IssuerMismatch as exc:
                reasons.append(str(exc))
                return "mismatch"
            except SQLAlchemyError as exc:
                raise DatabaseUnavailable(type(exc).__name__) from None
            return "ok"

        def keyring() -> str:
            keys = app.state.services.keys
            if not isinstance(keys, AwsKmsProvider):
                try:
                    keys.unwrap(keys.wrap(b"readiness", context=b"readyz"), context=b"readyz")
                except KeyProviderError as exc:
                    reasons.append(str(exc))  # names the keyring file and why it cannot be read
                    raise
                return "ok"
            # A KMS round trip each: a balancer probing every few seconds from each replica would
            # make the KMS bill (and its request quota) grow with the probes; the answer is kept a while.
            checked_at, failure = kms_readiness
            if time.monotonic() - checked_at >= KMS_READINESS_TTL:
                try:
                    keys.unwrap(keys.wrap(b"readiness", context=b"readyz"), context=b"readyz")
                    failure = None
                except KeyProviderError as exc:
                    failure = str(exc)
                kms_readiness[:] = [time.monotonic(), failure]
            if failure is not None:
                raise KeyProviderError(failure)
            return "ok"

        def object_store() -> str:
            try:
                app.state.services.blob_store.check()
            except BucketMissing:
                return "bucket missing"
            return "ok"

        required: dict[str, _Probe] = {
            "database": (database, DatabaseUnavailable),
            "issuer": (issuer, DatabaseUnavailable),
            "keyring": (keyring, KeyProviderError),
        }
        reasons: list[str] = []
        optional: dict[str, _Probe] = {"object_store": (object_store, BlobStoreUnavailable)}
        if settings.antivirus == "clamd":
            optional["antivirus"] = (lambda: app.state.services.scanner.ping(READINESS_PROBE_SECONDS) or "ok",
                                     ScannerUnavailable)
        checks: dict[str, str] = {}

        def run(name: str, probe: _Probe) -> None:
            try:
                checks[name] = probe[0]()
            except probe[1] as exc:
                checks[name] = "unavailable"
                logger.warning("dependency not ready" if name in required else "dependency degraded",
                               extra={"dependency": name, "error": str(exc)})
            except Exception:
                if name in required:
                    raise  # answered as any other error of the request
                checks[name] = "unavailable"  # an optional part fails in a way of its own: still reported
                logger.exception("dependency degraded", extra={"dependency": name})

        # The object store and clamd are asked at the same time as the database, each for at most
        # about 2 s (READINESS_PROBE_SECONDS per step): stalled together, they still leave the answer
        # inside a balancer's probe timeout.
        asked = [threading.Thread(target=contextvars.copy_context().run, args=(run, name, probe),  # the request id
                                  name=f"readyz-{name}", daemon=True) for name, probe in optional.items()]
        for thread in asked:
            thread.start()
        for name, probe in required.items():
            if name == "issuer" and checks["database"] != "ok":
                checks[name] = "unknown"  # read from the database
                continue
            run(name, probe)
        for thread in asked:
            thread.join()
        checks = {name: checks[name] for name in (*required, *optional)}  # the order they are listed in
        ready = all(checks[name] == "ok" for name in required)
        status = ("ok" if all(v == "ok" for v in checks.values()) else "degraded") if ready else "unavailable"
        body: dict[str, object] = {"status": status, "checks": checks}
        if reasons:
            body["reason"] = " ".join(reasons)
            logger.error("not ready", extra={"error": body["reason"]})
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/static/theme.css", include_in_schema=False)
    def theme_css() -> Response:
        # The city's colour as a stylesheet: the CSP forbids inline styles.
        css = f":root {{ --accent: {settings.theme_color}; }}\n"
        return Response(css, media_type="text/css", headers={"Cache-Control": "public, max-age=300"})

    # The theme route must win over the static mount, which was added first.
    app.router.routes.insert(0, app.router.routes.pop())
