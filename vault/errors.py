"""The one error model. Every error a person or an app is told about is a ``VaultError``: a stable
``code``, an HTTP ``status``, a ``message`` for people, optional per-field messages (``fields``) and
response ``headers``. Each domain subclasses it (``AuthError``, ``OidcError``, ``StorageError``,
``GdprError``, ``PageError``…); ``vault.web.errors`` alone turns them into answers:

- ``{"error", "detail", "fields"?}`` (JSON) under ``/api/``;
- the message page (``title``, ``message``, an optional ``link`` back) for pages;
- ``{"error", "error_description"}`` (RFC 6749 §5.2) for an ``OAuthError`` on the OAuth endpoints.

Errors that are not a person's concern (a programming error, an unexpected exception) are not
``VaultError``s: they are logged with their traceback and answered with a plain 500.
"""

from __future__ import annotations

from typing import ClassVar

from vault.translation import N_


class VaultError(Exception):
    """Base of the errors the service answers with. Subclasses set the class attributes; an
    instance may carry its own ``message`` and ``fields``."""

    code: str = "invalid_request"
    status: int = 400
    message: str = N_("La demande n'a pas pu aboutir.")
    title: str = N_("Impossible de continuer")  # the message page's heading
    link: tuple[str, str] | None = None  # (path, label) offered on the message page

    def __init__(self, message: str | None = None, *, fields: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message or self.message)
        if message:
            self.message = message
        self.fields: dict[str, str] = dict(fields or {})
        self.headers: dict[str, str] = dict(headers or {})


class OAuthError(VaultError):
    """An error of the OAuth 2.0 protocol itself: on the OAuth endpoints the app reads
    ``{"error": code, "error_description": description}`` (RFC 6749 §5.2); a person who meets it on
    a page reads ``message``."""

    message = N_("La demande envoyée n'est pas valide.")

    def __init__(self, description: str, *, status: int | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(headers=headers)
        self.description = description
        if status is not None:
            self.status = status  # per instance: RFC 6749 picks it per case
        if code is not None:
            self.code = code


class ServiceUnavailable(VaultError):
    """A dependency (database, object store, antivirus) does not answer: 503, nothing was kept.
    ``str(error)`` is the technical reason, for the log only; people read ``describe()``."""

    code = "unavailable"
    status = 503
    title = N_("Service momentanément indisponible")
    log_event: ClassVar[str] = "dependency unavailable"

    def __init__(self, reason: str = "") -> None:
        super().__init__()
        self.args = (reason,)

    def describe(self, *, reading: bool) -> tuple[str, str]:  # noqa: ARG002  (subclasses tell reads from writes)
        """(the API's ``detail``, the page's message); ``reading``: the request only read data."""
        return ("The service is unavailable; try again later.",
                N_("Le service est momentanément indisponible. Réessayez dans quelques minutes."))
