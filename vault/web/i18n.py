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
    "Appareils connectés à votre compte": "Devices logged in to your account",
    "Dans l'application, scannez ce QR code :": "In the app, scan this QR code:",
    "Inconnu": "Unknown",
    "Indiquez l'adresse e-mail de votre compte : nous vous enverrons un lien pour choisir un nouveau mot de passe. Il sera valable 30 minutes.":
        "Enter your account's email address: we will send you a link to choose a new password. It is valid for 30 minutes.",
    "Indiquez l'adresse e-mail de votre compte : nous vous enverrons un nouveau lien.":
        "Enter your account's email address: we will send you a new link.",
    "Indiquez votre identité telle qu'elle figure sur votre acte de naissance. Tous les champs sont obligatoires sauf mention contraire.":
        "Enter your identity as it appears on your birth certificate. All fields are required unless marked optional.",
    "Installez une application d'authentification sur votre téléphone (par exemple FreeOTP, Aegis ou Google Authenticator).":
        "Install an authenticator app on your phone (for example FreeOTP, Aegis or Google Authenticator).",
    "La double authentification est désactivée.": "Two-step verification is off.",
    "Mot de passe oublié": "Forgotten password",
    "Ou saisissez cette clé à la main :": "Or type this key by hand:",
    "Ouvrez votre application d'authentification et saisissez le code à 6 chiffres affiché pour ce site.":
        "Open your authenticator app and enter the 6-digit code it shows for this site.",
    "Protégez votre compte avec un code à usage unique, donné par une application sur votre téléphone.":
        "Protect your account with a one-time code given by an app on your phone.",
    "QR code à scanner avec votre application d'authentification": "QR code to scan with your authenticator app",
    "Recevoir un nouveau lien de confirmation": "Get a new confirmation link",
    "Saisissez le code à 6 chiffres affiché par l'application :": "Enter the 6-digit code shown by the app:",
    "Voici vos codes de secours. Chacun ne sert qu'une fois, si vous n'avez plus votre téléphone. Notez-les ou imprimez-les maintenant : ils ne seront plus affichés.":
        "Here are your recovery codes. Each works once, if you no longer have your phone. Write them down or print them now: they will not be shown again.",
    "Votre adresse e-mail est confirmée. Vous pouvez maintenant vous connecter.":
        "Your email address is confirmed. You can now log in.",
    "Votre mot de passe a été changé. Par sécurité, tous vos appareils ont été déconnectés : connectez-vous avec le nouveau mot de passe.":
        "Your password has been changed. For your safety, all your devices have been logged out: log in with the new password.",
    "Votre session a expiré. Connectez-vous de nouveau.": "Your session has expired. Please log in again.",
    "Vous êtes déconnecté(e) de tous vos appareils.": "You are logged out of all your devices.",
    "Vous êtes déconnecté(e).": "You are logged out.",
    "Envoyer le lien": "Send the link",
    "Démonstration : une application de la ville": "Demonstration: one of the town's apps",
    "Vous êtes déconnecté(e) de l'application de démonstration et de votre espace citoyen.":
        "You are logged out of the demonstration app and of your citizen account.",
    "Cette page joue le rôle d'un service en ligne de la commune (inscriptions scolaires, portail des démarches…). Comme avec FranceConnect, elle vous demande de vous connecter avec votre espace citoyen.":
        "This page plays one of the town's online services (school registration, e-services portal…). As with FranceConnect, it asks you to log in with your citizen account.",
    "Vous vous connectez (si ce n'est pas déjà fait).": "You log in (if you have not already).",
    "Vous autorisez l'application à recevoir votre identité.": "You allow the app to receive your identity.",
    "L'application affiche ce qu'elle a reçu.": "The app shows what it received.",
    "Se connecter avec mon espace citoyen": "Log in with my citizen account",
    "Connexion réussie. Voici ce que l'application a reçu.": "Logged in. Here is what the app received.",
    "Informations d'identité (userinfo)": "Identity information (userinfo)",
    "Contenu de l'ID token (signé, vérifié)": "Content of the ID token (signed, verified)",
    "Algorithme :": "Algorithm:",
    "clé :": "key:",
    "Recommencer": "Start again",
    "Connectez-vous pour continuer vers": "Log in to continue to",
    "Détail technique (pour le service concerné)": "Technical detail (for the service concerned)",
    "Mes applications": "My apps",
    "Les services de la commune auxquels vous vous êtes connecté(e) avec ce compte, et ce qu'ils reçoivent.":
        "The town's services you logged in to with this account, and what they receive.",
    "Voir et gérer mes applications": "See and manage my apps",
    "Autoriser l'accès à vos informations": "Allow access to your information",
    "souhaite recevoir :": "would like to receive:",
    "Un identifiant qui permet à ce service de vous reconnaître (et rien d'autre)":
        "An identifier that lets this service recognise you (and nothing else)",
    "Ces informations viennent de votre compte. Vous pourrez retirer cet accès à tout moment dans « Mon compte », rubrique « Mes applications ».":
        "This information comes from your account. You can withdraw this access at any time in “My account”, under “My apps”.",
    "Autoriser": "Allow",
    "Refuser": "Deny",
    "Aucune application n'a accès à votre compte pour le moment.": "No app has access to your account for now.",
    "Ces services peuvent vous connecter avec votre compte et reçoivent les informations indiquées.":
        "These services can log you in with your account and receive the information shown.",
    "Autorisé le": "Allowed on",
    "Reçoit :": "Receives:",
    "Retirer l'accès de": "Withdraw access of",
    "Retour à mon compte": "Back to my account",
    "Se déconnecter ?": "Log out?",
    "Un service vous demande de vous déconnecter de votre espace citoyen.": "A service asks you to log out of your citizen account.",
    "Me déconnecter": "Log me out",
    "Rester connecté(e)": "Stay logged in",
    "Vos prénoms": "Your first names",
    "Votre nom de naissance": "Your birth name",
    "Votre nom d'usage": "Your usual name",
    "Votre date de naissance": "Your date of birth",
    "Votre sexe": "Your sex",
    "Votre commune de naissance": "Your town of birth",
    "Votre pays de naissance": "Your country of birth",
    "Votre adresse e-mail": "Your email address",
    "Consulter les justificatifs de votre coffre-fort": "Read the documents in your vault",
    "Déposer des justificatifs dans votre coffre-fort": "Add documents to your vault",
    "seulement si vous êtes né(e) en France": "only if you were born in France",
    "Vérifiez votre boîte mail": "Check your mailbox",
    "Lien expiré": "Link expired",
    "Confirmer mon adresse e-mail": "Confirm my email address",
    "Recevoir un nouveau lien": "Get a new link",
    "Demander un nouveau lien": "Ask for a new link",
    "Tous vos prénoms, séparés par des espaces, dans l'ordre de l'état civil.":
        "All your first names, separated by spaces, in the order of the civil register.",
    "Par exemple le nom d'époux ou d'épouse.": "For example your spouse's name.",
    "Jour/mois/année, par exemple 31/07/1984.": "Day/month/year, for example 31/07/1984.",
    "France : 99100. Pour un autre pays, le code INSEE à 5 chiffres commençant par 99.":
        "France: 99100. For another country, the 5-digit INSEE code starting with 99.",
    "Seulement si vous êtes né(e) en France : 5 caractères, par exemple 75056 pour Paris. À laisser vide si vous êtes né(e) à l'étranger.":
        "Only if you were born in France: 5 characters, for example 75056 for Paris. Leave empty if you were born abroad.",
    "Nous y enverrons un lien pour la confirmer.": "We will send a link there to confirm it.",
    "Au moins 12 caractères. Une phrase facile à retenir convient très bien, par exemple « quatre chats verts au marché ».":
        "At least 12 characters. An easy-to-remember phrase works very well, for example “four green cats at the market”.",
    "Au moins 12 caractères. Une phrase facile à retenir convient très bien.":
        "At least 12 characters. An easy-to-remember phrase works very well.",
    "Vous avez perdu votre téléphone ? Saisissez un de vos codes de secours.":
        "Lost your phone? Enter one of your recovery codes.",
    "Nous venons d'envoyer un e-mail à l'adresse indiquée. Ouvrez le lien qu'il contient pour activer votre compte. Pensez à regarder dans les courriers indésirables.":
        "We have just sent an email to the address you gave. Open the link in it to activate your account. Remember to check your spam folder.",
    "Si un compte correspond à cette adresse, un e-mail vient de lui être envoyé. Pensez à regarder dans les courriers indésirables.":
        "If an account matches this address, an email has just been sent to it. Remember to check your spam folder.",
    "Cette page n'existe pas ou n'existe plus.": "This page does not exist or no longer exists.",
    "Ce formulaire a expiré ou ne vient pas de ce site. Rechargez la page, puis recommencez.":
        "This form has expired or does not come from this site. Reload the page, then try again.",
    "Trop de tentatives de connexion. Par sécurité, réessayez dans quelques minutes.":
        "Too many login attempts. For your safety, try again in a few minutes.",
    "Le code de vérification est incorrect ou a expiré. Saisissez le code affiché maintenant par votre application.":
        "The verification code is wrong or has expired. Enter the code your app shows now.",
    "Votre adresse e-mail n'est pas encore confirmée. Ouvrez le lien reçu par e-mail, ou demandez un nouveau lien.":
        "Your email address is not confirmed yet. Open the link you received by email, or ask for a new link.",
    "Ce lien n'est plus valable : il a expiré ou a déjà été utilisé. Vous pouvez en demander un nouveau.":
        "This link is no longer valid: it has expired or has already been used. You can ask for a new one.",
}


def translator(lang: str) -> Callable[[str], str]:
    if lang == "en":
        return lambda text: EN.get(text, text)
    return lambda text: text
