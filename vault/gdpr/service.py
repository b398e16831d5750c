"""Data-subject rights: the register of requests, export (Art. 15/20), erasure
(Art. 17) with its certificate, rectification (Art. 16), retention. No HTTP here."""

from __future__ import annotations

import base64
import calendar
import csv
import hashlib
import hmac
import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from vault import geo, mail
from vault.alerts.models import KINDS as ALERT_KINDS
from vault.alerts.service import AlertService
from vault.auth.exceptions import InvalidInput
from vault.auth.identity import validate_identity
from vault.auth.models import IDENTITY_FIELDS, Citizen
from vault.auth.service import CERTIFIED_IDENTITY, AccountService
from vault.db import fold, fold_expression, utcnow
from vault.errors import VaultError
from vault.gdpr import audit
from vault.gdpr.models import CHANNELS, REQUEST_KINDS, DataRequest, Tombstone
from vault.gdpr.zipstream import stream_zip
from vault.mail import Attachment
from vault.oidc.claims import claims_for_scope
from vault.oidc.keys import KeyStore
from vault.oidc.models import Consent, OAuthClient
from vault.oidc.service import OpenIDService
from vault.settings import Settings
from vault.storage.exceptions import DocumentNotFound
from vault.storage.models import Document
from vault.storage.service import DocumentService
from vault.storage.sharing import ShareService
from vault.translation import N_

logger = logging.getLogger(__name__)

EXPORT_FORMAT_VERSION = 1


class GdprError(VaultError):
    """A data-subject request that cannot be carried out as asked; ``message`` says why, and
    ``fields`` which of the form's fields is wrong (by field name), when one is."""

    def __init__(self, message: str, *, field: str | None = None, fields: dict[str, str] | None = None) -> None:
        super().__init__(message, fields=fields if fields is not None else ({field: message} if field else None))


class SubjectNotFound(GdprError):
    status, code = 404, "not_found"


class SubjectErased(GdprError):
    """The citizen was erased: only the tombstone's date remains."""

    status, code = 404, "erased"

    def __init__(self, erased_at: datetime) -> None:
        super().__init__(f"Cette personne a été effacée le {erased_at:%d/%m/%Y}. Il ne reste que la trace de "
                         "l'effacement (sans nom).")
        self.erased_at = erased_at


def add_months(day: date, months: int) -> date:
    """Art. 12(3): "one month", "two further months" — calendar months, clamped to the month's end."""
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: one starting like a formula (=, +, -, @, tab, CR) gets
    a leading apostrophe, so that "=HYPERLINK(…)" typed in a form is never run (OWASP: CSV injection)."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _like(text: str) -> str:
    """``text`` matched literally by LIKE (its wildcards escaped)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def certificate_claims(certificate: str) -> dict[str, Any]:
    """The claims of an erasure certificate (a compact JWS), decoded for reading, not verified:
    the service signed it; who relies on it verifies it against ``/jwks``."""
    try:
        payload = certificate.split(".")[1]
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


@dataclass(frozen=True)
class ErasurePreview:
    """What an erasure will do, shown before it is confirmed."""

    citizen: Citizen | None  # None: an erasure cut short, the person's rows already gone
    documents: int
    held: list[Document]  # kept under legal hold
    recipients: list[str]  # the apps that will be named in the certificate (Art. 19)
    unfinished: bool


@dataclass(frozen=True)
class Staff:
    """Who acts in the register (for the audit log)."""

    actor: str  # "staff:<id>" or "subject:<hash>" or "system"
    label: str  # shown in the register


SUMMARY = """Vos données personnelles – {city}
{line}

Ce fichier rassemble toutes les données que l'espace citoyen de {city} détient sur vous
(article 15 du RGPD), dans des formats lisibles par d'autres logiciels (JSON, et vos documents
tels que vous les avez déposés), dans l'esprit du droit à la portabilité (article 20).

Contenu de l'archive
- compte.json : votre compte et votre identité (état civil), sans votre mot de passe.
- documents.json et le dossier documents/ : vos justificatifs, déchiffrés, avec leurs informations.
- applications.json : les services de la commune auxquels vous avez donné accès, et ce qu'ils reçoivent.
- sessions.json : les appareils connectés à votre compte.
- cles-d-acces.json : vos clés d'accès (leur nom, leurs dates) ; la clé secrète reste sur votre appareil.
- liens-de-partage.json : les liens de partage que vous avez créés, leurs documents et leurs ouvertures.
- alertes.json : les e-mails d'alerte que vous recevez (activée : true) ou avez arrêtés (false).
- e-mails.json : les e-mails que nous vous avons envoyés ces derniers jours, ou qui attendent de
  partir (objet, adresse, dates) ; nous ne les gardons que quelques jours après leur envoi.
- journal-des-acces.json : qui, en dehors de vous, a consulté ou déposé vos documents (applications,
  liens de partage, guichet de la mairie, délégué à la protection des données).
- mandats.json : les mandats que vous avez donnés au guichet de la mairie (démarches, durée, comment
  vous les avez confirmés, leur fin) et leur journal : chaque action faite pour vous, avec sa date,
  le guichet et le nom de l'agent.
- demandes.json : vos demandes au délégué à la protection des données.

Pourquoi nous traitons ces données (finalités)
- Vous permettre de vous connecter une seule fois aux services en ligne de la commune.
- Garder vos justificatifs chiffrés et les transmettre aux services de la commune, avec votre accord.
- Répondre à vos demandes sur vos données.

Qui les reçoit (destinataires)
- Les services de la commune auxquels vous avez donné accès (voir applications.json), pour ce que
  vous avez accepté de partager.
- Personne d'autre. Les données sont hébergées pour la commune ; elles ne sont ni vendues ni cédées.

Combien de temps nous les gardons (durées de conservation)
- Votre compte : tant que vous l'utilisez ; après {inactive} ans sans connexion, il est supprimé,
  après un e-mail de prévenance 30 jours avant.
- Un justificatif : jusqu'à ce que vous le supprimiez, ou jusqu'à sa date de fin de validité.
- Un lien de partage : jusqu'à sa fin (expiration, désactivation), puis 30 jours.
- Le journal de sécurité : un an.

Vos droits
Vous pouvez demander à voir vos données (accès), à les corriger (rectification), à les effacer
(effacement), à en limiter l'usage ou à vous y opposer, en ligne (« Mon compte » → « Mes données »),
au guichet de la mairie ou par courrier au délégué à la protection des données. La commune vous
répond dans un délai d'un mois (qui peut être prolongé de deux mois pour une demande complexe ; on
vous dit alors pourquoi).

Si vous n'êtes pas satisfait(e) de notre réponse, vous pouvez adresser une réclamation à la CNIL
(Commission nationale de l'informatique et des libertés) : www.cnil.fr/fr/plaintes, ou par
courrier : CNIL, 3 place de Fontenoy, TSA 80715, 75334 Paris Cedex 07.

Archive créée le {now:%d/%m/%Y à %H:%M} (UTC). Format : version {version}.
"""


class CitizenRecords(Protocol):
    """What a part above this one keeps about a citizen (the counter's mandates and their journal):
    its file in the export, and what an erasure removes with the account (counted in the certificate).
    The composition root (``vault.services``) hands them in, so that this part imports none of them."""

    export_name: str  # the file's name in the export (e.g. "mandats.json")

    def export_part(self, db: Session, citizen_id: uuid.UUID) -> list[dict[str, Any]]: ...

    def count(self, db: Session, citizen_id: uuid.UUID) -> dict[str, int]: ...


# Who finishes an erasure left unfinished by a failure, in the audit log (the job queue).
SYSTEM_JOBS = Staff(actor="system:jobs", label="file des tâches")


class GdprService:
    """The register, export, erasure and legal hold. It owns the register and the tombstones; the
    rows of accounts, alerts, apps and documents it reaches through their domains' services."""

    def __init__(self, *, settings: Settings, keystore: KeyStore, accounts: AccountService,
                 oidc: OpenIDService, documents: DocumentService, shares: ShareService,
                 alerts: AlertService, records: Sequence[CitizenRecords] = ()) -> None:
        self.settings = settings
        self.records = tuple(records)
        self.shares = shares
        self.keystore = keystore
        self.accounts = accounts
        self.oidc = oidc
        self.documents = documents
        self.alerts = alerts

    # ---- subjects -------------------------------------------------------------------------------

    def subject(self, db: Session, citizen_id: uuid.UUID) -> str:
        return audit.subject_of(self.keystore.secret(db, "subject-key"), citizen_id)

    def find_citizen(self, db: Session, citizen_id: uuid.UUID) -> Citizen:
        citizen = self.accounts.get_citizen(db=db, citizen_id=citizen_id)
        if citizen is not None:
            return citizen
        tombstone = db.get(Tombstone, self.subject(db, citizen_id))
        if tombstone is not None:
            raise SubjectErased(tombstone.erased_at)
        raise SubjectNotFound("Aucun citoyen avec cet identifiant.")

    def search_citizens(self, db: Session, *, name: str = "", birthdate: date | None = None, email: str = "",
                        limit: int = 20) -> list[Citizen]:
        """Citizens the DPO may mean: every word of ``name`` in the given, family or usage name
        (accents, case, apostrophes and hyphens aside: "Helene" finds Hélène, "oconnor" O'Connor),
        the birth date and a part of the email when given. Erased citizens have no row any more, and
        one whose erasure started is left out as well (its tombstone)."""
        words = [w for w in (fold(word) for word in name.split()) if w]
        if not words and birthdate is None and not email.strip():
            return []
        query = select(Citizen)
        for word in words:
            pattern = f"%{_like(word)}%"
            query = query.where(fold_expression(Citizen.given_name).like(pattern, escape="\\")
                                | fold_expression(Citizen.family_name).like(pattern, escape="\\")
                                | fold_expression(func.coalesce(Citizen.preferred_username, "")).like(pattern, escape="\\"))
        if birthdate is not None:
            query = query.where(Citizen.birthdate == birthdate)
        if email.strip():
            query = query.where(col(Citizen.email).like(f"%{_like(email.strip().lower())}%", escape="\\"))
        found = db.exec(query.order_by(col(Citizen.family_name), col(Citizen.given_name), col(Citizen.birthdate))
                        .limit(limit + 5)).all()
        return [c for c in found if db.get(Tombstone, self.subject(db, c.id)) is None][:limit]

    # ---- the register -----------------------------------------------------------------------------

    def open_request(self, db: Session, *, kind: str, citizen_id: uuid.UUID, channel: str, by: Staff,
                     received_on: date | None = None, identity_check: str = "", details: str | None = None) -> DataRequest:
        if kind not in REQUEST_KINDS:
            raise GdprError(f"Type de demande inconnu ({', '.join(REQUEST_KINDS)}).", field="kind")
        if channel not in CHANNELS:
            raise GdprError(f"Canal inconnu ({', '.join(CHANNELS)}).", field="channel")
        citizen = self.find_citizen(db, citizen_id)
        today = self.settings.today()
        received = received_on or today
        if received > today:
            raise GdprError(N_("La date de réception ne peut pas être dans le futur."), field="received_on")
        request = DataRequest(kind=kind, citizen_id=citizen.id, subject=self.subject(db, citizen.id),
                              requester_label=f"{citizen.given_name} {citizen.family_name} "
                                              + (f"<{citizen.email}>" if citizen.email else "(sans adresse e-mail)"),
                              channel=channel, received_on=received, due_on=add_months(received, 1),
                              identity_check=identity_check[:500],
                              identity_checked_by=by.label if identity_check else None,
                              details=(details or "").strip()[:1000] or None)
        db.add(request)
        db.flush()
        audit.record(db, actor=by.actor, action="request.opened", target=f"request:{request.id}",
                     details={"kind": kind, "channel": channel, "subject": request.subject})
        if kind == "erasure":  # the person is told it is registered, and by when it will be done
            self.accounts.notify(db=db, to=citizen.email, template="erasure_requested", citizen_id=citizen.id,
                                 received_on=received, due_on=request.due_on)
        return request

    def get_request(self, db: Session, request_id: uuid.UUID) -> DataRequest:
        request = db.get(DataRequest, request_id)
        if request is None:
            raise SubjectNotFound("Demande introuvable.")
        return request

    def list_requests(self, db: Session, *, view: str = "open") -> list[DataRequest]:
        query = select(DataRequest)
        today = self.settings.today()
        deadline = func.coalesce(DataRequest.extended_to, DataRequest.due_on)
        open_ = col(DataRequest.status).in_(("received", "in_progress"))
        if view == "overdue":
            query = query.where(open_, deadline < today)
        elif view == "week":
            query = query.where(open_, deadline >= today, deadline <= today + timedelta(days=7))
        elif view == "open":
            query = query.where(open_)
        return list(db.exec(query.order_by(deadline, col(DataRequest.received_on))))

    def extend(self, db: Session, *, request_id: uuid.UUID, reason: str, told_on: date, by: Staff) -> DataRequest:
        """Art. 12(3): two further months, with the reason told to the requester within the first month."""
        request = self.get_request(db, request_id)
        if request.status not in ("received", "in_progress"):
            raise GdprError(N_("Cette demande est close : elle ne peut plus être prolongée."))
        if request.extended_to is not None:
            raise GdprError(N_("Cette demande a déjà été prolongée (deux mois au plus)."))
        if not reason.strip():
            raise GdprError(N_("Indiquez la raison de la prolongation : elle doit être communiquée au demandeur."),
                            field="reason")
        if told_on > request.due_on:
            raise GdprError(N_("Le demandeur doit être informé de la prolongation avant la fin du premier mois."),
                            field="told_on")
        if told_on < request.received_on or told_on > self.settings.today():
            raise GdprError(N_("La date d'information du demandeur doit être entre la réception de la demande et "
                               "aujourd'hui."), field="told_on")
        # Three months from receipt (not two from the first deadline, which may have been clamped:
        # received on 31 January → due 28 February → extended to 30 April, not 28 April).
        request.extended_to = add_months(request.received_on, 3)
        request.extension_reason, request.extension_told_on = reason.strip()[:1000], told_on
        request.status = "in_progress"
        audit.record(db, actor=by.actor, action="request.extended", target=f"request:{request.id}",
                     details={"extended_to": request.extended_to.isoformat()})
        return request

    def close(self, db: Session, *, request_id: uuid.UUID, status: str, outcome: str, by: Staff,
              refusal_reason: str = "") -> DataRequest:
        request = self.get_request(db, request_id)
        if status not in ("done", "refused"):
            raise GdprError(N_("Choisissez « Traitée » ou « Refusée »."), field="status")
        if status == "refused" and not refusal_reason.strip():
            raise GdprError(N_("Un refus doit être motivé (et mentionner le droit de réclamation auprès de la CNIL)."),
                            field="refusal_reason")
        request.status, request.outcome, request.handled_by, request.closed_at = status, outcome, by.label, utcnow()
        if status == "refused":
            reason = refusal_reason.strip()
            if "CNIL" not in reason:
                reason += " Vous pouvez adresser une réclamation à la CNIL (www.cnil.fr)."
            request.refusal_reason = reason
        audit.record(db, actor=by.actor, action=f"request.{status}", target=f"request:{request.id}")
        return request

    def register_csv(self, db: Session) -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["id", "type", "demandeur", "canal", "reçue le", "échéance", "prolongée jusqu'au",
                         "motif de prolongation", "informé le", "vérification d'identité", "vérifiée par", "statut",
                         "traitée par", "clôturée le", "issue", "motif de refus"])
        for r in db.exec(select(DataRequest).order_by(col(DataRequest.received_on))):
            writer.writerow([_cell(value) for value in (
                r.id, r.kind, r.requester_label, r.channel, r.received_on, r.due_on, r.extended_to or "",
                r.extension_reason or "", r.extension_told_on or "", r.identity_check, r.identity_checked_by or "",
                r.status, r.handled_by or "", r.closed_at.isoformat() if r.closed_at else "", r.outcome or "",
                r.refusal_reason or "")])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
        yield out.getvalue()

    # ---- rectification (Art. 16) --------------------------------------------------------------------

    def rectify(self, db: Session, *, citizen_id: uuid.UUID, changes: dict[str, str], reason: str,
                by: Staff) -> Citizen:
        citizen = self.find_citizen(db, citizen_id)
        if not reason.strip():
            raise GdprError(N_("Indiquez la raison de la rectification."), field="reason")
        try:
            changed = self.accounts.rectify_identity(citizen=citizen, changes=changes)
        except InvalidInput as exc:
            raise GdprError(" ".join(exc.fields.values()), fields=exc.fields) from None
        # Which fields changed, never their values (the audit log holds no identity data).
        audit.record(db, actor=by.actor, action="identity.rectified", target=f"subject:{self.subject(db, citizen.id)}",
                     details={"fields": changed, "reason": reason.strip()[:300]})
        return citizen

    def rectification_preview(self, db: Session, *, citizen_id: uuid.UUID,
                              changes: dict[str, str]) -> list[tuple[str, object, object]]:
        """What ``rectify`` would change, changing nothing: (field, current value, new value) for
        each field that differs, in the identity's order. GdprError with the fields' messages when
        a value is refused, or when the identity is certified by FranceConnect (field "identity")."""
        citizen = self.find_citizen(db, citizen_id)
        current = {f: str(getattr(citizen, f) or "") for f in IDENTITY_FIELDS}
        asked = {k: v for k, v in changes.items() if k in current and v is not None}
        if citizen.identity_certified_at is not None and any(v != current[k] for k, v in asked.items()):
            raise GdprError(CERTIFIED_IDENTITY, field="identity")
        clean, errors = validate_identity({**current, **asked}, today=self.settings.today())
        if errors:
            raise GdprError(" ".join(errors.values()), fields=errors)
        return [(f, getattr(citizen, f), clean[f]) for f in IDENTITY_FIELDS  # type: ignore[literal-required]
                if f in clean and str(clean[f] or "") != current[f]]  # type: ignore[literal-required]

    # ---- export (Art. 15, in the spirit of Art. 20) --------------------------------------------------------

    def export_size(self, db: Session, citizen_id: uuid.UUID) -> int:
        return self.documents.total_size(db, citizen_id)

    def export(self, db: Session, *, citizen_id: uuid.UUID, by: Staff,
               progress: Callable[[int], object] | None = None) -> Iterator[bytes]:
        """The ZIP, streamed in constant memory (documents decrypted segment by segment)."""
        citizen = self.find_citizen(db, citizen_id)
        subject = self.subject(db, citizen.id)
        audit.record(db, actor=by.actor, action="export", target=f"subject:{subject}")
        documents = self.documents.documents_of(db, citizen.id)
        key_of = {d.id: self.documents.document_key(db, d) for d in documents}
        parts = self._export_parts(db, citizen, documents)

        def jsonl(value: Any) -> list[bytes]:
            return [json.dumps(value, ensure_ascii=False, indent=2, default=str).encode()]

        def counted(chunks: Iterator[bytes]) -> Iterator[bytes]:
            for chunk in chunks:
                if progress is not None:
                    progress(len(chunk))
                yield chunk

        def entries() -> Iterator[tuple[str, Iterable[bytes], bool]]:
            summary = SUMMARY.format(city=self.settings.city_name, line="=" * 60, now=utcnow(),
                                     inactive=self.settings.retention_inactive_years, version=EXPORT_FORMAT_VERSION)
            yield "LISEZ-MOI.txt", [summary.encode()], True
            for name, value in parts.items():
                yield name, jsonl(value), True
            for document, plaintext in self.documents.plaintexts(documents, key_of):
                yield f"documents/{document.id}-{document.filename}", counted(plaintext), False

        return stream_zip(entries())

    def _export_parts(self, db: Session, citizen: Citizen, documents: list[Document]) -> dict[str, Any]:
        apps = self.oidc.apps_of(db=db, citizen_id=citizen.id)
        return {
            "compte.json": {
                "format": EXPORT_FORMAT_VERSION,
                "id": str(citizen.id), "email": citizen.email, "identifiant": citizen.login_id,
                "email_verifie_le": citizen.email_verified_at, "cree_le": citizen.created_at,
                "derniere_connexion": citizen.last_login_at,
                "double_authentification": citizen.totp_enabled_at is not None,
                "identite_certifiee_par": citizen.identity_source, "identite_certifiee_le": citizen.identity_certified_at,
                "comptes_relies": self.accounts.federated_identities(db=db, citizen_id=citizen.id),
                "identite": {"given_name": citizen.given_name, "family_name": citizen.family_name,
                             "preferred_username": citizen.preferred_username,
                             "birthdate": citizen.birthdate.isoformat(), "gender": citizen.gender,
                             "birthplace": citizen.birthplace,
                             "birthplace_nom": str(geo.commune_label(citizen.birthplace)) if citizen.birthplace else "",
                             "birthcountry": citizen.birthcountry,
                             "birthcountry_nom": geo.country_label(citizen.birthcountry)},
            },
            "documents.json": [{
                "id": str(d.id), "fichier": f"documents/{d.id}-{d.filename}", "type": d.type, "titre": d.title,
                "nom_du_fichier": d.filename, "type_media": d.media_type, "taille": d.size, "sha256": d.sha256,
                "valable_jusqu_au": d.valid_until, "ajoute_le": d.created_at, "modifie_le": d.updated_at,
                "depose_par": (f"ajouté au guichet par {d.source_name}" if d.source == "counter"
                               else d.source_name or "vous"), "analyse_antivirus": d.scan_result,
                "conservation_legale": d.legal_hold} for d in documents],
            "applications.json": [self._app_part(db, citizen.id, client, consent) for client, consent, _ in reversed(apps)],
            "alertes.json": [{"alerte": ALERT_KINDS[kind], "code": kind, "activee": on}
                             for kind, on in self.alerts.export(db, citizen_id=citizen.id).items()],
            "sessions.json": [{"connecte_le": s.created_at, "derniere_activite": s.last_seen_at,
                               "appareil": s.user_agent, "methodes": s.amr.split()}
                              for s in self.accounts.list_sessions(db=db, citizen_id=citizen.id, include_pending=True)],
            "cles-d-acces.json": [{"nom": p.name, "ajoutee_le": p.created_at, "derniere_utilisation": p.last_used_at,
                                   "synchronisable": p.backup_eligible, "type": p.attachment}
                                  for p in self.accounts.list_passkeys(db=db, citizen_id=citizen.id)],
            "liens-de-partage.json": [{
                "id": str(v.link.id), "note": v.link.label, "cree_le": v.link.created_at,
                "valable_jusqu_au": v.link.expires_at, "etat": v.state, "desactive_le": v.link.revoked_at,
                "verrouille_le": v.link.locked_at, "premiere_ouverture": v.link.first_opened_at,
                "ouvertures": v.link.openings, "codes_errones": v.link.failed_codes,
                "documents": [{"id": str(d.id), "titre": d.title} for d in v.documents]}
                for v in self.shares.links_of(db, citizen.id)],
            "e-mails.json": mail.messages_of(db, citizen_id=citizen.id),
            "journal-des-acces.json": [{"date": e.at, "service": e.actor_name, "type": e.actor_kind,
                                        "action": e.action, "document": e.document_title}
                                       for e in self.documents.access_log(db, citizen.id, limit=100_000)],
            **{record.export_name: record.export_part(db, citizen.id) for record in self.records},
            "demandes.json": [{"id": str(r.id), "type": r.kind, "canal": r.channel, "recue_le": r.received_on,
                               "echeance": r.extended_to or r.due_on, "statut": r.status, "issue": r.outcome,
                               "votre_demande": r.details}
                              for r in db.exec(select(DataRequest).where(DataRequest.citizen_id == citizen.id))],
        }

    def _app_part(self, db: Session, citizen_id: uuid.UUID, client: OAuthClient, consent: Consent) -> dict[str, Any]:
        """An app in the export: what it receives, the documents it may read and those it deposited."""
        readable, deposited = self.oidc.document_access(db=db, citizen_id=citizen_id, client_id=client.client_id)
        return {
            "application": client.name, "client_id": client.client_id, "autorise_le": consent.granted_at,
            "scopes": consent.scope.split(), "informations_transmises": claims_for_scope(consent.scope),
            "justificatifs_consultables": [{"id": str(d.id), "titre": d.title, "depuis": since}
                                           for d, since in readable],
            "justificatifs_deposes": [{"id": str(d.id), "titre": d.title, "le": d.created_at} for d in deposited],
        }

    # ---- legal hold (Art. 17(3)(b)) ---------------------------------------------------------------------

    def hold(self, db: Session, *, document_id: uuid.UUID, reason: str, by: Staff) -> Document:
        """Keep a document whatever its owner, the retention rules or an erasure ask, until released."""
        document = self._document(db, document_id)
        if not reason.strip():
            raise GdprError(N_("Indiquez l'obligation légale qui impose de conserver ce document."), field="reason")
        self.documents.place_hold(document, reason)
        assert document.legal_hold is not None  # just placed
        audit.record(db, actor=by.actor, action="document.held", target=f"document:{document.id}",
                     details={"reason": document.legal_hold[:300]})
        return document

    def release(self, db: Session, *, document_id: uuid.UUID, by: Staff) -> str | None:
        """End a legal hold. A document kept after its owner's erasure has no other reason to exist:
        it is deleted; the blob key to delete after the commit is returned (else None)."""
        document = self._document(db, document_id)
        if document.legal_hold is None:
            raise GdprError(N_("Ce document n'est pas sous conservation légale."))
        audit.record(db, actor=by.actor, action="document.released", target=f"document:{document.id}",
                     details={"deleted": document.owner_id is None})
        return self.documents.release_hold(db, document)

    def _document(self, db: Session, document_id: uuid.UUID) -> Document:
        try:
            return self.documents.find(db, document_id)
        except DocumentNotFound:
            raise SubjectNotFound("Aucun document avec cet identifiant.") from None

    # ---- erasure (Art. 17) --------------------------------------------------------------------------------

    def erase(self, db: Session, *, citizen_id: uuid.UUID, reason: str, by: Staff,
              request_id: uuid.UUID | None = None) -> str:
        """Erase a citizen; return the erasure certificate (a JWS signed by the service's key).

        Idempotent and resumable: each stage commits, and running it again after a failure (the
        object store down, say) finishes the job; once done it returns the first certificate.
        Order: sessions and tokens revoked → legal-hold documents re-keyed under the KEK → the
        citizen key destroyed (crypto-shredding: every copy of every object is now unreadable,
        backups included) → every version of every object deleted → rows deleted or anonymised →
        tombstone and certificate.
        """
        certificate = self._erase(db, subject=self.subject(db, citizen_id), citizen_id=citizen_id, reason=reason,
                                  by=by, request_id=request_id)
        assert certificate is not None  # never left to a job here
        return certificate

    def erase_for_request(self, db: Session, *, request: DataRequest, reason: str, by: Staff,
                          later: bool = False) -> str | None:
        """The register's erasure: starts it, or finishes one that was interrupted after the
        citizen's rows were gone (the request then only knows the person by their subject).

        ``later``: when the citizen has more than ``VAULT_ERASURE_INLINE_OBJECTS`` objects, only the
        stages that remove the citizen run here (one transaction, committed); deleting the objects
        and signing the certificate are left to the job queue (``finish_pending``), and None is
        returned: the request shows the erasure as in progress until the job closes it."""
        if request.citizen_id is not None:
            return self._erase(db, subject=self.subject(db, request.citizen_id), citizen_id=request.citizen_id,
                               reason=reason, by=by, request_id=request.id, later=later)
        tombstone = db.get(Tombstone, request.subject)
        if tombstone is None:
            raise SubjectNotFound("Aucun citoyen pour cette demande.")
        if tombstone.completed_at is not None:
            raise GdprError(f"Cette personne a déjà été effacée (le {tombstone.erased_at:%d/%m/%Y}).")
        return self._erase(db, subject=request.subject, citizen_id=None, reason=reason, by=by,
                           request_id=tombstone.request_id)

    def _erase(self, db: Session, *, subject: str, citizen_id: uuid.UUID | None, reason: str, by: Staff,
               request_id: uuid.UUID | None, later: bool = False) -> str | None:
        tombstone = db.get(Tombstone, subject)
        if tombstone is not None and tombstone.completed_at is not None:
            return tombstone.certificate or ""
        citizen = self.accounts.get_citizen(db=db, citizen_id=citizen_id)
        if citizen is None and tombstone is None:
            raise SubjectNotFound("Aucun citoyen avec cet identifiant.")
        if not reason.strip():
            raise GdprError(N_("Indiquez le motif de l'effacement."), field="reason")
        if tombstone is None:
            tombstone = Tombstone(subject=subject, request_id=request_id, counts={})
            db.add(tombstone)
            audit.record(db, actor=by.actor, action="erasure.started", target=f"subject:{subject}",
                         details={"request": str(request_id) if request_id else None, "reason": reason.strip()[:300]})
        counts: dict[str, Any] = dict(tombstone.counts)

        # Where to send the certificate: known only until the account row goes (an erasure resumed
        # after a failure has no address left, and sends nothing).
        email = citizen.email if citizen is not None else None
        if citizen is not None:
            self._forget_citizen(db, citizen, subject=subject, counts=counts)
            if later and len(counts.get("blob_keys", [])) > self.settings.erasure_inline_objects:
                # Staged for the job: who erased (the audit's actor) and where the certificate goes,
                # kept in the tombstone only until the job completes it (then removed).
                counts["later"] = {"actor": by.actor, "label": by.label, "notify": email}
                tombstone.counts = counts
                request = db.get(DataRequest, tombstone.request_id) if tombstone.request_id else None
                if request is not None and request.status == "received":
                    request.status = "in_progress"
                db.info["erasure_pending"] = True  # the job queue is told after the commit (vault.jobs)
                db.commit()
                logger.info("citizen removed; their objects are deleted by a job", extra={"subject": subject})
                return None
            tombstone.counts = counts
            db.commit()  # from here the citizen is gone; what remains is deleting objects
        return self._finish(db, subject=subject, by=by, email=email, wait=True)

    def finish_pending(self, db: Session) -> str | None:
        """The job queue's part of erasure: take one erasure whose citizen is gone but whose objects
        and certificate are not done (staged by ``erase_for_request(later=True)``, or cut short by
        the object store), finish it and close its request; the subject finished, or None when none
        is left. Taken with ``FOR UPDATE SKIP LOCKED``: two workers never finish the same erasure,
        and the row stays locked until its certificate is committed (a worker that dies releases it
        with its connection, and the next run starts over: deleting objects twice removes nothing
        more)."""
        tombstone = db.exec(select(Tombstone).where(col(Tombstone.completed_at).is_(None))
                            .order_by(col(Tombstone.erased_at)).limit(1).with_for_update(skip_locked=True)).first()
        if tombstone is None:
            db.rollback()
            return None
        self._finish(db, subject=tombstone.subject, by=None, email=None, wait=False)
        return tombstone.subject

    def _finish(self, db: Session, *, subject: str, by: Staff | None, email: str | None, wait: bool) -> str:
        """Stages 5 and 6: the objects, then the certificate; the tombstone is locked meanwhile
        (``wait``: behind a job finishing the same erasure, whose certificate is then returned)."""
        if db.get_bind().dialect.name == "sqlite":
            # No row locks in SQLite: a write takes the database's write lock, held until the commit
            # below, so that another process or thread finishing the same erasure waits, then finds it done.
            db.exec(update(Tombstone).where(col(Tombstone.subject) == subject).values(subject=subject))
        tombstone = db.exec(select(Tombstone).where(Tombstone.subject == subject)
                            .with_for_update(skip_locked=not wait)
                            .execution_options(populate_existing=True)).first()
        if tombstone is None:  # locked by a job (``wait`` False only in finish_pending, which holds it)
            raise GdprError("Cet effacement est en cours.")
        if tombstone.completed_at is not None:
            return tombstone.certificate or ""
        counts: dict[str, Any] = dict(tombstone.counts)
        staged = counts.pop("later", None)
        if staged is not None:  # left to a job by the register: its actor, and the certificate's address
            by = by or Staff(actor=staged["actor"], label=staged["label"])
            email = email or staged.get("notify")
        by = by or SYSTEM_JOBS

        # 5. Every version of every object, in batches (resumable: deleting twice removes nothing more).
        removed = self.documents.store.delete_many(counts.get("blob_keys", []))  # BlobStoreUnavailable: run again
        counts["object_versions_deleted"] = counts.get("object_versions_deleted", 0) + removed
        counts.pop("blob_keys", None)

        erased_at = tombstone.erased_at
        claims = {
            "iss": self.settings.issuer, "iat": int(time.time()), "jti": str(uuid.uuid4()),
            "typ": "erasure-certificate", "sub": subject, "request": str(tombstone.request_id or ""),
            "erased_at": erased_at.isoformat(), "legal_basis": "RGPD article 17",
            "destroyed": {
                "login_sessions": counts.get("sessions", 0), "tokens_revoked": counts.get("tokens_revoked", 0),
                "documents": len(counts.get("documents", [])),
                "document_sha256": [d["sha256"] for d in counts.get("documents", [])],
                "object_versions": counts["object_versions_deleted"],
                "citizen_key": counts.get("citizen_key_destroyed", False),
                "consents": counts.get("consents", 0), "access_log_entries": counts.get("access_log_entries", 0),
                "share_links": counts.get("share_links", 0),
                "mandates": counts.get("mandates", 0), "mandate_journal_lines": counts.get("mandate_journal_lines", 0),
            },
            "kept_under_legal_hold": counts.get("kept_under_legal_hold", []),
            "recipients_notified": counts.get("recipients", []),  # Art. 19
        }
        certificate = self.keystore.sign(db, claims, alg="ES256", typ="erasure-certificate+jwt")
        tombstone.counts = {k: v for k, v in counts.items() if k != "documents"} | {
            "documents": len(counts.get("documents", []))}
        tombstone.certificate = certificate
        tombstone.completed_at = utcnow()
        audit.record(db, actor=by.actor, action="erasure.completed", target=f"subject:{subject}",
                     details={"documents": len(counts.get("documents", [])),
                              "object_versions": counts["object_versions_deleted"]})
        request = db.get(DataRequest, tombstone.request_id) if staged is not None and tombstone.request_id else None
        if request is not None and request.status in ("received", "in_progress"):
            self.close(db, request_id=request.id, status="done", by=by,
                       outcome=f"Effacement effectué ; certificat signé de {len(certificate)} caractères, sur la "
                               "page de la demande.")
        db.commit()
        logger.info("citizen erased", extra={"subject": subject})
        if email:
            # Queued after the citizen's mail was forgotten: the one row left with their address, until
            # the mail leaves (then deleted at once, not kept like other mail).
            self.accounts.notify(db=db, to=email, template="erasure_done", forget_when_done=True, erased_at=erased_at,
                                 held=len(counts.get("kept_under_legal_hold", [])),
                                 attachments=[Attachment("certificat-effacement.jwt", "application/jwt",
                                                         certificate.encode())])
            db.commit()
        return certificate

    def _forget_citizen(self, db: Session, citizen: Citizen, *, subject: str, counts: dict[str, Any]) -> None:
        """The erasure's stages that remove the citizen, each domain forgetting its own rows; what
        was destroyed is added to ``counts`` (the certificate's content). One transaction."""
        # 1. Nothing can act for the citizen any more.
        counts["sessions"] = counts.get("sessions", 0) + self.accounts.logout_everywhere(db=db, citizen_id=citizen.id)
        counts["tokens_revoked"] = counts.get("tokens_revoked", 0) + self.oidc.revoke_all(db=db, citizen_id=citizen.id)
        # Art. 19: the apps that received the citizen's data are told in the certificate.
        counts["recipients"] = self.oidc.recipients(db=db, citizen_id=citizen.id)
        # 2. Legal hold: those documents are kept, their key re-wrapped by the KEK.
        held = self.documents.keep_held(db, citizen.id)
        counts["kept_under_legal_hold"] = [{"document_id": str(d.id), "reason": d.legal_hold, "sha256": d.sha256}
                                           for d in held]
        to_delete = self.documents.documents_of(db, citizen.id)
        counts["documents"] = [{"sha256": d.sha256, "size": d.size} for d in to_delete]
        counts["blob_keys"] = [d.blob_key for d in to_delete]
        # 3. Crypto-shredding.
        counts["citizen_key_destroyed"] = self.documents.shred_key(db, citizen.id)
        # 4. Rows: each domain forgets its own; the register keeps the requests (accountability)
        # without naming the person.
        counts["share_links"] = self.shares.forget(db, citizen.id)
        counts["access_log_entries"] = self.documents.forget(db, citizen.id)
        counts["consents"] = self.oidc.forget(db=db, citizen=citizen)
        self.alerts.forget(db, citizen_id=citizen.id)
        # The mail outbox: what was sent to the citizen (kept a few days) and what still waits.
        counts["mails"] = counts.get("mails", 0) + mail.forget_recipient(
            db, citizen_id=citizen.id, addresses=[citizen.email] if citizen.email else [])
        # The records of the parts above this one (the counter's mandates and their journal) go with
        # the account row, by cascade: counted here, before it goes.
        for record in self.records:
            counts.update(record.count(db, citizen.id))
        db.exec(update(DataRequest).where(col(DataRequest.citizen_id) == citizen.id)
                .values(requester_label=f"Personne effacée ({subject[:12]})", citizen_id=None))
        self.accounts.forget(db=db, citizen=citizen)

    def erasure_preview(self, db: Session, *, request: DataRequest) -> ErasurePreview:
        """What erasing the request's citizen would destroy and keep, for the confirmation page;
        for an erasure cut short, only what is left to finish. GdprError when there is nothing to erase."""
        if request.kind != "erasure":
            raise GdprError(N_("Cette demande n'est pas une demande d'effacement."))
        tombstone = db.get(Tombstone, request.subject)
        if request.citizen_id is None:
            if tombstone is None:
                raise SubjectNotFound("Aucun citoyen pour cette demande.")
            if tombstone.completed_at is not None:
                raise GdprError(f"Cette personne a déjà été effacée (le {tombstone.erased_at:%d/%m/%Y}).")
            if "later" in tombstone.counts:  # left to the job queue, which finishes it (and retries it)
                raise GdprError("Cet effacement est en cours.")
        if request.status not in ("received", "in_progress"):
            raise GdprError(N_("Cette demande est close."))
        if request.citizen_id is None:
            return ErasurePreview(citizen=None, documents=0, held=[], recipients=[], unfinished=True)
        citizen = self.find_citizen(db, request.citizen_id)
        documents = self.documents.documents_of(db, citizen.id)
        return ErasurePreview(citizen=citizen, documents=len(documents),
                              held=[d for d in documents if d.legal_hold is not None],
                              recipients=[r["name"] for r in self.oidc.recipients(db=db, citizen_id=citizen.id)],
                              unfinished=False)

    def erasure_token(self, db: Session, *, request_id: uuid.UUID, actor: str) -> str:
        """The token the erasure's confirmation page carries: the erase button works only from that
        page, for that request and that staff member (a keyed HMAC; nothing stored)."""
        key = self.keystore.secret(db, "erasure-confirmation")
        return hmac.new(key, f"{request_id}|{actor}".encode(), hashlib.sha256).hexdigest()

    def erasure_token_ok(self, db: Session, *, request_id: uuid.UUID, actor: str, token: str) -> bool:
        return hmac.compare_digest(self.erasure_token(db, request_id=request_id, actor=actor).encode(),
                                   token.encode())

    def tombstone(self, db: Session, citizen_id: uuid.UUID) -> Tombstone | None:
        return db.get(Tombstone, self.subject(db, citizen_id))

    def request_citizen(self, db: Session, request: DataRequest) -> uuid.UUID:
        """The citizen a request is about; SubjectErased (404, with the date) once they were erased."""
        if request.citizen_id is not None:
            return request.citizen_id
        tombstone = db.get(Tombstone, request.subject)
        if tombstone is not None:
            raise SubjectErased(tombstone.erased_at)
        raise SubjectNotFound("Aucun citoyen pour cette demande.")
