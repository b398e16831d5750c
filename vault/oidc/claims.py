"""Scopes and claims with FranceConnect's names and formats.

One scope per claim, plus FranceConnect's groups. The consent page names each claim in plain French.
"""

from __future__ import annotations

from vault.auth.models import Citizen
from vault.translation import N_

CLAIMS = ("given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry",
          "preferred_username", "email")

SCOPE_GROUPS: dict[str, tuple[str, ...]] = {
    "profile": ("given_name", "family_name", "birthdate", "gender", "preferred_username"),
    "birth": ("birthplace", "birthcountry"),
    "identite_pivot": ("given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry"),
    "email": ("email",),
    **{claim: (claim,) for claim in CLAIMS if claim != "email"},
}
# Scopes that grant access to an API rather than to claims (the document vault).
DEPOSIT = N_("Déposer des justificatifs dans votre coffre-fort. L'application pourra relire, modifier ou "
             "supprimer ceux qu'elle a déposés, jamais ceux que vous avez ajoutés ni ceux d'autres services.")
API_SCOPES = {
    "documents:read": N_("Consulter les justificatifs de votre coffre-fort"),
    "documents:deposit": DEPOSIT,
    # The former name, kept for apps registered with it: it means exactly documents:deposit.
    "documents:write": DEPOSIT,
}
DEPOSIT_SCOPES = frozenset({"documents:deposit", "documents:write"})
SCOPES_SUPPORTED = ["openid", *SCOPE_GROUPS, *API_SCOPES]

CLAIM_LABELS = {
    "given_name": N_("Vos prénoms"),
    "family_name": N_("Votre nom de naissance"),
    "preferred_username": N_("Votre nom d'usage"),
    "birthdate": N_("Votre date de naissance"),
    "gender": N_("Votre sexe"),
    "birthplace": N_("Votre commune de naissance"),
    "birthcountry": N_("Votre pays de naissance"),
    "email": N_("Votre adresse e-mail"),
}


def claims_for_scope(scope: str) -> list[str]:
    """The claims a scope string grants, in a stable order."""
    wanted = {claim for s in scope.split() for claim in SCOPE_GROUPS.get(s, ())}
    return [claim for claim in CLAIMS if claim in wanted]


def describe_scope(scope: str) -> list[str]:
    """Plain French lines for the consent page: what the app will receive or be able to do."""
    lines = [CLAIM_LABELS[c] for c in claims_for_scope(scope)]
    for text in (API_SCOPES[s] for s in API_SCOPES if s in scope.split()):
        if text not in lines:  # documents:write and documents:deposit say the same
            lines.append(text)
    return lines


def user_claims(citizen: Citizen, scope: str) -> dict[str, str]:
    """The claim values for ``scope``, formatted as FranceConnect sends them."""
    values = {
        "given_name": citizen.given_name,
        "family_name": citizen.family_name,
        "birthdate": citizen.birthdate.isoformat(),
        "gender": citizen.gender,
        "birthplace": citizen.birthplace or "",
        "birthcountry": citizen.birthcountry,
        "preferred_username": citizen.preferred_username or "",
        "email": citizen.email,
    }
    return {claim: values[claim] for claim in claims_for_scope(scope)}
