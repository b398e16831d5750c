"""Errors of the alerts domain (shown on the message page; nothing was changed)."""

from __future__ import annotations

from vault.errors import VaultError
from vault.translation import N_


class InvalidUnsubscribeLink(VaultError):
    """An unsubscribe link that we did not make (mistyped, cut, forged)."""

    code, status = "invalid_link", 400
    title = N_("Lien non valable")
    message = N_("Ce lien de désinscription n'est pas valable : rien n'a été changé. Vérifiez qu'il est complet, "
                 "ou choisissez vos alertes dans « Mon compte ».")
    link = ("/account", N_("Mon compte"))


class UnknownSubscriber(VaultError):
    """A genuine link whose account no longer exists."""

    code, status = "not_found", 404
    title = N_("Compte introuvable")
    message = N_("Ce compte n'existe plus : il n'y a plus d'alerte à arrêter.")
