"""Pure ASGI middleware: request id, access log, security headers.

Pure ASGI (not BaseHTTPMiddleware) so that streamed responses stay streamed.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vault import metrics
from vault.logs import request_id_var
from vault.settings import Settings
from vault.web.pages import NOTICE_HEADER, notice_set_cookie

logger = logging.getLogger("vault.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# Paths that carry a bearer secret (a share link's): the log names the route, never the secret.
_SECRET_IN_PATH = re.compile(r"^/s/[^/]+")


def loggable_path(path: str) -> str:
    """The request path as the access log writes it: a share link's secret replaced by ``…``."""
    return _SECRET_IN_PATH.sub("/s/…", path)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """The template of the route that answered (``/api/v1/documents/{document_id}``, ``/static``
    for a mount), never the path that was asked: the metrics' label."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else metrics.UNMATCHED_ROUTE


def content_security_policy(settings: Settings) -> str:
    img = "'self' data:"
    if settings.city_logo_url and settings.city_logo_url.startswith(("https://", "http://")):
        parts = urlsplit(settings.city_logo_url)
        img += f" {parts.scheme}://{parts.netloc}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src {img}; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )


class RequestContextMiddleware:
    """Assigns a request id (or keeps a well-formed incoming X-Request-ID), logs one line per
    request, adds the security headers to every response, and turns a redirect's one-shot notice
    (``vault.web.pages.flash_notice``) into its cookie."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.csp = content_security_policy(settings)
        self.hsts = settings.https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                if (notice := headers.get(NOTICE_HEADER)) is not None:
                    del headers[NOTICE_HEADER]
                    headers.append("set-cookie", notice_set_cookie(self.settings, notice))
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Content-Security-Policy", self.csp)
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
                if not scope["path"].startswith("/static/"):
                    # Pages and API answers may hold personal data: never stored by a cache.
                    headers.setdefault("Cache-Control", "no-store")
                if self.hsts:
                    headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
            await send(message)

        metrics.http_requests_in_progress.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            metrics.http_requests_in_progress.dec()
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = scope["method"] if scope["method"] in _METHODS else "other"
            metrics.http_requests.labels(route=route, method=method, status=str(status)).inc()
            metrics.http_request_duration.labels(route=route, method=method).observe(elapsed)
            logger.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": loggable_path(scope["path"]),  # never the query string: it may carry a token
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 1),
                },
            )
            request_id_var.reset(token)
