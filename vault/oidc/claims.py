"""Scopes and claims with FranceConnect's names and formats.

One scope per claim, plus FranceConnect's groups. The consent page names each claim in plain French.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Protocol

from vault.auth.models import IDENTITY_FIELDS
from vault.oidc.profiles import OIDC, Profile
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
# Scopes that let an app change something of the citizen's: never granted to a login made at the
# counter for the citizen (vault.oidc.delegation).
WRITE_SCOPES = DEPOSIT_SCOPES
SCOPES_SUPPORTED = ["openid", *SCOPE_GROUPS, *API_SCOPES]  # the standard profile's

# Claims FranceConnect's profiles add (vault.oidc.profiles).
FC_EXTRA_CLAIMS = ("given_name_array", "idp_birthdate", "idp_id", "amr")
IDP_ID = "citizen-vault"  # the identity provider FranceConnect's idp_id names: this service

CLAIM_LABELS = {
    "given_name": N_("Vos prénoms"),
    "given_name_array": N_("Vos prénoms"),
    "idp_birthdate": N_("Votre date de naissance"),
    "idp_id": N_("Le service qui vous a identifié(e)"),
    "amr": N_("La façon dont vous vous êtes connecté(e)"),
    "family_name": N_("Votre nom de naissance"),
    "preferred_username": N_("Votre nom d'usage"),
    "birthdate": N_("Votre date de naissance"),
    "gender": N_("Votre sexe"),
    "birthplace": N_("Votre commune de naissance"),
    "birthcountry": N_("Votre pays de naissance"),
    "email": N_("Votre adresse e-mail"),
}


def scopes_supported(profile: Profile = OIDC) -> list[str]:
    """The scopes an app of ``profile`` may be registered for and ask for."""
    groups = SCOPE_GROUPS if profile.scopes is None else profile.scopes
    return ["openid", *groups, *API_SCOPES]


def claims_for_scope(scope: str, profile: Profile = OIDC) -> list[str]:
    """The claims a scope string grants, in a stable order."""
    groups = SCOPE_GROUPS if profile.scopes is None else profile.scopes
    wanted = {claim for s in scope.split() for claim in groups.get(s, ())}
    return [claim for claim in (*CLAIMS, *FC_EXTRA_CLAIMS) if claim in wanted]


def describe_scope(scope: str, profile: Profile = OIDC) -> list[str]:
    """Plain French lines for the consent page: what the app will receive or be able to do."""
    lines: list[str] = []
    for claim in claims_for_scope(scope, profile):
        label = CLAIM_LABELS.get(claim)
        if label and label not in lines:  # given_name_array says the same as given_name
            lines.append(label)
    for text in (API_SCOPES[s] for s in API_SCOPES if s in scope.split()):
        if text not in lines:  # documents:write and documents:deposit say the same
            lines.append(text)
    return lines


class ClaimSource(Protocol):
    """What the claims are made of: a citizen's row (``Citizen``) or the fields the endpoints apps
    call read of it (``vault.oidc.provider.CitizenClaims``)."""

    @property
    def given_name(self) -> str: ...
    @property
    def family_name(self) -> str: ...
    @property
    def birthdate(self) -> date: ...
    @property
    def gender(self) -> str: ...
    @property
    def birthplace(self) -> str: ...
    @property
    def birthcountry(self) -> str: ...
    @property
    def preferred_username(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...


CLAIM_SOURCE_FIELDS = (*IDENTITY_FIELDS, "email")  # a ClaimSource's fields, the citizen's columns of the same names


def user_claims(citizen: ClaimSource, scope: str, profile: Profile = OIDC, *,
                amr: Sequence[str] = ()) -> dict[str, str | list[str]]:
    """The claim values for ``scope``, formatted as FranceConnect sends them (its ``given_name_array``:
    the first names in order; ``idp_birthdate``: the date as the citizen gave it; ``idp_id``: this
    service, the identity provider; ``amr``: how the citizen logged in)."""
    values: dict[str, str | list[str]] = {
        "given_name": citizen.given_name,
        "given_name_array": citizen.given_name.split(),
        "family_name": citizen.family_name,
        "birthdate": citizen.birthdate.isoformat(),
        "idp_birthdate": citizen.birthdate.isoformat(),
        "gender": citizen.gender,
        "birthplace": citizen.birthplace or "",
        "birthcountry": citizen.birthcountry,
        "preferred_username": citizen.preferred_username or "",
        "email": citizen.email or "",
        "idp_id": IDP_ID,
        "amr": list(amr),
    }
    if citizen.email is None:  # an account opened at the counter without an address
        del values["email"]
    return {claim: values[claim] for claim in claims_for_scope(scope, profile) if claim in values}
