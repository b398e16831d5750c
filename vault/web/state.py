"""Typed access to what ``vault.app.create_app`` keeps on the application: Starlette's ``app.state``
holds anything, so its attributes are untyped; these say what they are."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from starlette.requests import HTTPConnection

if TYPE_CHECKING:
    from vault.services import Services
    from vault.settings import Settings


def app_services(request: HTTPConnection) -> Services:
    """The process's services (``vault.services.build_services``), set once when the app is made."""
    return cast("Services", request.app.state.services)


def app_settings(request: HTTPConnection) -> Settings:
    """The process's settings, set once when the app is made."""
    return cast("Settings", request.app.state.settings)
