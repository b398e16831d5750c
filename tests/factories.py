"""Factories for test data: plain functions with keyword arguments and defaults, each going through
the service or the HTTP path that production uses (no row written by hand, no shortcut around the
hashing, the encryption or the antivirus).

- citizens: ``make_citizen`` (through ``services.accounts``, verified, optionally with TOTP) and
  ``citizen_browser``/``logged_in`` for a browser logged in as one;
- apps (OpenID Connect clients): ``make_oidc_app``, as `vault client create` registers them;
- documents: ``pdf`` (content), ``upload`` (the API's upload as a browser sends it) and
  ``make_document`` (an upload that must succeed);
- staff: ``make_staff`` (a DPO, an admin or a counter agent, with its TOTP secret) and ``staff_browser``.

A test that is about the registration pages registers through them (``support.verified_citizen``).
"""

from __future__ import annotations

import io
import itertools
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pyotp
from sqlmodel import Session

from tests.support import IDENTITY, PASSWORD, RP_CALLBACK, RP_LOGGED_OUT, App, Browser
from vault.auth.exceptions import InvalidInput

_numbers = itertools.count(1)


def _unique_email(prefix: str, domain: str = "example.org") -> str:
    return f"{prefix}{next(_numbers)}@{domain}"


# ---- citizens -------------------------------------------------------------------------------------------


@dataclass
class CitizenData:
    """A citizen made by ``make_citizen``: what a test needs to log in as them."""

    id: uuid.UUID
    email: str
    password: str
    totp: pyotp.TOTP | None = None  # set when made with ``totp=True``
    recovery_codes: list[str] = field(default_factory=list)


def make_citizen(app: Any, *, email: str | None = None, password: str = PASSWORD, verified: bool = True,
                 totp: bool = False, **identity: str) -> CitizenData:
    """Create a citizen through the account service, as `vault citizen create` does.

    Defaults: a fresh address, ``PASSWORD``, Jeanne Marie Martin's identity (``IDENTITY``; any field
    can be given), email verified. ``totp=True`` enrols TOTP through the service (a real code, from
    the previous time step, so that the current one is still free for the first login) and returns
    its seed and recovery codes.
    """
    services = app.state.services
    email = email or _unique_email("citoyen")
    with Session(services.engine) as db:
        citizen = services.accounts.create_citizen(
            db=db, verified=verified, form={"email": email, "password": password, **IDENTITY, **identity})
        data = CitizenData(id=citizen.id, email=citizen.email, password=password)
        if totp:
            secret, _uri = services.accounts.begin_totp(citizen=citizen)
            data.totp = pyotp.TOTP(secret)
            # Twice at most: a step boundary may pass between our clock and the service's.
            for attempt in range(2):
                try:
                    data.recovery_codes = services.accounts.confirm_totp(
                        db=db, citizen=citizen, code=data.totp.at(time.time() - 30))
                    break
                except InvalidInput:
                    if attempt:
                        raise
        db.commit()
    return data


def stale_proof(engine: Any, minutes: int = 6) -> None:
    """Every citizen's session last proved who it was ``minutes`` ago (the login's proof included):
    the pages that need a recent proof send them to confirm it first."""
    from sqlalchemy import update

    from vault.auth.models import LoginSession
    from vault.db import utcnow

    with Session(engine) as db:
        db.exec(update(LoginSession).values(stepped_up_at=utcnow() - timedelta(minutes=minutes)))
        db.commit()


def logged_in(browser: Browser, citizen: CitizenData) -> Browser:
    """Log ``browser`` in as ``citizen`` through the login page (with a TOTP code if they have one)."""
    extra = {"otp": citizen.totp.now()} if citizen.totp else {}
    answer = browser.login(citizen.email, citizen.password, **extra)
    assert answer.status_code == 303 and answer.headers["location"] == "/account", (
        answer.status_code, answer.headers.get("location"), answer.text[:500])
    return browser


@contextmanager
def citizen_browser(app: Any, citizen: CitizenData | None = None, **citizen_options: Any) -> Iterator[Browser]:
    """A browser logged in as ``citizen`` (default: a new one, ``make_citizen(app, **citizen_options)``)."""
    citizen = citizen or make_citizen(app, **citizen_options)
    with Browser(app) as browser:
        yield logged_in(browser, citizen)


# ---- apps (OpenID Connect clients) ---------------------------------------------------------------------


def make_oidc_app(engine: Any, *, scope: str = "openid profile birth email", auth_method: str = "client_secret_post",
                  sector: str | None = None, **options: Any) -> App:
    """Register an app through the service, as `vault client create` does.

    Defaults: "Inscriptions scolaires", redirect to ``RP_CALLBACK``, back to ``RP_LOGGED_OUT`` after
    logout, plain JSON userinfo, ES256 ID tokens, nonce required, no refresh tokens; ``options``
    overrides any of them (``name``, ``allow_refresh``, ``jwks_json``...)."""
    from vault.oidc.clients import create_client

    values = {"name": "Inscriptions scolaires", "redirect_uris": [RP_CALLBACK],
              "post_logout_redirect_uris": [RP_LOGGED_OUT], "userinfo_signed": False, "id_token_alg": "ES256",
              "require_nonce": True, "allow_refresh": False, "jwks_json": None, "production": False}
    values.update(options)
    with Session(engine) as db:
        registration = create_client(db=db, scope=scope, auth_method=auth_method, sector=sector, **values)
        db.commit()
        return App(client_id=registration.client.client_id, secret=registration.secret)


# ---- documents ------------------------------------------------------------------------------------------

MARKER = b"CONFIDENTIEL-MARQUEUR-7d1e"  # in every ``pdf()``: it must never be readable at rest


def pdf(size: int = 3000, marker: bytes = MARKER) -> bytes:
    """A PDF as far as the type sniffing goes: the header, ``marker``, random bytes, the trailer."""
    body = b"%PDF-1.7\n" + marker + b"\n"
    return body + os.urandom(max(0, size - len(body) - 6)) + b"\n%%EOF"


def upload(browser: Browser, content: bytes, filename: str = "avis.pdf", **fields: str) -> httpx.Response:
    """Upload ``content`` through the API as the logged-in browser does (multipart, CSRF header);
    ``fields``: the form's other fields (``type`` defaults to tax_notice, ``title``, ``valid_until``)."""
    return browser.post("/api/v1/documents", files={"file": (filename, io.BytesIO(content), "application/octet-stream")},
                        data={"type": "tax_notice", **fields}, headers={"X-CSRF-Token": browser.cookies["csrf"]})


def make_document(browser: Browser, content: bytes | None = None, filename: str = "avis.pdf",
                  **fields: str) -> dict[str, Any]:
    """A document in the logged-in citizen's vault (default content: ``pdf()``), uploaded, scanned
    and encrypted as any other; its JSON description."""
    answer = upload(browser, pdf() if content is None else content, filename, **fields)
    assert answer.status_code == 201, answer.text
    return answer.json()


# ---- staff ---------------------------------------------------------------------------------------------

STAFF_PASSWORD = "la protection des données avant tout"


@dataclass
class StaffData:
    """A staff account made by ``make_staff``, with its TOTP secret (staff always have TOTP)."""

    id: uuid.UUID
    email: str
    role: str
    password: str
    secret: str
    otpauth_uri: str

    @property
    def totp(self) -> pyotp.TOTP:
        return pyotp.TOTP(self.secret)


COUNTER = "Guichet unique de l'Hôtel de Ville"


def make_staff(app: Any, *, email: str | None = None, name: str = "Camille DPO", role: str = "dpo",
               password: str = STAFF_PASSWORD, service: str | None = None) -> StaffData:
    """Create a staff account (``role``: dpo, admin or agent — an agent works at ``service``, by
    default ``COUNTER``) through the staff service, as `vault staff create` does."""
    services = app.state.services
    email = email or _unique_email(role, "ville.example.fr")
    if service is None:
        service = COUNTER if role == "agent" else ""
    with Session(services.engine) as db:
        staff, secret, uri = services.staff.create(db, email=email, name=name, role=role, password=password,
                                                   service=service)
        db.commit()
        return StaffData(id=staff.id, email=staff.email, role=role, password=password, secret=secret, otpauth_uri=uri)


@contextmanager
def staff_browser(app: Any, staff: StaffData | None = None, **staff_options: Any) -> Iterator[Browser]:
    """A browser logged in to the staff pages as ``staff`` (default: a new DPO, ``make_staff(app, **staff_options)``)."""
    staff = staff or make_staff(app, **staff_options)
    with Browser(app) as browser:
        answer = browser.submit("/dpo/login", {"email": staff.email, "password": staff.password,
                                               "otp": staff.totp.now()})
        assert answer.status_code == 303, (answer.status_code, answer.text[:500])
        yield browser
