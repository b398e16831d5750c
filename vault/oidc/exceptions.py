"""Errors of the OpenID Connect provider that an app or a person is told about. Those of the OAuth
protocol are ``OAuthError``s: the app reads them as RFC 6749 §5.2 says."""

from __future__ import annotations

from vault.errors import OAuthError, VaultError
from vault.translation import N_


class BodyError(OAuthError):
    """The request body is not a form this endpoint accepts (size, type, encoding)."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description, status=status, headers={"Cache-Control": "no-store"})


class BearerError(OAuthError):
    """RFC 6750 §3.1: no credentials (401, ``error`` empty: a bare challenge), ``invalid_token`` (401),
    ``insufficient_scope`` (403)."""

    def __init__(self, error: str, description: str, status: int) -> None:
        challenge = f'Bearer error="{error}", error_description="{description}"' if error else "Bearer"
        super().__init__(description, status=status, code=error, headers={"WWW-Authenticate": challenge})
        self.error = error


class PendingExpired(VaultError):
    """The pending authorization is unknown or older than 10 minutes."""

    code = "expired"
    title = N_("Demande expirée")
    message = N_("Cette demande de connexion a expiré. Retournez sur le site de l'application et recommencez.")


class InvalidDocumentChoice(VaultError):
    """The consent form names a document that was not offered (not the citizen's, not of a
    requested type) or more than the app may receive: nothing is granted."""

    code = "invalid_request"
    title = N_("Choix impossible")
    message = N_("Ce choix de justificatifs n'est pas possible. Revenez à la page précédente et cochez "
                 "seulement des justificatifs proposés.")

    def __init__(self, *, max_documents: int | None = None) -> None:
        super().__init__(N_("Cette application ne peut recevoir que %(count)s justificatif(s) : décochez-en.")
                         % {"count": max_documents} if max_documents is not None else None)


class LogoutError(OAuthError):
    """A logout request that names an app wrongly (unknown app, unregistered redirect…)."""


class UntrustedHint(LogoutError):
    """An id_token_hint this provider cannot verify (not its own, or signed by a key retired long ago)."""


class ClientError(VaultError):
    """Invalid registration data; ``fields`` maps an option name to the problem."""

    code = "invalid_input"

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()), fields=fields)


class ClientNotFound(VaultError):
    code, status = "not_found", 404
    message = "Application inconnue."
