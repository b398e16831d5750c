"""Mail text comes from templates/mail/*.txt: the French is exactly what citizens have always
received, and English comes from the same catalogue as the pages."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jinja2 import UndefinedError

from vault.alerts.models import KINDS
from vault.settings import Settings
from vault.web.mails import MAIL_TEMPLATES, render_mail

DOCUMENT_ID = uuid.UUID("0b7e2c1a-5d4f-4e1b-9a3c-2f6d8e9a1b2c")
UNSUBSCRIBE = "https://moncompte.ville.example.fr/alerts/unsubscribe?token=TOKEN"
ALERT_FOOTER = (
    "Pour ne plus recevoir ce type d'alerte (sans vous connecter) : " + UNSUBSCRIBE + "\n"
    "Pour choisir vos alertes : « Mon compte », https://moncompte.ville.example.fr/account\n\n-- \nVille-sur-Loire\n"
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(issuer="https://moncompte.ville.example.fr", city_name="Ville-sur-Loire", data_dir=tmp_path)


def contexts(settings: Settings) -> dict[str, dict[str, Any]]:
    document = SimpleNamespace(id=DOCUMENT_ID, title="Facture EDF", valid_until=date(2026, 11, 29))
    alert = {"settings": settings, "unsubscribe_url": UNSUBSCRIBE}
    return {
        "verify_email": {"settings": settings, "first_name": "Jeanne", "token": "TOKEN"},
        "registration_attempted": {"settings": settings},
        "password_reset": {"settings": settings, "token": "TOKEN"},
        "document_expired": {"settings": settings, "document": document, "deletion_date": date(2026, 12, 30)},
        "account_unused": {"settings": settings, "last_activity": datetime(2023, 11, 30, 8, 15),
                           "deletion_date": date(2026, 12, 30)},
        "alert_documents_granted": {**alert, "kind_label": KINDS["grants"], "app_name": "Cantine",
                                    "titles": ["Facture EDF", "Quittance de loyer"]},
        "alert_document_deposited": {**alert, "kind_label": KINDS["deposits"], "app_name": "Cantine",
                                     "document_id": DOCUMENT_ID, "title": "Facture de cantine"},
        "alert_share_link_opened": {**alert, "kind_label": KINDS["share_opened"], "label": "Pour le notaire",
                                    "opened_at": datetime(2026, 11, 30, 14, 5), "titles": ["Facture EDF"]},
        "alert_validity_ending": {**alert, "kind_label": KINDS["validity"], "document_id": DOCUMENT_ID,
                                  "title": "Carte d'identité", "valid_until": date(2026, 12, 30), "days_left": 30},
        "password_changed": {"settings": settings, "at": datetime(2026, 11, 30, 14, 5)},
        "totp_enabled": {"settings": settings},
        "totp_disabled": {"settings": settings},
        "totp_disabled_at_counter": {"settings": settings, "service": "Guichet unique de l'Hôtel de Ville",
                                     "at": datetime(2026, 11, 30, 14, 5)},
        "erasure_requested": {"settings": settings, "received_on": date(2026, 11, 30), "due_on": date(2026, 12, 30)},
        "erasure_done": {"settings": settings, "erased_at": datetime(2026, 12, 2, 9, 0), "held": 1},
        "email_change_confirm": {"settings": settings, "token": "TOKEN", "hours": 24},
        "email_change_requested": {"settings": settings, "new_email": "n***@example.org"},
        "email_changed": {"settings": settings, "new_email": "n***@example.org"},
        "account_opened": {"settings": settings, "first_name": "Jeanne", "token": "TOKEN", "days": 7},
        "mandate_granted": {"settings": settings, "service": "Guichet unique de l'Hôtel de Ville",
                            "procedures": ["État civil", "Logement"], "ends_at": datetime(2026, 12, 30, 14, 5)},
    }


FRENCH = {
    "verify_email": (
        "Confirmez votre adresse e-mail",
        "Bonjour Jeanne,\n\n"
        "Pour terminer la création de votre compte, ouvrez ce lien :\n\n"
        "https://moncompte.ville.example.fr/verify-email?token=TOKEN\n\n"
        "Ce lien est valable 48 heures et ne sert qu'une fois.\n"
        "Si vous n'avez pas créé de compte, ignorez ce message.\n"
        "\n-- \nVille-sur-Loire\n",
    ),
    "registration_attempted": (
        "Une inscription a été tentée avec votre adresse",
        "Bonjour,\n\nQuelqu'un (peut-être vous) a voulu créer un compte avec cette adresse e-mail, "
        "mais un compte existe déjà.\n\n"
        "Pour vous connecter : https://moncompte.ville.example.fr/login\n"
        "Mot de passe oublié : https://moncompte.ville.example.fr/password/forgot\n\n"
        "Si ce n'était pas vous, vous pouvez ignorer ce message : votre compte n'a pas changé.\n"
        "\n-- \nVille-sur-Loire\n",
    ),
    "password_reset": (
        "Réinitialisation de votre mot de passe",
        "Bonjour,\n\nVous avez demandé à changer votre mot de passe. Ouvrez ce lien :\n\n"
        "https://moncompte.ville.example.fr/password/reset?token=TOKEN\n\n"
        "Ce lien est valable 30 minutes et ne sert qu'une fois.\n"
        "Si vous n'avez rien demandé, ignorez ce message : votre mot de passe ne change pas.\n"
        "\n-- \nVille-sur-Loire\n",
    ),
    "document_expired": (
        "Un de vos justificatifs a expiré",
        "Bonjour,\n\nVotre justificatif « Facture EDF » n'est plus valable depuis le 29/11/2026. Il sera supprimé "
        "de votre coffre-fort le 30/12/2026.\n\nPour le garder, indiquez une nouvelle date de validité dans "
        f"« Mes justificatifs » : https://moncompte.ville.example.fr/documents/{DOCUMENT_ID}\n",
    ),
    "account_unused": (
        "Votre espace citoyen va être supprimé",
        "Bonjour,\n\nVous ne vous êtes pas connecté(e) à votre espace citoyen depuis le 30/11/2023. Sans "
        "connexion de votre part, votre compte et vos justificatifs seront supprimés le 30/12/2026.\n\n"
        "Pour les garder, il suffit de vous connecter : https://moncompte.ville.example.fr/login\n",
    ),
    "alert_documents_granted": (
        "Une application peut consulter vos justificatifs",
        "Bonjour,\n\nL'application Cantine peut maintenant consulter :\n- Facture EDF\n- Quittance de loyer\n\n"
        "Pour retirer cet accès, ouvrez « Mes applications » : https://moncompte.ville.example.fr/account/apps\n\n"
        "Vous recevez cet e-mail parce que l'alerte « Une application peut consulter des justificatifs que j'ai "
        "choisis » est activée.\n" + ALERT_FOOTER,
    ),
    "alert_document_deposited": (
        "Un document a été déposé dans votre coffre-fort",
        "Bonjour,\n\nL'application Cantine a déposé le document « Facture de cantine » dans votre coffre-fort.\n\n"
        f"Pour le consulter : https://moncompte.ville.example.fr/documents/{DOCUMENT_ID}\n\n"
        "Vous recevez cet e-mail parce que l'alerte « Une application dépose un document dans mon coffre-fort » "
        "est activée.\n" + ALERT_FOOTER,
    ),
    "alert_share_link_opened": (
        "Votre lien de partage vient d'être ouvert",
        "Bonjour,\n\nVotre lien de partage « Pour le notaire » a été ouvert pour la première fois le 30/11/2026 à "
        "14:05.\n\nIl donne accès à :\n- Facture EDF\n\nSi vous ne l'avez partagé avec personne, désactivez ce "
        "lien dans « Mes liens de partage » : https://moncompte.ville.example.fr/shares\n\n"
        "Vous recevez cet e-mail parce que l'alerte « Un de mes liens de partage est ouvert pour la première fois » "
        "est activée.\n" + ALERT_FOOTER,
    ),
    "alert_validity_ending": (
        "Un de vos justificatifs arrive en fin de validité",
        "Bonjour,\n\nVotre justificatif « Carte d'identité » est valable jusqu'au 30/12/2026 : plus que 30 jours.\n\n"
        "Pensez à en demander un nouveau, puis à le déposer dans « Mes justificatifs » (ou à corriger sa date de "
        f"validité) : https://moncompte.ville.example.fr/documents/{DOCUMENT_ID}\n\n"
        "Vous recevez cet e-mail parce que l'alerte « Un justificatif arrive en fin de validité (30 jours, puis 7 "
        "jours avant) » est activée.\n" + ALERT_FOOTER,
    ),
    "password_changed": (
        "Votre mot de passe a été changé",
        "Bonjour,\n\nLe mot de passe de votre compte a été changé le 30/11/2026 à 14:05. Vos autres appareils ont été "
        "déconnectés.\n\nSi ce n'est pas vous, choisissez tout de suite un nouveau mot de passe avec « Mot de passe "
        "oublié » : https://moncompte.ville.example.fr/password/forgot\npuis prévenez l'accueil de la mairie.\n\n"
        "-- \nVille-sur-Loire\n",
    ),
    "totp_enabled": (
        "La double authentification est activée",
        "Bonjour,\n\nLa double authentification vient d'être activée sur votre compte : à chaque connexion, un code de "
        "votre application vous sera demandé en plus du mot de passe. Gardez vos codes de secours en lieu sûr.\n\n"
        "Si ce n'est pas vous, changez votre mot de passe avec « Mot de passe oublié » et prévenez l'accueil de la "
        "mairie : https://moncompte.ville.example.fr/password/forgot\n\n-- \nVille-sur-Loire\n",
    ),
    "totp_disabled": (
        "La double authentification est désactivée",
        "Bonjour,\n\nLa double authentification vient d'être désactivée sur votre compte : seul le mot de passe sera "
        "demandé à la connexion.\n\nSi ce n'est pas vous, changez votre mot de passe avec « Mot de passe oublié », "
        "réactivez la double authentification et prévenez l'accueil de la mairie : "
        "https://moncompte.ville.example.fr/password/forgot\n\n-- \nVille-sur-Loire\n",
    ),
    "totp_disabled_at_counter": (
        "La double authentification a été désactivée au guichet de la mairie",
        "Bonjour,\n\nLe 30/11/2026 à 14:05, au guichet « Guichet unique de l'Hôtel de Ville », un agent a vérifié "
        "votre pièce d'identité et désactivé, à votre demande, la double authentification de votre compte. Vos codes "
        "de secours ne servent plus. Tous vos appareils ont été déconnectés, ainsi que les applications et services en "
        "ligne où vous vous étiez connecté(e) avec votre compte.\n\nVous vous connectez maintenant avec votre seul "
        "mot de passe. Pour en choisir un nouveau, utilisez « Mot de passe oublié » : "
        "https://moncompte.ville.example.fr/password/forgot\nUne fois connecté(e), vous "
        "pourrez réactiver la double authentification dans « Mon compte ».\n\nSi vous n'êtes pas passé(e) au guichet "
        "de la mairie, prévenez-la tout de suite.\n\n-- \nVille-sur-Loire\n",
    ),
    "erasure_requested": (
        "Votre demande d'effacement est enregistrée",
        "Bonjour,\n\nVotre demande d'effacement de vos données (article 17 du RGPD), reçue le 30/11/2026, est "
        "enregistrée. Le délégué à la protection des données vous répondra au plus tard le 30/12/2026.\n\nQuand "
        "l'effacement sera fait, vous recevrez un e-mail avec son certificat. Si vous souhaitez garder une copie de vos "
        "données, téléchargez-la d'ici là dans « Mon compte », rubrique « Mes données » : "
        "https://moncompte.ville.example.fr/account/data\n\n-- \nVille-sur-Loire\n",
    ),
    "erasure_done": (
        "Vos données ont été effacées",
        "Bonjour,\n\nVos données ont été effacées le 02/12/2026 (article 17 du RGPD) : votre compte, vos documents et "
        "leurs clés de chiffrement, vos connexions et vos autorisations.\n\n1 document(s) doivent être conservés pour "
        "respecter une obligation légale ; ils ne vous sont plus rattachés.\n\nLe certificat d'effacement est joint à "
        "cet e-mail (fichier certificat-effacement.jwt, signé par le service ; ses clés publiques sont à l'adresse "
        "suivante) : https://moncompte.ville.example.fr/jwks\n\nCe message est le dernier que vous recevrez de ce "
        "service.\n\n-- \nVille-sur-Loire\n",
    ),
    "email_change_confirm": (
        "Confirmez votre nouvelle adresse e-mail",
        "Bonjour,\n\nVous avez demandé à utiliser cette adresse pour votre compte de l'espace citoyen. Pour la "
        "confirmer, ouvrez ce lien :\n\nhttps://moncompte.ville.example.fr/account/email/confirm?token=TOKEN\n\nCe lien "
        "est valable 24 heures et ne sert qu'une fois. Tant qu'il n'est pas ouvert, votre compte garde son ancienne "
        "adresse.\nSi vous n'avez rien demandé, ignorez ce message.\n\n-- \nVille-sur-Loire\n",
    ),
    "email_change_requested": (
        "Changement d'adresse e-mail demandé",
        "Bonjour,\n\nUn changement de l'adresse e-mail de votre compte vers n***@example.org a été demandé. Il ne "
        "prendra effet que si le lien envoyé à cette nouvelle adresse est ouvert.\n\nSi ce n'est pas vous, changez votre "
        "mot de passe avec « Mot de passe oublié » et prévenez l'accueil de la mairie : "
        "https://moncompte.ville.example.fr/password/forgot\n\n-- \nVille-sur-Loire\n",
    ),
    "email_changed": (
        "L'adresse e-mail de votre compte a changé",
        "Bonjour,\n\nVotre compte de l'espace citoyen utilise désormais l'adresse n***@example.org. Ce message est le "
        "dernier envoyé à cette adresse-ci.\n\nSi ce n'est pas vous, prévenez tout de suite l'accueil de la mairie. "
        "https://moncompte.ville.example.fr/\n\n-- \nVille-sur-Loire\n",
    ),
    "account_opened": (
        "Votre compte de l'espace citoyen est ouvert",
        "Bonjour Jeanne,\n\nVotre compte a été ouvert à l'accueil de la mairie. Pour vous en servir, choisissez votre "
        "mot de passe avec ce lien :\n\nhttps://moncompte.ville.example.fr/account/activate?token=TOKEN\n\nCe lien est "
        "valable 7 jours et ne sert qu'une fois. Ensuite, connectez-vous avec cette adresse e-mail et votre mot de "
        "passe.\nSi vous n'êtes pas passé(e) à l'accueil de la mairie, ignorez ce message et prévenez-la.\n\n-- \n"
        "Ville-sur-Loire\n",
    ),
    "mandate_granted": (
        "Vous avez donné un mandat au guichet de la mairie",
        "Bonjour,\n\nVous avez donné un mandat au guichet « Guichet unique de l'Hôtel de Ville ». Jusqu'au 30/12/2026 "
        "à 14:05, ses agents pourront voir vos documents, en ajouter, les télécharger quand la démarche le demande et "
        "vous connecter aux services de la ville qui l'acceptent, pour :\n- État civil\n- Logement\n\nIls ne pourront "
        "jamais supprimer un document, changer votre mot de passe, votre adresse ou votre identité, exporter ou effacer "
        "vos données. Tout ce qu'ils font est noté dans votre journal.\n\nPour voir ce journal ou mettre fin au mandat "
        "à tout moment : « Mes mandats », https://moncompte.ville.example.fr/account/mandates\n\n-- \nVille-sur-Loire\n",
    ),
}


def test_every_mail_template_is_tested() -> None:
    templates = {name.removesuffix(".txt") for name in MAIL_TEMPLATES.list_templates() if not name.startswith("_")}
    assert templates == set(FRENCH)


@pytest.mark.parametrize("name", sorted(FRENCH))
def test_the_french_mail_is_unchanged(name: str, settings: Settings) -> None:
    assert render_mail(name, contexts(settings)[name]) == FRENCH[name]


@pytest.mark.parametrize("name", sorted(FRENCH))
def test_the_mail_reads_in_english(name: str, settings: Settings) -> None:
    subject, body = render_mail(name, contexts(settings)[name], lang="en")
    assert subject != FRENCH[name][0] and body.startswith("Hello")
    assert "Bonjour" not in body and "https://moncompte.ville.example.fr/" in body


def test_a_document_title_is_not_escaped(settings: Settings) -> None:
    """Plain text: what the citizen typed reaches the mail as typed."""
    context = contexts(settings)["document_expired"]
    context["document"].title = "Loyer & charges <mars>"
    assert "« Loyer & charges <mars> »" in render_mail("document_expired", context)[1]


def test_a_missing_value_fails_instead_of_leaving_a_blank(settings: Settings) -> None:
    with pytest.raises(UndefinedError, match="token"):
        render_mail("password_reset", {"settings": settings})


def test_the_notice_of_a_reset_says_the_apps_were_signed_out_too(settings: Settings) -> None:
    """After a reset (not a change from "Mon compte"), the apps' grants ended too: the mail says so."""
    context = {**contexts(settings)["password_changed"], "apps_signed_out": True}
    _subject, body = render_mail("password_changed", context)
    assert body.startswith(
        "Bonjour,\n\nLe mot de passe de votre compte a été changé le 30/11/2026 à 14:05. Tous vos appareils ont été "
        "déconnectés, ainsi que les applications et services en ligne où vous vous étiez connecté(e) avec votre "
        "compte : ils vous demanderont de vous reconnecter.\n\nSi ce n'est pas vous")
    english = render_mail("password_changed", context, lang="en")[1]
    assert "and so have the apps and online services" in english
