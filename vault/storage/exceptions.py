"""Errors of the document vault. Each carries the data its answer needs."""

from __future__ import annotations

from typing import ClassVar

from vault.errors import ServiceUnavailable, VaultError
from vault.translation import N_


class StorageError(VaultError):
    code = "storage_error"
    message = "Le document n'a pas pu être enregistré."
    link: tuple[str, str] | None = ("/documents", N_("Retour à mes justificatifs"))


class DocumentNotFound(StorageError):
    """Unknown id, or another citizen's document (404, never 403)."""

    code, status, message = "not_found", 404, "Ce document n'existe pas."


class NotDepositor(StorageError):
    """An app changing or deleting a document it did not deposit (one it may read)."""

    code, status = "forbidden", 403
    message = N_("Une application ne peut modifier ou supprimer que les justificatifs qu'elle a déposés elle-même.")


class DocumentHeld(StorageError):
    """Under a legal hold (GDPR Art. 17(3)(b)): kept, whoever asks for its deletion, until released."""

    code, status = "legal_hold", 409
    message = N_("Ce document doit être conservé pour respecter une obligation légale : il ne peut pas être "
                 "supprimé pour l'instant. Pour en savoir plus, écrivez au délégué à la protection des données.")


class ContentMissing(StorageError):
    """The document's row exists but its object is gone from the store (``vault storage reconcile``
    reports such rows): the server's fault, said plainly."""

    code, status = "content_missing", 500
    message = ("Le fichier de ce document est introuvable dans le stockage. Signalez-le à l'accueil de la "
               "mairie ; vous pouvez aussi le déposer à nouveau.")


class DocumentDamaged(StorageError):
    """The document's stored object fails authentication (altered or cut short at rest): no byte of
    it is served as the document. The server's fault, said plainly; the log names the document."""

    code, status = "damaged", 500
    message = N_("Ce document est endommagé et ne peut pas être lu. Signalez-le à l'accueil de la mairie ; "
                 "vous pouvez aussi le déposer à nouveau.")


class TooLarge(StorageError):
    code, status = "too_large", 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"Le fichier dépasse la taille maximale de {limit // (1024 * 1024)} Mo.")
        self.limit = limit


class QuotaExceeded(StorageError):
    code, status = "quota_exceeded", 413

    def __init__(self, limit: int, used: int, kind: str = "bytes") -> None:
        if kind == "count":
            text = f"Votre coffre-fort contient déjà {used} documents, le maximum est {limit}. Supprimez-en un d'abord."
        else:
            text = (f"Votre coffre-fort est plein ({used // (1024 * 1024)} Mo utilisés sur {limit // (1024 * 1024)} Mo). "
                    "Supprimez des documents pour faire de la place.")
        super().__init__(text)
        self.limit, self.used, self.kind = limit, used, kind


class EmptyDocument(StorageError):
    code, status, message = "empty_file", 422, "Le fichier est vide."


class UnsupportedType(StorageError):
    code, status = "unsupported_type", 415
    message = "Ce type de fichier n'est pas accepté. Envoyez un PDF ou une photo (JPEG, PNG, WebP ou HEIC)."


class DocumentInfected(StorageError):
    code, status = "infected", 422

    def __init__(self, threat: str) -> None:
        super().__init__(f"Ce fichier contient un virus ({threat}). Il n'a pas été enregistré.")
        self.threat = threat


class InvalidDocumentInput(StorageError):
    code, status = "invalid_input", 422

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(fields.values()), fields=fields)


class StorageUnavailable(ServiceUnavailable):
    """The object store or the antivirus does not answer (fail closed): nothing was kept, and the
    documents already stored are not lost."""

    what = "storage"
    link = ("/documents", N_("Retour à mes justificatifs"))

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.headers["Retry-After"] = "60"

    def describe(self, *, reading: bool) -> tuple[str, str]:
        consequence = "try again later." if reading else "nothing was kept. Try again later."
        message = ("Vos documents sont momentanément inaccessibles. Ils ne sont pas perdus : réessayez dans "
                   "quelques minutes." if reading else
                   "L'enregistrement des documents est momentanément indisponible. Rien n'a été "
                   "enregistré : réessayez dans quelques minutes.")
        return f"The {self.what} is unavailable; " + consequence, message


class InvalidShareInput(StorageError):
    code, status = "invalid_input", 422
    message = N_("Le lien de partage n'a pas été créé.")

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(fields=fields)


class ShareLinkNotFound(StorageError):
    code, status, message = "not_found", 404, N_("Ce lien de partage n'existe pas.")
    link = ("/shares", N_("Retour à mes liens de partage"))


class WrongShareCode(StorageError):
    """A wrong access code, or any code on a link that does not exist: one answer for both."""

    code, status = "wrong_code", 400
    message = N_("Ce code ne correspond pas à ce lien. Vérifiez le code et l'adresse du lien.")

    def __init__(self, *, malformed: bool = False) -> None:
        super().__init__(N_("Le code compte 8 caractères, lettres et chiffres (par exemple ABCD-EF23).")
                         if malformed else None)
        self.malformed = malformed


class ShareLinkGone(StorageError):
    """A share link that expired, was revoked, locked after wrong codes, or whose documents were all
    deleted: 410, a plain page."""

    code, status = "gone", 410
    title = N_("Ce lien n'est plus valable")
    link = None  # its holder has no account here: no way back to offer
    MESSAGES: ClassVar[dict[str, str]] = {
        "expired": N_("Ce lien de partage a expiré. Demandez un nouveau lien à la personne qui vous l'a envoyé."),
        "revoked": N_("Ce lien de partage a été désactivé par la personne qui l'a créé."),
        "locked": N_("Ce lien de partage est verrouillé : trop de codes erronés ont été saisis. Demandez un nouveau "
                     "lien à la personne qui vous l'a envoyé."),
        "emptied": N_("Les documents de ce lien de partage ont été supprimés par la personne qui l'a créé."),
    }

    def __init__(self, state: str) -> None:
        super().__init__(self.MESSAGES.get(state, self.MESSAGES["expired"]))
        self.state = state
