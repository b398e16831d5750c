"""French first; English available. Templates and messages are written in French and looked up
here for English; a sentence missing from the catalogue stays in French (never a blank)."""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("fr", "en")

EN: dict[str, str] = {
    "Mon espace citoyen": "My citizen account",
    "Aller au contenu": "Skip to content",
    "Menu principal": "Main menu",
    "Mon compte": "My account",
    "Se déconnecter": "Log out",
    "Se connecter": "Log in",
    "Créer un compte": "Create an account",
    "Accueil": "Home",
    "Besoin d'aide ? L'accueil de la mairie peut vous accompagner.": "Need help? The town hall's front desk can assist you.",
    "Certains champs sont à corriger :": "Some fields need correcting:",
    "facultatif": "optional",
    "Erreur :": "Error:",
    "Bonjour": "Hello",
    "Vous êtes connecté(e) à votre espace citoyen.": "You are logged in to your citizen account.",
    "Mes informations, ma sécurité, mes connexions": "My details, my security, my sessions",
    "Votre espace citoyen": "Your citizen account",
    "Un seul compte pour les démarches en ligne de la commune. Vos justificatifs sont gardés en sécurité et ne sont partagés qu'avec votre accord.":
        "One account for the town's online services. Your documents are kept safe and shared only with your consent.",
    "Votre identité": "Your identity",
    "Votre connexion": "Your login",
    "Prénom(s)": "First name(s)",
    "Nom de naissance": "Birth name",
    "Nom d'usage": "Usual name",
    "Date de naissance": "Date of birth",
    "Sexe (à l'état civil)": "Sex (as registered at birth)",
    "Sexe": "Sex",
    "Féminin": "Female",
    "Masculin": "Male",
    "Pays de naissance (code INSEE)": "Country of birth (INSEE code)",
    "Commune de naissance (code INSEE)": "Town of birth (INSEE code)",
    "Adresse e-mail": "Email address",
    "Mot de passe": "Password",
    "Nouveau mot de passe": "New password",
    "Créer mon compte": "Create my account",
    "Mot de passe oublié ?": "Forgot your password?",
    "Je n'ai pas reçu l'e-mail de confirmation": "I did not receive the confirmation email",
    "Pas encore de compte ?": "No account yet?",
    "Code de vérification": "Verification code",
    "Code à 6 chiffres": "6-digit code",
    "Valider": "Confirm",
    "Mon identité": "My identity",
    "Ma sécurité": "My security",
    "Mes connexions": "My sessions",
    "Appareil": "Device",
    "Connecté le": "Logged in on",
    "Dernière activité": "Last activity",
    "cet appareil": "this device",
    "Me déconnecter de tous les appareils": "Log out of all devices",
    "Double authentification": "Two-step verification",
    "La double authentification est activée.": "Two-step verification is on.",
    "Activer la double authentification": "Turn on two-step verification",
    "Gérer la double authentification": "Manage two-step verification",
    "Activer": "Turn on",
    "Désactiver": "Turn off",
    "Désactiver la double authentification": "Turn off two-step verification",
    "Générer de nouveaux codes de secours": "Generate new recovery codes",
    "J'ai noté mes codes": "I have written down my codes",
    "Codes de secours restants :": "Recovery codes left:",
    "Choisir un nouveau mot de passe": "Choose a new password",
    "Enregistrer le mot de passe": "Save the password",
    "Adresse e-mail ou mot de passe incorrect.": "Wrong email address or password.",
    "Formulaire expiré": "Form expired",
    "Impossible de continuer": "Cannot continue",
    "Page introuvable": "Page not found",
}


def translator(lang: str) -> Callable[[str], str]:
    if lang == "en":
        return lambda text: EN.get(text, text)
    return lambda text: text
