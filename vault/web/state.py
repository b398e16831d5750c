"""Typed access to what ``vault.app.create_app`` keeps on the application. Starlette's
``app.state`` holds anything, so its attributes are untyped; these say what they are.

The web floor knows the settings, not the composition root above it: a domain asks for its own
service by name and type (``app_service(request, "accounts", AccountService)``), so no part
imports ``vault.services`` but the entry points."""

from __future__ import annotations

from typing import TypeVar, cast

from starlette.requests import HTTPConnection

from vault.settings import Settings

T = TypeVar("T")


def app_settings(request: HTTPConnection) -> Settings:
    """The process's settings, set once when the app is made."""
    return cast("Settings", request.app.state.settings)


def app_service(request: HTTPConnection, name: str, kind: type[T]) -> T:  # noqa: ARG001  (kind: the type the caller gets)
    """The service ``name`` of ``vault.services.Services`` (built once when the app is made)."""
    return cast("T", getattr(request.app.state.services, name))
