"""What every command shares: ``--json``, the error exit, and ``open_services``, which reads the
settings, opens the services from the composition root and checks the database schema."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer
from sqlmodel import Session

from vault import crypto
from vault.db import DatabaseUnavailable, ping
from vault.errors import ServiceUnavailable, VaultError
from vault.gdpr.staff import ROLE_NAMES
from vault.migrations import schema_is_current
from vault.services import Services, build_services
from vault.settings import ConfigError, Settings, load_settings

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON only.")]
AsOption = Annotated[str, typer.Option(
    "--as", help="The staff member the command acts for (their email): their role must allow the command, and the "
                 "audit log names them with the system account running the command. It asserts a role for the "
                 "record, it is not a login. Without it, in development, the operator (the system account) acts; production "
                 "requires it (but to create the first administrator).")]

# The audit log's actor and the register's label are at most this long.
_ACTOR_MAX, _LABEL_MAX, _OS_USER_MAX = 120, 200, 40


def os_user() -> str:
    """The operating-system account running the command, from the process's real uid (not from
    ``$USER``, which the shell sets); under sudo, also the account that called sudo."""
    uid = os.getuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry (a container)
        name = f"uid {uid}"
    if uid == 0 and (caller := os.environ.get("SUDO_USER", "").strip()):
        name = f"{name} (sudo {caller})"
    return name[:_OS_USER_MAX]


def cli_actor() -> tuple[str, str]:
    """Who acts, in the audit log, when an operator runs a command without ``--as``: the
    operating-system account."""
    user = os_user()
    return f"cli:{user}", f"opérateur {user} (ligne de commande)"[:_LABEL_MAX]


def fail(message: str, *, as_json: bool, code: str = "error", fields: dict[str, str] | None = None,
         exit_code: int = 2) -> NoReturn:
    """Stop the command: JSON ``{"error", "detail", "fields"?}`` on stdout with ``--json``, else text
    on stderr; exit 2 unless told otherwise."""
    if as_json:
        body: dict[str, object] = {"error": code, "detail": message}
        if fields:
            body["fields"] = fields
        typer.echo(json.dumps(body, ensure_ascii=False))
    else:
        typer.echo(f"error: {message}", err=True)
        for field, text in (fields or {}).items():
            typer.echo(f"  --{field.replace('_', '-')}: {text}", err=True)
    raise typer.Exit(exit_code)


@contextmanager
def refused(as_json: bool, summary: str | None = None, *, reading: bool = False) -> Iterator[None]:
    """A ``VaultError`` raised inside ends the command as ``fail`` does, with the error's code, its
    message (or ``summary``, its per-field messages then saying what is wrong) and its fields; a
    dependency that does not answer says which (and, unless the command was only ``reading``, that
    nothing was kept)."""
    try:
        yield
    except ServiceUnavailable as exc:
        fail(f"{exc.describe(reading=reading)[0]} ({exc})", as_json=as_json, code=exc.code)
    except VaultError as exc:
        fail(summary or exc.message, as_json=as_json, code=exc.code, fields=exc.fields)


def read_settings(as_json: bool = False, *, check: bool = True) -> Settings:
    """The settings, checked as ``vault serve`` checks them: a configuration that cannot run is
    refused, and so are development defaults in production (their warnings are the server's to log)."""
    try:
        settings = load_settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        fail(f"invalid configuration: {exc}", as_json=as_json, code="config_error")
    if not check:
        return settings
    try:
        settings.check()
    except ConfigError as exc:
        fail(str(exc), as_json=as_json, code="config_error")
    return settings


def open_services(as_json: bool = False, *, settings: Settings | None = None, check_schema: bool = True) -> Services:
    """The settings read and checked (``read_settings``), the services built, and (unless told not
    to) the database answering at the latest migration; any failure is a clear error and exit 2."""
    settings = settings or read_settings(as_json)
    try:
        services = build_services(settings)
    except crypto.KeyProviderError as exc:
        fail(str(exc), as_json=as_json, code="config_error")
    if check_schema:
        try:
            ping(services.engine)
            current = schema_is_current(services.engine)
        except DatabaseUnavailable as exc:
            fail(f"the database does not answer ({exc})", as_json=as_json, code="database_unavailable")
        if not current:
            fail("the database schema is not up to date: run `vault db upgrade` first", as_json=as_json,
                 code="migrations_pending")
    return services


def acting(services: Services, db: Session, email: str, role: str, as_json: bool, *,
           first_admin: bool = False) -> tuple[str, str]:
    """Who acts, in the audit log: the operator, or the staff member ``--as`` names, who must hold
    ``role`` (else exit 2, nothing done). In production ``--as`` is required (every act of a role
    is someone's), but to create the first administrator (``first_admin``, while none exists:
    nobody could be named). ``--as`` asserts a role for the record, it proves nothing:
    the actor also names the operating-system account that ran the command
    (``cli:<os user> as staff:<id>``), the one the server's shell access vouches for."""
    if not email:
        if services.settings.is_production and not (first_admin and not services.staff.has_active(db, role="admin")):
            fail(f"in production this command acts for a staff member: name them with --as EMAIL "
                 f"({ROLE_NAMES[role]}); the audit log names them and this system account",
                 as_json=as_json, code="invalid_input")
        return cli_actor()
    with refused(as_json, "refused: --as names no staff member who may run this command"):
        staff = services.staff.acting(db, email=email, role=role)
    user = os_user()
    return (f"cli:{user} as staff:{staff.id}"[:_ACTOR_MAX],
            f"{staff.name} ({staff.role}, ligne de commande, compte système {user})"[:_LABEL_MAX])


def new_password() -> str:
    """A strong generated password, printed once by the command that made it."""
    return "-".join(secrets.token_urlsafe(6) for _ in range(4))


def read_password(from_stdin: bool) -> str:
    return sys.stdin.readline().rstrip("\r\n") if from_stdin else new_password()


def uuid_option(value: str, option: str, what: str, as_json: bool) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        fail(f"{option} must be {what}, not {value!r}", as_json=as_json, code="invalid_input")


def emit(output: object, as_json: bool, text: str) -> None:
    """Print ``output`` as JSON with ``--json``, else ``text``."""
    typer.echo(json.dumps(output, ensure_ascii=False) if as_json else text)
