"""Errors of citizen accounts. Each carries what the caller needs to answer clearly."""

from __future__ import annotations

from vault.errors import VaultError
from vault.translation import N_, Message


class AuthError(VaultError):
    """Base class: ``code`` is the stable API error code, ``message`` the French text for people."""

    code = "auth_error"
    message = "Une erreur est survenue."


class InvalidInput(AuthError):
    """Form fields failed validation; ``fields`` maps a field name to its French message."""

    code = "invalid_input"
    message = "Certains champs sont à corriger."

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(fields=fields)


class InvalidCredentials(AuthError):
    """Wrong email or password (the same answer whether the account exists or not)."""

    code, status = "invalid_credentials", 401
    message = N_("Adresse e-mail ou mot de passe incorrect.")


class TooManyLoginAttempts(AuthError):
    """The wait is said from the very value sent as ``Retry-After``: in seconds up to a minute, then
    in minutes rounded up (never shorter than the real wait)."""

    code, status = "too_many_attempts", 429

    def __init__(self, retry_after: int) -> None:
        minutes = -(-retry_after // 60)
        if retry_after <= 1:
            message = Message(N_("Trop de tentatives de connexion. Par sécurité, réessayez dans une seconde."))
        elif retry_after < 60:
            message = Message(N_("Trop de tentatives de connexion. Par sécurité, réessayez dans %(count)s secondes."),
                              count=retry_after)
        elif minutes == 1:
            message = Message(N_("Trop de tentatives de connexion. Par sécurité, réessayez dans une minute."))
        else:
            message = Message(N_("Trop de tentatives de connexion. Par sécurité, réessayez dans %(count)s minutes."),
                              count=minutes)
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class EmailNotVerified(AuthError):
    code, status = "email_not_verified", 403
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


class AlreadyActivated(AuthError):
    """An activation link for an account that already has a password: it cannot set another one
    (the password is changed from "Mon compte", or reset with "Mot de passe oublié")."""

    code, status = "already_activated", 400
    message = N_("Ce compte est déjà activé : il a un mot de passe. Connectez-vous, ou utilisez « Mot de passe "
                 "oublié » si vous ne vous en souvenez plus.")


class CitizenNotFound(AuthError):
    code, status = "not_found", 404
    message = "Compte introuvable."
