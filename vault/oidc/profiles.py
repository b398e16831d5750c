"""Per-app profiles: today's standards-first OpenID Connect (``oidc``), or FranceConnect's behaviour
for one of its versions (``fc-v1``, ``fc-v2``), so that an app written for FranceConnect switches to
this provider by configuration alone.

A profile decides, for the apps registered with it: where their endpoints live (and the issuer they
see), whether the authorization response carries ``iss``, the userinfo format, the scopes and their
claims, the answer to an ``acr_values`` that cannot be reached, whether a known scope the app is
not registered for is refused, and the logout endpoint. Each FranceConnect fact it follows is in the
README's table (sources: FranceConnect's public code and partner documentation). What FranceConnect
does that is unsafe is not copied: ID tokens are never HS256 (v1 signed them with the client secret),
access tokens are never read from the query string, PKCE is accepted when sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# The levels FranceConnect knows, lowest first; an account here reaches eidas1 only.
EIDAS_LEVELS = ("eidas1", "eidas2", "eidas3")
REACHED = "eidas1"

_FC_SINGLE = ("family_name", "birthdate", "gender", "birthplace", "birthcountry", "email", "preferred_username")

# FranceConnect v2 (core-fcp-low, back/libs/scopes/src/data/fcp-low/fcp-low.scopes.ts).
FC_V2_SCOPES: Mapping[str, tuple[str, ...]] = {
    "profile": ("given_name", "given_name_array", "family_name", "birthdate", "gender", "preferred_username"),
    "birth": ("birthplace", "birthcountry"),
    "identite_pivot": ("given_name", "given_name_array", "family_name", "birthdate", "gender", "birthplace",
                       "birthcountry"),
    "given_name": ("given_name", "given_name_array"),
    **{claim: (claim,) for claim in _FC_SINGLE},
    "idp_birthdate": ("idp_birthdate",),
    "amr": ("amr",),
    "idp_id": ("idp_id",),
}

# FranceConnect v1: identite_pivot also gave preferred_username; no given_name_array.
FC_V1_SCOPES: Mapping[str, tuple[str, ...]] = {
    "profile": ("given_name", "family_name", "birthdate", "gender", "preferred_username"),
    "birth": ("birthplace", "birthcountry"),
    "identite_pivot": ("given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry",
                       "preferred_username"),
    "given_name": ("given_name",),
    **{claim: (claim,) for claim in _FC_SINGLE},
    "idp_birthdate": ("idp_birthdate",),
    "idp_id": ("idp_id",),
}


@dataclass(frozen=True)
class Profile:
    name: str
    label: str  # for `vault client list` and the README
    prefix: str  # where its endpoints live
    issuer_path: str  # added to VAULT_ISSUER: the issuer its apps see (discovery, ID tokens, userinfo)
    iss_in_authorization_response: bool  # RFC 9207
    userinfo: str  # "per-app" (the app's --userinfo-signed) | "json" | "jwt"
    scopes: Mapping[str, tuple[str, ...]] | None  # None: the standard profile's (vault.oidc.claims)
    franceconnect: bool  # FranceConnect's rules: acr_values, scopes it refuses, no sid, logout page
    discovery: bool
    logout_path: str

    def issuer(self, base: str) -> str:
        return base + self.issuer_path

    def endpoint(self, base: str, name: str) -> str:
        return f"{base}{self.prefix}/{name}"


OIDC = Profile(name="oidc", label="OpenID Connect (standards first)", prefix="", issuer_path="",
               iss_in_authorization_response=True, userinfo="per-app", scopes=None, franceconnect=False,
               discovery=True, logout_path="/logout")
FC_V1 = Profile(name="fc-v1", label="FranceConnect v1 (/api/v1)", prefix="/api/v1", issuer_path="",
                iss_in_authorization_response=False, userinfo="json", scopes=FC_V1_SCOPES, franceconnect=True,
                discovery=False, logout_path="/api/v1/logout")
FC_V2 = Profile(name="fc-v2", label="FranceConnect v2 (/api/v2)", prefix="/api/v2", issuer_path="/api/v2",
                iss_in_authorization_response=True, userinfo="jwt", scopes=FC_V2_SCOPES, franceconnect=True,
                discovery=True, logout_path="/api/v2/session/end")

PROFILES: Mapping[str, Profile] = {p.name: p for p in (OIDC, FC_V1, FC_V2)}
BY_PREFIX: Mapping[str, Profile] = {FC_V1.prefix: FC_V1, FC_V2.prefix: FC_V2}


def profile_of(name: str | None) -> Profile:
    return PROFILES.get(name or "oidc", OIDC)


def endpoint_profile(path: str) -> Profile:
    """The profile whose endpoints ``path`` belongs to (``/api/v2/token`` → fc-v2; ``/token`` → oidc)."""
    for prefix, profile in BY_PREFIX.items():
        if path.startswith(prefix + "/"):
            return profile
    return OIDC


@dataclass(frozen=True)
class AcrAnswer:
    ok: bool
    description: str = ""


def franceconnect_acr(acr_values: str | None) -> AcrAnswer:
    """FranceConnect's reading of ``acr_values``: the lowest level it knows among those asked; none
    known (or none asked) → its default, eidas1. A level this service cannot reach is refused with
    ``invalid_acr`` and FranceConnect's description — never answered with a lower ``acr`` silently."""
    asked = [value for value in (acr_values or "").split() if value in EIDAS_LEVELS]
    picked = min(asked, key=EIDAS_LEVELS.index) if asked else REACHED
    if picked == REACHED:
        return AcrAnswer(ok=True)
    return AcrAnswer(ok=False, description=(f"acr_value is not valid, should be equal one of these values, "
                                            f"expected {REACHED}, got {picked}"))
