"""Errors of the auth domain. Each carries what the caller needs to answer clearly."""

from __future__ import annotations

from vault.web.i18n import N_


class AuthError(Exception):
    """Base class: ``code`` is the stable API error code, ``message`` the French text for people."""

    code = "auth_error"
    message = "Une erreur est survenue."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        if message:
            self.message = message


class InvalidInput(AuthError):
    """Form fields failed validation; ``errors`` maps a field name to its French message."""

    code = "invalid_input"
    message = "Certains champs sont à corriger."

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__()
        self.errors = errors


class InvalidCredentials(AuthError):
    """Wrong email or password (the same answer whether the account exists or not)."""

    code = "invalid_credentials"
    message = N_("Adresse e-mail ou mot de passe incorrect.")


class TooManyLoginAttempts(AuthError):
    code = "too_many_attempts"

    def __init__(self, retry_after: int) -> None:
        minutes = max(1, -(-retry_after // 60))
        super().__init__(
            f"Trop de tentatives de connexion. Par sécurité, réessayez dans {minutes} minute{'s' if minutes > 1 else ''}."
        )
        self.retry_after = retry_after


class EmailNotVerified(AuthError):
    code = "email_not_verified"
    message = (
        N_("Votre adresse e-mail n'est pas encore confirmée. Ouvrez le lien reçu par e-mail, "
           "ou demandez un nouveau lien.")
    )


class InvalidOtp(AuthError):
    code = "invalid_otp"
    message = N_("Le code de vérification est incorrect ou a expiré. Saisissez le code affiché maintenant par votre application.")


class InvalidLink(AuthError):
    """An email link that is unknown, expired or already used."""

    code = "invalid_link"
    message = N_("Ce lien n'est plus valable : il a expiré ou a déjà été utilisé. Vous pouvez en demander un nouveau.")


class CitizenNotFound(AuthError):
    code = "not_found"
    message = "Compte introuvable."
